#!/bin/sh
# test_cli.sh - the `forward` and `generate` subcommands end to end: exit
# status 0/1/2, forward's logits against the PyTorch reference's, the binary
# output, and the iterations generate prints. Run from the repository root
# with HEPTAPOD_BIN set to the heptapod binary (make integration does).
set -eu

BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
FIX=tests/fixtures
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# run WANT CMD...: runs CMD with stdout in $TMP/out and stderr in $TMP/err
# and checks its exit status.
run() {
    want=$1
    shift
    set +e
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        fail "'$*' exited $got, want $want; stderr: $(head -c 300 "$TMP/err")"
        return 1
    fi
    echo "ok: exit $want from $*"
}

# An error is exactly one line on stderr, containing the text given.
one_line_error() {
    lines=$(wc -l <"$TMP/err")
    [ "$lines" -eq 1 ] || fail "stderr has $lines lines, want 1: $(cat "$TMP/err")"
    grep -qF -- "$1" "$TMP/err" || fail "stderr lacks '$1': $(cat "$TMP/err")"
}

# The model of the forward fixture: byte tokenizer, V = 257.
FWD=$FIX/forward_byte.json
MODEL=$FIX/$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$FWD")

# --- exit status ---------------------------------------------------------------

for cmd in forward generate; do
    run 0 "$BIN" $cmd --help && grep -q "usage: heptapod $cmd" "$TMP/out" ||
        fail "$cmd --help printed no usage"
    [ ! -s "$TMP/err" ] || fail "$cmd --help wrote to stderr"
    run 2 "$BIN" $cmd --no-such-flag && one_line_error "unknown option '--no-such-flag'"
    run 2 "$BIN" $cmd --model "$MODEL" --threads && one_line_error "--threads needs a value"
done
run 0 "$BIN" forward --help && grep -q "little-endian float32" "$TMP/out" ||
    fail "forward --help does not document --binary"
run 2 "$BIN" forward --model "$MODEL" --input - && one_line_error "--output"

# A missing or truncated checkpoint is refused with the loader's one-line message.
run 1 "$BIN" generate --model "$TMP/missing.safetensors" && one_line_error "missing.safetensors"
run 1 "$BIN" forward --model "$TMP/missing.safetensors" --input - --output - </dev/null &&
    one_line_error "missing.safetensors"
head -c 1000 "$MODEL" >"$TMP/broken.safetensors"
run 1 "$BIN" generate --model "$TMP/broken.safetensors" && one_line_error "broken.safetensors"
run 1 "$BIN" forward --model "$TMP/broken.safetensors" --input - --output - </dev/null &&
    one_line_error "broken.safetensors"

run 2 "$BIN" generate --model "$MODEL" --top-p 1.5 && one_line_error "top_p 1.5 is outside (0, 1]"
run 2 "$BIN" generate --model "$MODEL" --iterations 0 && one_line_error "iterations 0"
run 2 "$BIN" generate --model "$MODEL" --height 100000 && one_line_error "height 100000"
run 2 "$BIN" generate --model "$MODEL" --seed -3 && one_line_error "--seed '-3'"

# --- forward ------------------------------------------------------------------

# Every forward fixture, each file's grids in one call: logits within the
# file's tolerance, 1e-4 * (1 + max|Z|) (MODEL.md 3.3).
for fx in $FIX/forward_*.json; do
    m=$FIX/$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$fx")
    $PY -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["grids"], sys.stdout)' \
        "$fx" >"$TMP/grids.json"
    run 0 "$BIN" forward --model "$m" --input "$TMP/grids.json" --output "$TMP/logits.json" \
        --threads 2 || continue
    $PY - "$fx" "$TMP/logits.json" <<'EOF' || fail "$fx: forward logits differ from the reference"
import json, sys
fx = json.load(open(sys.argv[1]))
got = json.load(open(sys.argv[2]))
def flat(a):
    return [x for b in a for x in flat(b)] if isinstance(a, list) else [a]
