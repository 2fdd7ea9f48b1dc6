#!/bin/sh
# Runs libFuzzer drivers for a bounded time each, on a fresh copy of their
# committed seed corpus, and prints per driver the executions, coverage
# (cov: edges, ft: features) and the corpus size at the end.
# usage: sh fuzz/run.sh BUILD_DIR SECONDS DRIVER...
# Each DRIVER runs as BUILD_DIR/fuzz_DRIVER with fuzz/DRIVER.dict on
# BUILD_DIR/corpus/DRIVER (a copy of fuzz/corpus/DRIVER); its log is
# BUILD_DIR/fuzz_DRIVER.log and any crashing input BUILD_DIR/crash-DRIVER-*.
# Fails if a driver crashes, leaks, times out or runs out of memory.
set -eu
build=$1 seconds=$2
shift 2
status=0
printf '%-12s %12s %8s %8s %8s %s\n' driver executions cov ft corpus result
for d in "$@"; do
    corpus=$build/corpus/$d log=$build/fuzz_$d.log
    rm -rf "$corpus"
    mkdir -p "$corpus"
    cp fuzz/corpus/"$d"/* "$corpus"/
    result=ok
    "$build/fuzz_$d" -dict="fuzz/$d.dict" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/crash-$d-" \
        "$corpus" >"$log" 2>&1 || { result="FAILED (see $log)"; status=1; }
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    printf '%-12s %12s %8s %8s %8s %s\n' "$d" "${execs:--}" "${cov:--}" "${ft:--}" \
        "$(ls "$corpus" | wc -l)" "$result"
    [ "$result" = ok ] || tail -n 30 "$log"
done
exit $status
