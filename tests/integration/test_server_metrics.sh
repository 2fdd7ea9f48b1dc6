#!/bin/sh
# test_server_metrics.sh - /metrics on a live daemon serving two models:
# `promtool check metrics` passes, every family is there, the counters agree
# with the work done, and the process_* gauges are plausible.
set -eu
. tests/integration/server_lib.sh

start_server --model "$MODEL" --model "$FIX/small_f32.safetensors" --max-batch-wait-ms 0

expect "two models listed" "$(curl -s "$URL/v1/models" >"$TMP/m.json" && json "$TMP/m.json" "[m['name'] for m in d['data']]")" \
    "['byte_f32', 'small_f32']"

# A known amount of work on each model, one request at a time.
expect "byte_f32 request" "$(post '{"height":4,"width":6,"iterations":5,"seed":1}')" 200
expect "small_f32 request" "$(post '{"model":"small_f32","height":3,"width":3,"iterations":4,"seed":1}')" 200
schema response /generate post 200 "$TMP/body"
expect "answered by small_f32" "$(json "$TMP/body" "d['model']")" small_f32
curl -sN -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary '{"height":2,"width":2,"iterations":3,"stream":true}' "$URL/generate"
post '{"height":0,"width":2}' >/dev/null

curl -s -D "$TMP/mh" -o "$TMP/metrics.txt" "$URL/metrics"
expect "content type" "$(tr -d '\r' <"$TMP/mh" | sed -n 's/^Content-Type: *//Ip')" "text/plain; version=0.0.4; charset=utf-8"
if promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1; then
    ok "promtool check metrics"
else
    fail "promtool check metrics: $(cat "$TMP/promtool.out")"
fi

for fam in heptapod_http_requests_total heptapod_request_duration_seconds \
    heptapod_queue_duration_seconds heptapod_time_to_first_iteration_seconds \
    heptapod_forward_duration_seconds heptapod_batch_grids heptapod_batch_cells \
    heptapod_forward_passes_total heptapod_iterations_total heptapod_cells_computed_total \
    heptapod_generations_total heptapod_queue_depth heptapod_active_requests \
    heptapod_model_info heptapod_build_info heptapod_ready process_cpu_seconds_total \
    process_resident_memory_bytes process_start_time_seconds process_open_fds; do
    grep -q "^# TYPE $fam " "$TMP/metrics.txt" || fail "no family $fam"
done
ok "every family is exposed"

m() {
    awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "absent" : v) }' "$TMP/metrics.txt"
}
# byte_f32: 5 iterations of 24 cells, then 3 of 4 cells (the stream).
expect "iterations (byte_f32)" "$(m 'heptapod_iterations_total{model="byte_f32"}')" 8
expect "cells (byte_f32)" "$(m 'heptapod_cells_computed_total{model="byte_f32"}')" 132
expect "forward passes (byte_f32)" "$(m 'heptapod_forward_passes_total{model="byte_f32"}')" 8
expect "iterations (small_f32)" "$(m 'heptapod_iterations_total{model="small_f32"}')" 4
expect "cells (small_f32)" "$(m 'heptapod_cells_computed_total{model="small_f32"}')" 36
expect "completed (byte_f32)" "$(m 'heptapod_generations_total{model="byte_f32",outcome="completed"}')" 2
expect "request durations (byte_f32)" "$(m 'heptapod_request_duration_seconds_count{model="byte_f32"}')" 2
expect "+Inf bucket = count" "$(m 'heptapod_batch_cells_bucket{model="byte_f32",le="+Inf"}')" 8
expect "batch cells <= 4" "$(m 'heptapod_batch_cells_bucket{model="byte_f32",le="4"}')" 3
expect "a 422 counted" "$(m 'heptapod_http_requests_total{endpoint="/generate",status="422"}')" 1
expect "ready" "$(m heptapod_ready)" 1
grep -q '^heptapod_model_info{model="small_f32",path="tests/fixtures/small_f32.safetensors",vocab_size="24",' \
    "$TMP/metrics.txt" && ok "model_info of small_f32" || fail "model_info of small_f32 missing"
grep -q '^heptapod_build_info{version="[^"]*",libmicrohttpd="[^"]*",libuv="[^"]*",compiler="[^"]*"} 1$' \
    "$TMP/metrics.txt" && ok "build_info" || fail "build_info missing"

now=$(date +%s)
"$PY" - "$TMP/metrics.txt" "$now" "$SERVER_PID" <<'EOF' && ok "process metrics plausible" || fail "process metrics"
import os, sys
vals = {}
for line in open(sys.argv[1]):
    if line.startswith("process_"):
        k, v = line.split()
        vals[k] = float(v)
now, pid = float(sys.argv[2]), int(sys.argv[3])
rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
fds = len(os.listdir(f"/proc/{pid}/fd"))
checks = {
    "start time within the last 10 minutes": now - 600 < vals["process_start_time_seconds"] <= now + 1,
    "resident memory near /proc's": 0.5 * rss < vals["process_resident_memory_bytes"] < 2 * rss,
    "open fds near /proc's": abs(vals["process_open_fds"] - fds) <= 3,
    "cpu seconds": vals["process_cpu_seconds_total"] >= 0,
    "max fds": vals["process_max_fds"] >= vals["process_open_fds"],
}
bad = [k for k, v in checks.items() if not v]
if bad:
    print("process metrics:", vals, "bad:", bad)
sys.exit(1 if bad else 0)
EOF

check_schemas
stop_server
expect "exit code" "$STOP_CODE" 0
finish