assert len(got) == len(fx["logits"]), (len(got), len(fx["logits"]))
for i, (g, w) in enumerate(zip(got, fx["logits"])):
    assert len(g) == len(w) and len(g[0]) == len(w[0]), i  # same H and W
    g, w = flat(g), flat(w)
    assert len(g) == len(w), (i, len(g), len(w))
    diff = max(abs(a - b) for a, b in zip(g, w))
    print("  grid %d: %d logits, max |diff| %.3g (tolerance %.3g)" % (i, len(g), diff,
                                                                     fx["tolerance"]))
    assert diff <= fx["tolerance"]
EOF
done

# The byte model's fixture for the checks below.
$PY -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["grids"], sys.stdout)' \
    "$FWD" >"$TMP/grids.json"
run 0 "$BIN" forward --model "$MODEL" --input "$TMP/grids.json" --output "$TMP/logits.json"

# --binary: the same float32 values, grid after grid, little-endian.
run 0 "$BIN" forward --model "$MODEL" --input - --output - --binary <"$TMP/grids.json"
cp "$TMP/out" "$TMP/logits.bin"
$PY - "$TMP/logits.json" "$TMP/logits.bin" <<'EOF' || fail "--binary disagrees with the JSON"
import json, struct, sys
def flat(a):
    return [x for b in a for x in flat(b)] if isinstance(a, list) else [a]
want = flat(json.load(open(sys.argv[1])))
raw = open(sys.argv[2], "rb").read()
assert len(raw) == 4 * len(want), (len(raw), len(want))
got = struct.unpack("<%df" % len(want), raw)
# %.9g round-trips float32 exactly.
assert all(struct.pack("<f", a) == struct.pack("<f", b) for a, b in zip(got, want))
EOF

echo '[[[1,2,3],[4,5]]]' >"$TMP/ragged.json"
run 2 "$BIN" forward --model "$MODEL" --input "$TMP/ragged.json" --output - &&
    one_line_error "rectangular"
echo '[[[1,2],[3,257]]]' >"$TMP/vocab.json"
run 2 "$BIN" forward --model "$MODEL" --input "$TMP/vocab.json" --output - &&
    one_line_error "token 257 at (1,1) is outside the vocabulary (257)"
echo '[[]]' >"$TMP/empty.json"
run 2 "$BIN" forward --model "$MODEL" --input "$TMP/empty.json" --output - &&
    one_line_error "non-empty"
run 1 "$BIN" forward --model "$MODEL" --input "$TMP/grids.json" --output "$TMP/no/such.json" &&
    one_line_error "cannot open for writing"
echo '[[[1,2],' >"$TMP/bad.json"
run 1 "$BIN" forward --model "$MODEL" --input "$TMP/bad.json" --output - &&
    one_line_error "bad.json"

# --- generate -----------------------------------------------------------------

run 0 "$BIN" generate --model "$MODEL" --height 4 --width 12 --iterations 5 \
    --prompt "$(printf 'Hello\nworld')"
n=$(grep -c '^iteration [0-9]*/5, [0-9]* masked$' "$TMP/out")
[ "$n" -eq 5 ] || fail "generate printed $n iteration headers, want 5"
grep -q '^iteration 5/5, 0 masked$' "$TMP/out" || fail "the last iteration left masks"
sed -n 2p "$TMP/out" | grep -q '^Hello' || fail "the prompt is not on the first row"
sed -n 3p "$TMP/out" | grep -q '^world' || fail "the prompt's second line is not on row 2"

# --json: one object a line; the same seed gives the same grids at any thread count.
gen="generate --model $MODEL --height 3 --width 7 --iterations 4 --temperature 0.8 --top-k 20 --top-p 0.9 --seed 77 --json"
run 0 "$BIN" $gen --threads 1 && cp "$TMP/out" "$TMP/gen1.jsonl"
run 0 "$BIN" $gen --threads 2 && cp "$TMP/out" "$TMP/gen2.jsonl"
cmp -s "$TMP/gen1.jsonl" "$TMP/gen2.jsonl" || fail "the seeded run differs with 2 threads"
$PY - "$TMP/gen1.jsonl" <<'EOF' || fail "generate --json output is wrong"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["iteration"] for l in lines] == [1, 2, 3, 4], lines
for l in lines:
    assert len(l["grid"]) == 3 and all(len(r) == 7 for r in l["grid"])
    masked = sum(v == l["mask_token"] for r in l["grid"] for v in r)
    assert masked == l["masked"], l
