#!/bin/sh
# test_server_seed.sh - a nonlinear-transformer-0.0.3 model served beside a
# heptapod-v1 one: /v1/models names each arch; a stream has one iteration
# event per open cell, each reporting that count as `iterations`, whatever
# the request's iterations and order; the greedy grid is the package's
# (tests/fixtures/seed_generate_gen_6x6.json) and what `heptapod generate`
# gives; open cells beyond max_iterations are 422; the mask token id is an
# ordinary token for this model and still refused for the v1 one; admission
# weighs the steps that run (cells x open cells).
set -eu
. tests/integration/server_lib.sh
VALIDATE="$PY tests/integration/validate.py"
SEED=$FIX/seed_gen.safetensors

start_server --model "$SEED" --model "$MODEL" --max-iterations 200 --default-deadline-ms 0

# --- /v1/models ---------------------------------------------------------------
expect "GET /v1/models" "$(curl -s -o "$TMP/m.json" -w '%{http_code}' "$URL/v1/models")" 200
schema response /v1/models get 200 "$TMP/m.json"
expect "arch of each model" "$(json "$TMP/m.json" "[(m['name'], m['arch']) for m in d['data']]")" \
    "[('seed_gen', 'nonlinear-transformer-0.0.3'), ('byte_f32', 'heptapod-v1')]"
V1_MASK=$(json "$TMP/m.json" "d['data'][1]['hparams']['mask_token']")

# --- a greedy stream: one event per open cell ------------------------------------
# iterations and order are the request's wish; the model runs 36 raster steps.
REQ='{"model":"seed_gen","height":6,"width":6,"temperature":0,"iterations":3,"order":"margin"'
curl -sN -o "$TMP/sse.txt" -X POST -H 'Content-Type: application/json' \
    --data-binary "$REQ,\"stream\":true}" "$URL/generate"
schema sse "$TMP/sse.txt"
expect "SSE events (36 open cells + done)" "$($VALIDATE sse "$TMP/sse.txt" || true)" "37 36 done"
grep '^data: {"iteration"' "$TMP/sse.txt" | sed 's/^data: //' >"$TMP/iters.jsonl"
grep '^data: {"request_id"' "$TMP/sse.txt" | sed 's/^data: //' >"$TMP/done.json"
expect "every event reports 36 iterations, one cell fewer open each" "$("$PY" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
print(all(e["iterations"] == 36 and e["open"] == 36 - e["iteration"] for e in ev),
      sum(c is None for c in sum(ev[9]["grid"], [])))' "$TMP/iters.jsonl")" "True 26"
expect "done event: what ran" "$(json "$TMP/done.json" "[d['iterations'], d['order'], d['remask']]")" \
    "[36, 'raster', 0]"
tail -n 1 "$TMP/iters.jsonl" >"$TMP/last.json"
expect "greedy grid is the package's" "$(json "$TMP/last.json" "d['grid']")" \
    "$(json $FIX/seed_generate_gen_6x6.json "d['grids'][-1]")"

# The same request as one JSON body, and from the command line.
expect "JSON generate" "$(post "$REQ}")" 200
schema response /generate post 200 "$TMP/body"
expect "JSON body: what ran" "$(json "$TMP/body" "[d['iterations'], d['order'], d['remask_noise']]")" \
    "[36, 'raster', 0]"
"$BIN" generate --model "$SEED" --height 6 --width 6 --temperature 0 --json >"$TMP/cli.jsonl"
tail -n 1 "$TMP/cli.jsonl" >"$TMP/cli.json"
expect "JSON grid = heptapod generate" "$(json "$TMP/body" "d['grid']")" "$(json "$TMP/cli.json" "d['grid']")"
expect "the stream's last grid = the JSON one" "$(json "$TMP/last.json" "d['grid']")" \
    "$(json "$TMP/body" "d['grid']")"

# --- the mask token id is an ordinary token for this model ----------------------
GIVEN='[[0,null,5,null],[null,0],[],[7]]'
expect "mask token id given to the seed model" \
    "$(post "{\"model\":\"seed_gen\",\"given\":$GIVEN,\"width\":4,\"temperature\":0}")" 200
