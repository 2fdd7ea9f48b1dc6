#!/bin/sh
# test_server_lifecycle.sh - models at run time: a reload swaps weights while
# a long streamed request is in flight (it finishes on the old weights, new
# requests get the new ones, compared grid for grid with each checkpoint
# served alone); a reload from a truncated file keeps the old weights serving
# and says why (response, /v1/models, metrics, log); SIGHUP reloads every
# model; unload answers 404 afterwards and refuses the default model; a model
# loaded over HTTP serves; the model endpoints need the API key; precision
# per model entry, refused at start when unknown, reported in /v1/models and
# metrics.
set -eu
. tests/integration/server_lib.sh

KEY=lifecycle-key
AUTH="Authorization: Bearer $KEY"
OLD=$FIX/byte_f32.safetensors # the weights the daemon starts with
NEW=$FIX/byte_gen.safetensors # same vocabulary (bytes), other weights, at most 16x64
LIVE=$TMP/live.safetensors    # the path the daemon serves; files are renamed over it

# admin METHOD PATH [BODY]: a model endpoint with the key; the body lands in
# $TMP/body; prints the status.
admin() {
    if [ $# -ge 3 ]; then
        curl -s -o "$TMP/body" -w '%{http_code}' -X "$1" -H "$AUTH" \
            -H 'Content-Type: application/json' --data-binary "$3" "$URL$2"
    else
        curl -s -o "$TMP/body" -w '%{http_code}' -X "$1" -H "$AUTH" "$URL$2"
    fi
}

# grid_of FILE: the grid of a JSON result, or of the last iteration event of
# an SSE stream, as one line.
grid_of() {
    "$PY" - "$1" <<'EOF'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
if raw.lstrip().startswith("{"):
    print(json.dumps(json.loads(raw)["grid"]))
else:
    grids = [json.loads(l[5:])["grid"] for l in raw.splitlines()
             if l.startswith("data:") and '"grid"' in l]
    print(json.dumps(grids[-1]) if grids else "none")
EOF
}

# swap SRC: replaces $LIVE by a copy of SRC the way deployments should, by
# renaming: a model still mapping the old file keeps its bytes.
swap() {
    cp "$1" "$TMP/swap.tmp"
    mv "$TMP/swap.tmp" "$LIVE"
}

cp "$OLD" "$LIVE"
start_server --model "$LIVE:precision=f32,name=live" --model "$FIX/small_f32.safetensors" \
    --api-key "$KEY" --max-iterations 100000 --threads 1

# --- what /v1/models and /metrics say at start -------------------------------
expect "GET /v1/models/live" "$(admin GET /v1/models/live)" 200
schema response "/v1/models/{name}" get 200 "$TMP/body"
expect "precision from the entry" "$(json "$TMP/body" "d['precision']")" f32
expect "state ready" "$(json "$TMP/body" "d['state'], d['generation'], d['last_error']")" \
    "ready 1 None"
case "$(json "$TMP/body" "d['isa']")" in
scalar | avx2 | avx512) ok "the kernels' instruction set is shown" ;;
*) fail "isa: $(json "$TMP/body" "d['isa']")" ;;
esac
expect "model_state ready" "$(metric 'heptapod_model_state{model="live",state="ready"}')" 1
expect "model_state loading" "$(metric 'heptapod_model_state{model="live",state="loading"}')" 0
expect "one load counted" "$(metric 'heptapod_model_loads_total{model="live",result="success"}')" 1
curl -s "$URL/metrics" | grep -q '^heptapod_model_info{model="live",.*,precision="f32",isa="[a-z0-9]*"} 1$' &&
    ok "model_info carries the precision" || fail "model_info without precision"

# --- the model endpoints need the key ---------------------------------------------
for req in "POST /v1/models/live/reload" "DELETE /v1/models/small_f32" "POST /v1/models"; do
    set -- $req
    expect "$req without the key" \
        "$(curl -s -o /dev/null -w '%{http_code}' -X "$1" "$URL$2")" 401