assert lines[-1]["masked"] == 0
EOF

# Greedy generation through the CLI equals the reference's grids, for each
# order and with re-opening.
for GEN in $FIX/generate_byte_3x12_k4.json $FIX/generate_margin_remask_6x6_k5.json \
    $FIX/generate_raster_3x4_k10.json $FIX/generate_confidence_remask_5x7_k6.json; do
    $PY -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["given"], sys.stdout)' \
        "$GEN" >"$TMP/gen_given.json"
    opts=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["model"], d["iterations"], d.get("order", "confidence"), d.get("remask", 0))' "$GEN")
    set -- $opts
    run 0 "$BIN" generate --model "$FIX/$1" --given "$TMP/gen_given.json" --iterations "$2" \
        --temperature 0 --order "$3" --remask "$4" --json
    $PY - "$GEN" "$TMP/out" <<'EOF' || fail "generate differs from $GEN"
import json, sys
want = json.load(open(sys.argv[1]))["grids"]
got = [json.loads(l)["grid"] for l in open(sys.argv[2])]
assert got == want, (got, want)
EOF
done
run 2 "$BIN" generate --model "$MODEL" --order lifo && one_line_error "--order 'lifo' is not one of"
run 2 "$BIN" generate --model "$MODEL" --remask 1 && one_line_error "remask 1 is outside [0, 1)"
run 2 "$BIN" generate --model "$MODEL" --remask -0.5 && one_line_error "remask -0.5 is outside"

# --given: given cells stay, the size comes from the file.
echo '[[72,-1,-1],[null,105,-1]]' >"$TMP/given.json"
run 0 "$BIN" generate --model "$MODEL" --given "$TMP/given.json" --iterations 2 --json
$PY - "$TMP/out" <<'EOF' || fail "generate --given did not keep the given cells"
import json, sys
for l in open(sys.argv[1]):
    g = json.loads(l)["grid"]
    assert len(g) == 2 and len(g[0]) == 3 and g[0][0] == 72 and g[1][1] == 105, g
EOF
run 2 "$BIN" generate --model "$MODEL" --given "$TMP/given.json" --height 5 &&
    one_line_error "disagree"
echo '[[256,-1]]' >"$TMP/given_mask.json"
run 2 "$BIN" generate --model "$MODEL" --given "$TMP/given_mask.json" &&
    one_line_error "the mask token 256 cannot be given"

# --- --precision -----------------------------------------------------------------

# f32 named explicitly is the default's arithmetic, bit for bit; a name the
# engine does not know is a usage error; bf16 and int8 either run or are
# refused in one line by an engine built without them.
run 0 "$BIN" forward --model "$MODEL" --input "$TMP/grids.json" --output - --binary \
    --precision f32 && cmp -s "$TMP/out" "$TMP/logits.bin" ||
    fail "forward --precision f32 differs from the default"
run 2 "$BIN" forward --model "$MODEL" --input - --output - --precision fp8 </dev/null &&
    one_line_error "--precision 'fp8' is not f32, bf16 or int8"
run 2 "$BIN" generate --model "$MODEL" --precision fp8 &&
    one_line_error "--precision 'fp8' is not f32, bf16 or int8"
for p in bf16 int8; do
    set +e
    "$BIN" forward --model "$MODEL" --input "$TMP/grids.json" --output "$TMP/p.bin" --binary \
        --precision $p 2>"$TMP/err"
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        [ "$(wc -c <"$TMP/p.bin")" -eq "$(wc -c <"$TMP/logits.bin")" ] ||
            fail "forward --precision $p wrote the wrong number of logits"
        echo "ok: forward --precision $p runs"
        run 0 "$BIN" generate --model "$MODEL" --height 2 --width 5 --iterations 2 --precision $p
    elif [ $rc -eq 1 ]; then
        one_line_error "precision $p is not built into this engine"
        echo "ok: forward --precision $p refused: $(cat "$TMP/err")"
    else
        fail "forward --precision $p exited $rc: $(cat "$TMP/err")"
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all CLI checks passed"