expect "given 0 kept, 12 steps" "$(json "$TMP/body" "[d['grid'][0][0], d['grid'][1][1], d['iterations']]")" \
    "[0, 0, 12]"
cp "$TMP/body" "$TMP/given.json"
echo "[[0,null,5,null],[null,0,null,null],[null,null,null,null],[7,null,null,null]]" >"$TMP/given_cli.json"
"$BIN" generate --model "$SEED" --given "$TMP/given_cli.json" --temperature 0 --json |
    tail -n 1 >"$TMP/cli_given.json"
expect "given grid = heptapod generate --given" "$(json "$TMP/given.json" "d['grid']")" \
    "$(json "$TMP/cli_given.json" "d['grid']")"
curl -sN -o "$TMP/sse2.txt" -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"seed_gen\",\"given\":$GIVEN,\"width\":4,\"temperature\":0,\"stream\":true}" \
    "$URL/generate"
expect "given stream: 12 steps" "$($VALIDATE sse "$TMP/sse2.txt" || true)" "13 12 done"
expect "given 0 is no open cell in the first event" "$(grep -m1 '^data: {"iteration"' "$TMP/sse2.txt" |
    sed 's/^data: //' | "$PY" -c 'import json,sys; d=json.load(sys.stdin); g=d["grid"]
print(g[0][0], g[0][1] is not None, g[1][:2], d["open"])')" "0 True [None, 0] 11"

expect "the v1 model still refuses its mask token" \
    "$(post "{\"model\":\"byte_f32\",\"given\":[[$V1_MASK]],\"width\":2}")" 422
schema response /generate post 422 "$TMP/body"
expect "the refusal names the cell" "$(json "$TMP/body" "d['error']['field']")" "given[0][0]"
expect "the v1 model runs the iterations asked" \
    "$(post '{"model":"byte_f32","height":2,"width":3,"iterations":3}')" 200
expect "v1 iterations" "$(json "$TMP/body" "[d['iterations'], d['order']]")" "[3, 'confidence']"

# --- max_iterations bounds the steps -------------------------------------------------
ROW0='[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]'
expect "240 open cells, max_iterations 200" \
    "$(post "{\"model\":\"seed_gen\",\"height\":16,\"width\":16,\"given\":[$ROW0]}")" 422
schema response /generate post 422 "$TMP/body"
expect "the refusal names iterations" "$(json "$TMP/body" "[d['error']['code'], d['error']['field']]")" \
    "['out_of_range', 'iterations']"
expect "and says why" "$(json "$TMP/body" "d['error']['message']")" \
    "this model takes one step per open cell: 240 open cells exceed max_iterations 200"

# --- admission weighs the steps that run -----------------------------------------------
# Once a rate is measured, a 14 x 14 grid with every cell open is
# 196 x 196 = 38,416 cell-iterations (not 196 x the default 8 = 1,568):
# refused on a deadline too short for that work, with the figure.
RATE='heptapod_cell_iterations_per_second{model="seed_gen"}'
post '{"model":"seed_gen","height":14,"width":14}' >/dev/null
wait_for 'awk -v r="$(metric "$RATE")" "BEGIN { exit !(r > 0) }"' 10 || fail "no rate measured"
rate=$(metric "$RATE")
# A deadline a fifth of the work's time at that rate, at least 1 ms.
ms=$(awk -v r="$rate" 'BEGIN { m = int(38416 / r * 1000 / 5); print (m < 1 ? 1 : m) }')
s=$(post "{\"model\":\"seed_gen\",\"height\":14,\"width\":14,\"deadline_ms\":$ms}")
msg=$(json "$TMP/body" "d['error']['message']" 2>/dev/null || echo "status $s")
case "$s $msg" in
"422 38,416 cell-iterations need about"*) ok "refused on the steps that run ($rate cell-iterations/s, ${ms} ms): $msg" ;;
"504 the deadline passed before the request could be queued")
    ok "the ${ms} ms deadline passed before admission (machine busy): not decisive" ;;
*) fail "admission of 38,416 cell-iterations in ${ms} ms at $rate/s: $s $msg" ;;
esac

check_schemas
finish
