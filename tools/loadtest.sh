#!/bin/sh
# loadtest.sh BIN - load test of `BIN serve` on 127.0.0.1 (make loadtest).
#
# Drives the daemon with bench/loadgen (closed loop, keep-alive connections)
# at several concurrencies and prints grids/s and p50/p99 latency, then the
# three figures the daemon is held to:
#   (a) grids/s at saturation / the engine's own batched throughput on the
#       same workload (bench/offline_gen, same threads, same batch), >= 85%;
#   (b) at concurrency 16 with 16x16 grids, iteration-level batching / the
#       same daemon with one grid per batch (max_batch_cells = 256), >= 2x;
#       also shown for 4x4 grids, where one grid is far from filling a pass;
#   (c) HTTP + JSON overhead of a 1x1 grid with one iteration: the daemon's
#       p50 latency at concurrency 1 minus the engine's own time for it, < 1 ms.
# Then the daemon's grids/s in each precision (f32, bf16, int8) on 16x64 pages
# at concurrency 1 and 16, the model entry naming the precision
# (--model PATH:precision=P).
# Environment: MODEL (default models/default.safetensors, else the byte
# fixture), LOAD_SECONDS per measurement (default 4), THREADS (default: all
# cores, as the daemon's default for one model), PRECISIONS (default
# f32,bf16,int8), PREC_SECONDS per measurement there (default 12),
# PRECISION_ONLY=1 for that part alone.
set -eu

BIN=${1:?usage: tools/loadtest.sh BIN}
BUILD=$(dirname "$BIN")
LOADGEN=$BUILD/bench/loadgen
OFFLINE=$BUILD/bench/offline_gen
for b in "$BIN" "$LOADGEN" "$OFFLINE"; do
    [ -x "$b" ] || { echo "loadtest: $b is missing (make loadtest builds it)"; exit 2; }
done
MODEL=${MODEL:-models/default.safetensors}
[ -f "$MODEL" ] || MODEL=tests/fixtures/byte_f32.safetensors
SECS=${LOAD_SECONDS:-4}
THREADS=${THREADS:-$(nproc)}
H=16
W=16
K=8
BATCH_CELLS=4096
TMP=$(mktemp -d)
PID=

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# try_start ENTRY FLAGS...: the daemon on model entry ENTRY (a path, or
# PATH:precision=P) on a free port, read from its log; sets PORT. Returns 1,
# with the reason in WHY and no daemon left, if it exits or never gets ready.
try_start() {
    entry=$1
    shift
    "$BIN" serve --model "$entry" --host 127.0.0.1 --port 0 --threads "$THREADS" \
        --max-queue 1024 "$@" 2>"$TMP/log" &
    PID=$!
    PORT=
    WHY=
    i=0
    while [ -z "$PORT" ] && [ $i -lt 200 ] && kill -0 "$PID" 2>/dev/null; do
        sleep 0.05
        PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/log" | head -n 1)
        i=$((i + 1))
    done
    i=0
    while [ -n "$PORT" ] &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" != 200 ]; do
        sleep 0.05
        i=$((i + 1))
        [ $i -lt 400 ] && kill -0 "$PID" 2>/dev/null || { PORT=; break; }
    done
    [ -n "$PORT" ] && return 0
    # The last error the daemon logged (JSON lines), else its last line.
    WHY=$(jq -rR 'fromjson? | select(.level == "error") | .msg' "$TMP/log" 2>/dev/null | tail -n 1)
    [ -n "$WHY" ] || WHY=$(grep -v '^ *$' "$TMP/log" | tail -n 1)
    [ -n "$WHY" ] || WHY="the daemon did not start or never became ready"
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
    return 1
}

# start FLAGS...: try_start on $MODEL, or the end of the load test.
start() {
    try_start "$MODEL" "$@" || { cat "$TMP/log"; echo "loadtest: $WHY"; exit 1; }
}

stop() {
    kill -TERM "$PID"
    wait "$PID" || { echo "loadtest: the daemon exited with $?"; cat "$TMP/log"; }
    PID=
}

