#!/bin/sh
# test_server_limits.sh - the daemon sized to what it may use: the automatic
# thread count follows the CPU affinity mask (taskset) rather than the
# node's cores, and a max_batch_cells whose workspace would not fit in the
# memory limit is refused at start with both sizes, the limit's source and
# the setting to lower. (cgroup quotas: tests/config/test_host.c, on
# fixture files.)
set -eu
. tests/integration/server_lib.sh

threads_in_log() {
    sed -n 's/.*listening on .* \([0-9]*\) threads each.*/\1/p' "$TMP/server.log" | head -n 1
}

# --- threads: all the CPUs the process may use, then one -------------------
start_server
expect "threads = CPUs allowed" "$(threads_in_log)" "$(nproc)"
stop_server
BIN_SAVED=$BIN
BIN="$TMP/one-cpu"
printf '#!/bin/sh\nexec taskset -c 0 "%s" "$@"\n' "$BIN_SAVED" >"$BIN"
chmod +x "$BIN"
start_server
expect "pinned to one CPU: 1 thread" "$(threads_in_log)" 1
stop_server
start_server --model "$MODEL" --model "$FIX/small_f32.safetensors"
expect "two models on one CPU: still 1 thread each" "$(threads_in_log)" 1
stop_server
BIN=$BIN_SAVED

# --- memory: the workspace of 16777216 cells against the real limit --------
limit=$("$PY" - <<'PY'
import re
total = int(re.search(r"MemTotal:\s+(\d+) kB", open("/proc/meminfo").read()).group(1)) * 1024
try:
    rel = [l.split("::", 1)[1].strip() for l in open("/proc/self/cgroup") if l.startswith("0::")][0]
    parts = rel.strip("/").split("/") if rel != "/" else []
    for i in range(len(parts), -1, -1):
        try:
            v = open("/sys/fs/cgroup/" + "/".join(parts[:i]) + "/memory.max").read().strip()
        except OSError:
            continue
        if v != "max":
            total = min(total, int(v))
except (OSError, IndexError):
    pass
print(total)
PY
)
set +e
"$BIN" serve --model "$MODEL" --host 127.0.0.1 --port 0 --max-batch-cells 16777216 \
    >/dev/null 2>"$TMP/big.log" &
big=$!
# Refused (exit 1) on a machine smaller than the workspace; otherwise it
# must come up and hold the whole batch.
i=0
while kill -0 $big 2>/dev/null && ! grep -q '"ready' "$TMP/big.log" && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
if kill -0 $big 2>/dev/null; then kill -TERM $big; fi
wait $big
code=$?
set -e
need=$(sed -n 's/.*needs a workspace of \([0-9.]* GiB\).*/\1/p' "$TMP/big.log" | head -n 1)
echo "memory limit $limit bytes; workspace need: ${need:-fits}"
# 16777216 cells of byte_f32 take 34.5 GiB (37.0e9 bytes) of workspace.
if [ "$limit" -lt 37000000000 ]; then
    expect "a workspace above the memory limit: exit code" "$code" 1
    line=$(grep 'cannot load model' "$TMP/big.log" | head -n 1 || true)
    case "$line" in
    *"max_batch_cells 16777216 needs a workspace of "*" GiB for model byte_f32"*"the memory limit is "*" GiB ("*")"*"lower --max-batch-cells"*)
        ok "the refusal names both sizes, the source and the setting" ;;
    *) fail "refusal: $(cat "$TMP/big.log")" ;;
    esac
else
    grep -q '16777216 cells per batch' "$TMP/big.log" && ok "a machine this large holds the workspace" ||
        fail "not refused, yet not loaded: $(cat "$TMP/big.log")"
fi

finish