done
expect "GET /v1/models does not offer DELETE" \
    "$(curl -s -o /dev/null -D "$TMP/headers" -w '%{http_code}' -X DELETE -H "$AUTH" "$URL/v1/models")" 405
expect "... Allow" "$(header Allow)" "GET, HEAD, POST"

# --- load: the new weights under their own name, as the reference --------------------
expect "load ref_new" "$(admin POST /v1/models "{\"path\":\"$NEW\",\"name\":\"ref_new\",\"precision\":\"f32\"}")" 201
schema response /v1/models post 201 "$TMP/body"
expect "... its generation" "$(json "$TMP/body" "d['name'], d['generation'], d['default']")" \
    "ref_new 1 False"
expect "a second load of the name" "$(admin POST /v1/models "{\"path\":\"$NEW\",\"name\":\"ref_new\"}")" 409
expect "... conflict" "$(json "$TMP/body" "d['error']['code']")" conflict
schema response /v1/models post 409 "$TMP/body"
expect "an unknown precision" "$(admin POST /v1/models "{\"path\":\"$NEW\",\"name\":\"x\",\"precision\":\"fp8\"}")" 400
expect "... names the field" "$(json "$TMP/body" "d['error']['field']")" precision
expect "an unknown field" "$(admin POST /v1/models "{\"path\":\"$NEW\",\"nmae\":\"x\"}")" 400
expect "a file that is not there" "$(admin POST /v1/models '{"path":"/nonexistent/m.safetensors"}')" 422
expect "... load_failed" "$(json "$TMP/body" "d['error']['code']")" load_failed
schema response /v1/models post 422 "$TMP/body"
expect "... and no model left behind" "$(admin GET /v1/models/m)" 404
expect "readiness unchanged" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" 200

# --- reference grids of each checkpoint served alone ---------------------------------
# Long enough (about 3 s) that the reload below lands while it runs.
post '{"model":"live","height":16,"width":64,"iterations":4,"seed":7}' -H "$AUTH" >/dev/null
K=$(json "$TMP/body" "max(20, int(3000 / (d['timings']['compute_ms'] / 4)))")
REQ="\"height\":16,\"width\":64,\"iterations\":$K,\"seed\":7,\"temperature\":0.8"
expect "reference on the old weights" "$(post "{\"model\":\"live\",$REQ}" -H "$AUTH")" 200
G_OLD=$(grid_of "$TMP/body")
expect "reference on the new weights" "$(post "{\"model\":\"ref_new\",$REQ}" -H "$AUTH")" 200
G_NEW=$(grid_of "$TMP/body")
[ "$(metric 'heptapod_forward_duration_seconds_count{model="live",precision="f32"}')" -gt 0 ] &&
    ok "forward passes are timed by precision" || fail "no forward histogram with precision"
[ "$G_OLD" != "$G_NEW" ] && ok "the two checkpoints give different grids" ||
    fail "the two checkpoints give the same grid: the test would prove nothing"
SMALL='"height":4,"width":8,"iterations":4,"seed":3'
post "{\"model\":\"live\",$SMALL}" -H "$AUTH" >/dev/null
S_OLD=$(grid_of "$TMP/body")
post "{\"model\":\"ref_new\",$SMALL}" -H "$AUTH" >/dev/null
S_NEW=$(grid_of "$TMP/body")

# --- reload while a streamed request is in flight --------------------------------------
ACTIVE='heptapod_active_requests{model="live"}'
curl -s -N -o "$TMP/stream.txt" -X POST -H "$AUTH" -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"live\",$REQ,\"stream\":true}" "$URL/generate" &
client=$!
wait_for 'grep -q "^event: iteration" "$TMP/stream.txt" 2>/dev/null' 20 ||
    fail "the streamed request never started"
