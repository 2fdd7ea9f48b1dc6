#!/bin/sh
# test_cli_defaults.sh - `heptapod generate` with no sampling flags answers
# what POST /generate answers with no sampling fields: the same default model,
# iterations, temperature, top-k, top-p and the model's remask_noise, so for
# one seed the two grids are identical. Run from the repository root with
# HEPTAPOD_BIN set (make integration does).
set -eu
. tests/integration/server_lib.sh

DEFAULT=models/default.safetensors
start_server --model "$DEFAULT"

# The daemon's defaults as it echoes them.
status=$(post '{"height": 4, "width": 16, "seed": 3, "text": ["Once upon a"]}')
expect "POST /generate with defaults" "$status" 200
cp "$TMP/body" "$TMP/server.json"

# The CLI with only the size, the prompt and the seed; from the repository
# root, --model defaults to the daemon's default model.
"$BIN" generate --height 4 --width 16 --seed 3 --prompt "Once upon a" --json >"$TMP/cli.jsonl" ||
    fail "heptapod generate exited $?"

if "$PY" - "$TMP/server.json" "$TMP/cli.jsonl" "$DEFAULT" <<'PYEOF'; then
import json, struct, sys
server = json.load(open(sys.argv[1]))
lines = [json.loads(l) for l in open(sys.argv[2])]
# Iterations: the CLI prints one line per iteration.
assert len(lines) == server["iterations"], (len(lines), server["iterations"])
# remask_noise: the daemon echoes the model's metadata value; it must not be 0
# for this check to mean anything.
raw = open(sys.argv[3], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
meta = json.loads(raw[8:8 + n]).get("__metadata__", {})
assert float(meta["remask_noise"]) == server["remask_noise"] > 0, (meta, server["remask_noise"])
assert lines[-1]["grid"] == server["grid"], (lines[-1]["grid"], server["grid"])
print("  same %dx%d grid after %d iterations, remask_noise %g" % (
    server["height"], server["width"], server["iterations"], server["remask_noise"]))
PYEOF
    ok "heptapod generate's defaults give the daemon's grid for the same seed"
else
    fail "the CLI's defaults differ from the daemon's"
fi

# A greedy CLI run differs from it: the comparison above can fail.
"$BIN" generate --height 4 --width 16 --seed 3 --prompt "Once upon a" --json --temperature 0 \
    >"$TMP/greedy.jsonl"
if cmp -s "$TMP/cli.jsonl" "$TMP/greedy.jsonl"; then
    fail "temperature 0 gives the same grids as the default"
else
    ok "temperature 0 gives other grids than the default"
fi
finish