# field LINE KEY: the value of KEY=... in a loadgen/offline_gen line.
field() {
    echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

field_or_dash() {
    v=$(field "$1" "$2")
    echo "${v:--}"
}

load() {
    "$LOADGEN" --port "$PORT" --seconds "$SECS" --warmup 1 "$@"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

verdict() {
    if awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { exit !(op == ">=" ? x >= t : x < t) }'; then
        echo "met"
    else
        echo "MISSED"
    fi
}

# grids/s of the daemon in each precision: the default model at 16x64 (a page),
# c=1 and c=16. The model entry names the precision (PATH:precision=P); f32 is
# the path alone. A precision the daemon refuses (an engine built without it)
# is reported as n/a with the daemon's last log line.
by_precision() {
    psecs=${PREC_SECONDS:-12}
    echo
    echo "the daemon by precision: $MODEL, 16x64 grids, $K iterations, $THREADS engine threads," \
        "max batch $BATCH_CELLS cells, $psecs s per run"
    printf '  %-9s %-10s %12s %12s %10s %10s %8s\n' precision served "c=1 grids/s" \
        "c=16 grids/s" "c=1 p50 ms" "c=16 p50 ms" errors
    for p in $(echo "${PRECISIONS:-f32,bf16,int8}" | tr ',' ' '); do
        entry=$MODEL
        [ "$p" = f32 ] || entry="$MODEL:precision=$p"
        if ! try_start "$entry" --max-batch-cells $BATCH_CELLS; then
            printf '  %-9s n/a: %s\n' "$p" "$WHY"
            continue
        fi
        # What /v1/models says the model runs at (an older daemon does not say).
        served=$(curl -s "http://127.0.0.1:$PORT/v1/models" |
            jq -r '[.. | objects | select(has("precision")) | .precision][0] // "?"' 2>/dev/null ||
            echo "?")
        # loadgen exits 1 when an answer was not 200 or none completed inside
        # the window; its line still says so (errors=, grids_per_s=0.0).
        l1=$(load --concurrency 1 --height 16 --width 64 --iterations $K --seconds "$psecs" \
            --warmup 2) || true
        l16=$(load --concurrency 16 --height 16 --width 64 --iterations $K --seconds "$psecs" \
            --warmup 2) || true
        stop
        printf '  %-9s %-10s %12s %12s %10s %10s %8s\n' "$p" "${served:-?}" \
            "$(field_or_dash "$l1" grids_per_s)" "$(field_or_dash "$l16" grids_per_s)" \
            "$(field_or_dash "$l1" p50_ms)" "$(field_or_dash "$l16" p50_ms)" \
            "$(field_or_dash "$l1" errors)+$(field_or_dash "$l16" errors)"

    done
}

if [ "${PRECISION_ONLY:-0}" = 1 ]; then
    by_precision
    exit 0
fi

echo "model $MODEL, $THREADS engine threads, ${H}x$W grids, $K iterations, $SECS s per run"

# --- the engine alone ------------------------------------------------------------
BATCH=$((BATCH_CELLS / (H * W)))
off=$("$OFFLINE" --model "$MODEL" --height $H --width $W --iterations $K --batch $BATCH \
    --threads "$THREADS" --seconds "$SECS")
echo "offline engine, batch $BATCH: $off"
off_gps=$(field "$off" grids_per_s)
# What batching can buy at all: the engine's own batch-of-one throughput.
off1=$("$OFFLINE" --model "$MODEL" --height $H --width $W --iterations $K --batch 1 \
    --threads "$THREADS" --seconds "$SECS")
echo "offline engine, batch 1: $off1"
off1_gps=$(field "$off1" grids_per_s)

# --- the daemon at several concurrencies ----------------------------------------------
start --max-batch-cells $BATCH_CELLS
best=0
c16=0
for c in 1 4 16 64; do
    line=$(load --concurrency $c --height $H --width $W --iterations $K)
    echo "daemon, batching:      $line"
    gps=$(field "$line" grids_per_s)
    best=$(awk -v a="$gps" -v b="$best" 'BEGIN { print (a > b ? a : b) }')
    [ $c -eq 16 ] && c16=$gps
done
stop

# --- the same daemon, one grid per batch -----------------------------------------------
start --max-batch-cells $((H * W))
line=$(load --concurrency 16 --height $H --width $W --iterations $K)
echo "daemon, 1 grid/batch:  $line"
single=$(field "$line" grids_per_s)
stop

# --- the same comparison with small grids, where one grid cannot fill a pass ---------
start --max-batch-cells $BATCH_CELLS
line=$(load --concurrency 16 --height 4 --width 4 --iterations $K)
echo "daemon, batching, 4x4:      $line"
small_batched=$(field "$line" grids_per_s)
stop
start --max-batch-cells 16
line=$(load --concurrency 16 --height 4 --width 4 --iterations $K)
echo "daemon, 1 grid/batch, 4x4:  $line"
small_single=$(field "$line" grids_per_s)
stop

# --- overhead of the smallest request ---------------------------------------------------
tiny=$("$OFFLINE" --model "$MODEL" --height 1 --width 1 --iterations 1 --batch 1 \
    --threads "$THREADS" --seconds 1)
echo "offline engine, 1x1, 1 iteration: $tiny"
start --max-batch-wait-ms 0
line=$(load --concurrency 1 --height 1 --width 1 --iterations 1)
echo "daemon, 1x1, 1 iteration: $line"
stop
p50=$(field "$line" p50_ms)
engine_ms=$(field "$tiny" ms_per_grid)
overhead=$(awk -v a="$p50" -v b="$engine_ms" 'BEGIN { printf "%.3f", a - b }')

a=$(ratio "$best" "$off_gps")
b=$(ratio "$c16" "$single")
echo
echo "(a) saturation $best grids/s vs offline $off_gps grids/s: $a (target >= 0.85: $(verdict "$a" 0.85 '>='))"
echo "(b) concurrency 16: batching $c16 vs one grid per batch $single grids/s: ${b}x (target >= 2x: $(verdict "$b" 2 '>='))"
echo "    the engine alone, batch $BATCH vs batch 1: $off_gps vs $off1_gps grids/s: $(ratio "$off_gps" "$off1_gps")x (the ceiling for (b))"
echo "    the same with 4x4 grids: $small_batched vs $small_single grids/s: $(ratio "$small_batched" "$small_single")x"
echo "(c) 1x1, 1 iteration: p50 $p50 ms - engine $engine_ms ms = $overhead ms overhead (target < 1 ms: $(verdict "$overhead" 1 '<'))"

by_precision