swap "$NEW"
expect "reload while it runs" "$(admin POST /v1/models/live/reload)" 200
schema response "/v1/models/{name}/reload" post 200 "$TMP/body"
expect "... generation 2, the new file's shape" \
    "$(json "$TMP/body" "d['generation'], d['state'], d['hparams']['max_width']")" "2 ready 64"
expect "... the stream still in flight" "$(metric "$ACTIVE")" 1
expect "a new request" "$(post "{\"model\":\"live\",$REQ}" -H "$AUTH")" 200
[ "$(grid_of "$TMP/body")" = "$G_NEW" ] && ok "a request after the reload runs on the new weights" ||
    fail "a request after the reload did not run on the new weights"
wait "$client" || true
grep -q '^event: done' "$TMP/stream.txt" && ok "the streamed request finished" ||
    fail "the streamed request did not finish: $(tail -c 300 "$TMP/stream.txt")"
[ "$(grid_of "$TMP/stream.txt")" = "$G_OLD" ] &&
    ok "the request in flight finished on the old weights" ||
    fail "the request in flight did not finish on the old weights"
schema sse "$TMP/stream.txt"

# --- a failed reload keeps serving ---------------------------------------------------------
head -c 4000 "$OLD" >"$TMP/truncated"
swap "$TMP/truncated"
expect "reload from a truncated file" "$(admin POST /v1/models/live/reload)" 422
schema response "/v1/models/{name}/reload" post 422 "$TMP/body"
expect "... load_failed" "$(json "$TMP/body" "d['error']['code']")" load_failed
case "$(json "$TMP/body" "d['error']['message']")" in
*"generation 2 keeps serving"*"$LIVE"*) ok "... the message says what serves and why" ;;
*) fail "message: $(json "$TMP/body" "d['error']['message']")" ;;
esac
admin GET /v1/models/live >/dev/null
expect "state failed, generation 2 serving" "$(json "$TMP/body" "d['state'], d['generation']")" "failed 2"
case "$(json "$TMP/body" "d['last_error']")" in
*"$LIVE"*) ok "last_error names the file" ;;
*) fail "last_error: $(json "$TMP/body" "d['last_error']")" ;;
esac
expect "model_state failed" "$(metric 'heptapod_model_state{model="live",state="failed"}')" 1
expect "model_state ready" "$(metric 'heptapod_model_state{model="live",state="ready"}')" 0
expect "the failure counted" "$(metric 'heptapod_model_loads_total{model="live",result="failure"}')" 1
grep -q '"cannot load model live: .*keep serving' "$TMP/server.log" && ok "... and logged" ||
    fail "the failed reload is not in the log"
expect "still serving" "$(post "{\"model\":\"live\",$SMALL}" -H "$AUTH")" 200
[ "$(grid_of "$TMP/body")" = "$S_NEW" ] && ok "... on the weights of generation 2" ||
    fail "the failed reload changed the weights"
expect "readiness unchanged" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" 200

# --- SIGHUP reloads every model ---------------------------------------------------------------
swap "$OLD"
kill -HUP "$SERVER_PID"
wait_for '[ "$(metric "heptapod_model_loads_total{model=\"small_f32\",result=\"success\"}")" = 2 ] &&
          [ "$(metric "heptapod_model_state{model=\"live\",state=\"ready\"}")" = 1 ]' 10 &&
    ok "SIGHUP reloaded both models" || fail "SIGHUP did not reload the models"
admin GET /v1/models/live >/dev/null
expect "... live at generation 3, no error" "$(json "$TMP/body" "d['generation'], d['last_error']")" "3 None"
post "{\"model\":\"live\",$SMALL}" -H "$AUTH" >/dev/null
[ "$(grid_of "$TMP/body")" = "$S_OLD" ] && ok "... on the file's new contents" ||
    fail "SIGHUP did not load the file's new contents"

# --- unload, and load again -------------------------------------------------------------------
expect "unload the default model" "$(admin DELETE /v1/models/live)" 409
schema response "/v1/models/{name}" delete 409 "$TMP/body"
expect "unload an unknown model" "$(admin DELETE /v1/models/nope)" 404
curl -s -N -o "$TMP/stream2.txt" -X POST -H "$AUTH" -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"ref_new\",$REQ,\"stream\":true}" "$URL/generate" &
client=$!
wait_for 'grep -q "^event: iteration" "$TMP/stream2.txt" 2>/dev/null' 20 ||
    fail "the streamed request on ref_new never started"
expect "unload ref_new with a request in flight" "$(admin DELETE /v1/models/ref_new)" 200
schema response "/v1/models/{name}" delete 200 "$TMP/body"
expect "... status" "$(json "$TMP/body" "d['status']")" unloaded
case "$(json "$TMP/body" "d['detail']")" in
*"1 request in flight finishes"*) ok "... which finishes on it" ;;
*) fail "detail: $(json "$TMP/body" "d['detail']")" ;;
esac
wait "$client" || true
[ "$(grid_of "$TMP/stream2.txt")" = "$G_NEW" ] && grep -q '^event: done' "$TMP/stream2.txt" &&
    ok "the request in flight on the unloaded model finished" ||
    fail "the request in flight on the unloaded model did not finish"
