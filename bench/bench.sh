#!/bin/sh
# bench.sh BUILD - `make bench`: the engine in every precision beside PyTorch, one table.
#
# Runs, in this order, and hands every line to bench/report.py:
#   1. engine_bench --matrix under the environment as it is (OpenBLAS pinned to the
#      kernel OPENBLAS_CORETYPE names, here Haswell/AVX2);
#   2. the PyTorch reference (tools/bench_ref.py) in f32 under the same environment,
#      once with 1 and once with 2 OpenBLAS threads, each at 1 and 2 torch threads;
#      and in int8 (quantize_dynamic, onednn and qnnpack), which does not use OpenBLAS;
#   3. and 4. the same engine and f32 PyTorch runs with OPENBLAS_CORETYPE and
#      OPENBLAS_L2_SIZE unset for that command only, so OpenBLAS picks its kernel
#      from the CPU (AVX-512 here).
# Cases: the D256 L6 random model (engine_bench --write-checkpoint) on 32x32 grids and
# the default model on 16x64 grids. Environment: REPEATS (default 5), ENG_SECONDS per
# engine repeat (0.4), REF_SECONDS per PyTorch setting (3), PRECISIONS
# (f32,bf16,int8), RAW=1 to print the raw lines too.
set -eu

BUILD=${1:?usage: bench/bench.sh BUILD}
ENGINE=$BUILD/bench/engine_bench
PY=${PY:-/usr/bin/python3}
REPEATS=${REPEATS:-5}
ENG_SECONDS=${ENG_SECONDS:-0.4}
REF_SECONDS=${REF_SECONDS:-3}
PRECISIONS=${PRECISIONS:-f32,bf16,int8}
DEFAULT_MODEL=${MODEL:-models/default.safetensors}
[ -x "$ENGINE" ] || { echo "bench: $ENGINE is missing (make bench builds it)"; exit 2; }
[ -f "$DEFAULT_MODEL" ] || { echo "bench: $DEFAULT_MODEL is missing"; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
START=$(date +%s)
RANDOM_MODEL=$TMP/random_d256.safetensors
"$ENGINE" --write-checkpoint "$RANDOM_MODEL"
OUT=$TMP/lines
: >"$OUT"
UNPIN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"

# engine ENV_LABEL [env -u ...]
engine() {
    label=$1
    shift
    echo "bench: engine, $label ..." >&2
    "$@" "$ENGINE" --matrix --case "$RANDOM_MODEL:32x32" --case "$DEFAULT_MODEL:16x64" \
        --precisions "$PRECISIONS" --threads-list 1,2 --repeats "$REPEATS" \
        --seconds "$ENG_SECONDS" | sed "s/^/$label /" >>"$OUT"
}

# reference ENV_LABEL PRECISION [env -u ...]: both cases, 1 and 2 OpenBLAS threads
# for f32 (int8 does not call OpenBLAS: one run).
reference() {
    label=$1
    prec=$2
    shift 2
    if ! "$PY" -c 'import torch' 2>/dev/null; then
        echo "$label ref status=n/a message=$PY cannot import torch (make tools-deps)" >>"$OUT"
        return 0
    fi
    blas_list="1 2"
    [ "$prec" = int8 ] && blas_list=1
    for case in "$RANDOM_MODEL:32:32" "$DEFAULT_MODEL:16:64"; do
        model=${case%%:*}
        hw=${case#*:}
        for blas in $blas_list; do
            echo "bench: PyTorch $prec, $label, $(basename "$model"), $blas BLAS thread(s) ..." >&2
            "$@" "$PY" tools/bench_ref.py --model "$model" --height "${hw%:*}" \
                --width "${hw#*:}" --threads 1,2 --blas-threads "$blas" --precision "$prec" \
                --qengine onednn,qnnpack --repeats "$REPEATS" --seconds "$REF_SECONDS" |
                sed "s/^/$label /" >>"$OUT" ||
                echo "$label ref model=$model precision=$prec status=n/a message=bench_ref.py failed" >>"$OUT"
        done
    done
}

engine pinned
reference pinned f32
reference pinned int8
engine native $UNPIN
reference native f32 $UNPIN

[ "${RAW:-0}" = 1 ] && cat "$OUT"
"$PY" bench/report.py --random-model "$RANDOM_MODEL" --default-model "$DEFAULT_MODEL" "$OUT"
echo "make bench: $(($(date +%s) - START)) s"