expect "then GET is 404" "$(admin GET /v1/models/ref_new)" 404
expect "... and generating on it" "$(post "{\"model\":\"ref_new\",$SMALL}" -H "$AUTH")" 404
expect "... out of the list" \
    "$(curl -s -H "$AUTH" "$URL/v1/models" | "$PY" -c "import json,sys; print(sorted(m['name'] for m in json.load(sys.stdin)['data']))")" \
    "['live', 'small_f32']"
curl -s "$URL/metrics" | grep -q 'heptapod_model_state{model="ref_new"' &&
    fail "model_state of ref_new after the unload" || ok "its model_state series are gone"
expect "load it again from the file" "$(admin POST /v1/models "{\"path\":\"$NEW\",\"name\":\"ref_new\"}")" 201
expect "... it serves" "$(post "{\"model\":\"ref_new\",$SMALL}" -H "$AUTH")" 200
[ "$(grid_of "$TMP/body")" = "$S_NEW" ] && ok "... the same grids" || fail "the reloaded model differs"
expect "readiness through it all" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" 200
check_schemas
stop_server
expect "clean exit" "$STOP_CODE" 0

# --- off without a key, unless model_admin=on ---------------------------------------------------
start_server --model "$FIX/small_f32.safetensors"
expect "without an API key the endpoints are off" \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/models/small_f32/reload")" 405
expect "... POST /v1/models too" \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/models")" 405
stop_server

# --- precision at start ------------------------------------------------------------------------------
set +e
"$BIN" serve --port 0 --model "$FIX/small_f32.safetensors:precision=fp8" >/dev/null 2>"$TMP/bad.log"
code=$?
set -e
expect "an unknown precision stops the start" "$code" 2
grep -q "model entry '$FIX/small_f32.safetensors:precision=fp8': unknown precision 'fp8'" \
    "$TMP/bad.log" && ok "... naming the entry" || fail "message: $(cat "$TMP/bad.log")"

# int8 weights: quantized at load by the engine.
start_server --model "$FIX/small_f32.safetensors:precision=int8" --model "$FIX/byte_f32.safetensors"
expect "GET /v1/models/small_f32" "$(curl -s -o "$TMP/body" -w '%{http_code}' "$URL/v1/models/small_f32")" 200
expect "precision int8 from the entry" "$(json "$TMP/body" "d['precision']")" int8
expect "the other model keeps the checkpoint's" \
    "$(curl -s "$URL/v1/models/byte_f32" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['precision'])")" f32
curl -s "$URL/metrics" | grep -q '^heptapod_model_info{model="small_f32",.*precision="int8"' &&
    ok "model_info says int8" || fail "model_info does not say int8"
expect "int8 serves" "$(post '{"model":"small_f32","height":4,"width":4,"iterations":2,"seed":1}')" 200
stop_server
finish
