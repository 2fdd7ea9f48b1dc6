#!/bin/sh
# test_deploy.sh - the deployment files of deploy/ and the Dockerfile: each
# config passes its own tool's check (haproxy -c, nginx -t, promtool,
# systemd-analyze), the alert rules pass their unit tests and name metrics
# the server exports, and the files agree with each other and with the
# daemon (ports, probe paths, setting names, drain timeout against grace
# periods, the runtime libraries the binary needs). No network, no daemon.
# Run from the repository root with HEPTAPOD_BIN set (make integration does).
set -eu

BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
PY=/usr/bin/python3
D=deploy
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
passed=0
failed=0

ok() {
    echo "ok: $*"
    passed=$((passed + 1))
}

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

# check NAME CMD...: CMD must exit 0; its output is shown only on failure.
check() {
    name=$1
    shift
    if "$@" >"$TMP/out" 2>&1; then
        ok "$name"
    else
        fail "$name: $(tail -n 20 "$TMP/out")"
    fi
}

# --- each file passes its own tool ---------------------------------------------

check "haproxy -c accepts $D/haproxy.cfg" haproxy -c -q -f "$D/haproxy.cfg"
check "promtool accepts $D/prometheus.yml and its rule file" \
    promtool check config "$D/prometheus.yml"
check "promtool accepts $D/alerts.yml" promtool check rules "$D/alerts.yml"
check "alert rule unit tests ($D/alerts_test.yml)" promtool test rules "$D/alerts_test.yml"

# nginx.conf is an http-context snippet: wrap it in a main config whose
# every writable path lies in $TMP.
cat >"$TMP/nginx-main.conf" <<EOF
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events {}
http {
    access_log off;
    client_body_temp_path $TMP/nginx-body;
    proxy_temp_path $TMP/nginx-proxy;
    fastcgi_temp_path $TMP/nginx-fastcgi;
    uwsgi_temp_path $TMP/nginx-uwsgi;
    scgi_temp_path $TMP/nginx-scgi;
    include $(pwd)/$D/nginx.conf;
}
EOF
check "nginx -t accepts $D/nginx.conf" nginx -t -q -p "$TMP" -c "$TMP/nginx-main.conf"

# verify wants ExecStart's program to exist: point it at the built binary.
abs_bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
sed "s|^ExecStart=/usr/local/bin/heptapod |ExecStart=$abs_bin |" "$D/heptapod.service" \
    >"$TMP/heptapod.service"
check "systemd-analyze verify accepts $D/heptapod.service" \
    systemd-analyze verify "$TMP/heptapod.service"
# Exposure 0.0 (locked down) .. 10.0 (unrestricted); the threshold is x10.
check "systemd exposure of $D/heptapod.service is at most 2.0" \
    systemd-analyze security --offline=true --threshold=20 "$TMP/heptapod.service"
check "$D/build-image.sh parses" sh -n "$D/build-image.sh"

# --- the alert rules name metrics the server exports ---------------------------

names=$(grep -oE 'heptapod_[a-z_]+' "$D/alerts.yml" | sed -E 's/_(bucket|sum|count)$//' | sort -u)
[ -n "$names" ] || fail "no heptapod_ metric in $D/alerts.yml"
for n in $names; do
    if grep -q "\"$n\"" server/*.c; then
        ok "alerts.yml: $n is registered in server/"
    else
        fail "alerts.yml uses $n, which no server/*.c registers"
    fi
done

# --- the container image --------------------------------------------------------

# Every shared library the binary needs, other than libc's own (and the
# sanitizer runtimes of a SANITIZER= build), comes from a package the
# runtime stage installs.
runtime_pkgs=$(awk '/^FROM/ { stage++ } stage == 2' Dockerfile)
libs=0
for so in $(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case $so in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) continue ;;
    libasan.so.* | libubsan.so.* | libtsan.so.* | liblsan.so.*) continue ;;
    esac
    libs=$((libs + 1))
    path=$(ldd "$BIN" | awk -v so="$so" '$1 == so { print $3 }')
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n 1 | cut -d: -f1)
    if [ -z "$pkg" ]; then
        fail "no Debian package owns $so ($path)"
    elif echo "$runtime_pkgs" | grep -qw -- "$pkg"; then
        ok "runtime stage installs $pkg for $so"
    else
        fail "runtime stage of the Dockerfile lacks $pkg (for $so)"
    fi
done
[ "$libs" -gt 0 ] || fail "readelf found no library of $BIN to check"

# .dockerignore admits every folder the Makefile compiles sources from.
for dir in $(grep -oE '[a-z]+/\*\.c' Makefile | sed 's|/.*||' | sort -u); do
    case $dir in tests | bench) continue ;; esac
    if grep -qx "!$dir/" .dockerignore; then
        ok ".dockerignore admits $dir/"
    else
        fail ".dockerignore keeps $dir/ out of the build context"
    fi
done
grep -qx '!models/default.safetensors' .dockerignore && ok ".dockerignore admits the default model" ||
    fail ".dockerignore keeps models/default.safetensors out"

# --- the files agree with each other and with the daemon -----------------------

# Setting names as HEPTAPOD_* variables, from the table of config/config.h.
sed -n 's/^ *X(\([a-z_]*\),.*/\1/p' config/config.h | tr a-z A-Z | sed 's/^/HEPTAPOD_/' \
    >"$TMP/settings"
[ -s "$TMP/settings" ] || fail "no settings found in config/config.h"

"$PY" - "$TMP/settings" >"$TMP/consistency" 2>&1 <<'EOF' || true
import re, sys
import yaml

settings = set(open(sys.argv[1]).read().split())
k8s = "deploy/k8s/"

def ok(msg): print("ok: " + msg)
def fail(msg): print("FAIL: " + msg)
def check(cond, msg, why=""):
    (ok if cond else fail)(msg + ("" if cond else ": " + why))

docs = {}
kust = yaml.safe_load(open(k8s + "kustomization.yaml"))
files = kust["resources"] + ["secret.yaml"]
for f in files:
    for d in yaml.safe_load_all(open(k8s + f)):
        docs.setdefault(d["kind"], []).append(d)
check(all(k in docs for k in ("Deployment", "Service", "PodDisruptionBudget", "Secret")),
      "k8s: Deployment, Service, PodDisruptionBudget and Secret present", str(list(docs)))

dep = docs["Deployment"][0]
pod = dep["spec"]["template"]
labels = pod["metadata"]["labels"]
def selects(sel): return all(labels.get(k) == v for k, v in sel.items())
check(selects(dep["spec"]["selector"]["matchLabels"]), "k8s: Deployment selector matches its pods")
for s in docs["Service"]:
    check(selects(s["spec"]["selector"]), "k8s: Service %s selects the pods" % s["metadata"]["name"])
for p in docs["PodDisruptionBudget"]:
    check(selects(p["spec"]["selector"]["matchLabels"]), "k8s: PodDisruptionBudget selects the pods")

c = pod["spec"]["containers"][0]
env = {e["name"]: e for e in c.get("env", [])}
unknown = [n for n in env if n not in settings]
check(not unknown, "k8s: every HEPTAPOD_* variable is a setting of config/config.h", str(unknown))
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(ports.get("http") == 8080, "k8s: container port http is 8080", str(ports))
for s in docs["Service"]:
    check(s["spec"]["ports"][0]["targetPort"] in ("http", 8080),
          "k8s: Service %s targets the http port" % s["metadata"]["name"])
check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness probe is /healthz")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness probe is /readyz")

drain = int(env["HEPTAPOD_DRAIN_TIMEOUT_S"]["value"])
cmd = c["lifecycle"]["preStop"]["exec"]["command"]
pre = int(cmd[1]) if cmd[0] == "sleep" else 0
grace = pod["spec"]["terminationGracePeriodSeconds"]
check(pre > 0, "k8s: preStop sleeps before SIGTERM", str(cmd))
check(grace > pre + drain, "k8s: grace period %d s exceeds preStop %d s + drain %d s" % (grace, pre, drain),
      "SIGKILL would cut the drain")

req, lim = c["resources"]["requests"], c["resources"]["limits"]
threads = int(env["HEPTAPOD_THREADS"]["value"])
check(str(req["cpu"]) == str(lim["cpu"]) == str(threads),
      "k8s: HEPTAPOD_THREADS equals the CPUs requested and limited", "%s %s %s" % (threads, req, lim))
check(int(str(req["cpu"])) >= 2, "k8s: at least 2 CPUs requested")

ref = env["HEPTAPOD_API_KEY"]["valueFrom"]["secretKeyRef"]
sec = docs["Secret"][0]
check(ref["name"] == sec["metadata"]["name"] and ref["key"] in sec["stringData"],
      "k8s: the API key reference names the Secret and its key")

docker = open("Dockerfile").read()
user = re.search(r"^USER (\d+)", docker, re.M)
check(user and int(user.group(1)) == pod["spec"]["securityContext"]["runAsUser"],
      "k8s runAsUser is the Dockerfile's USER")
entry = re.search(r"^ENTRYPOINT (\[.*?\])", docker, re.M | re.S)
argv = yaml.safe_load(entry.group(1).replace("\\\n", " ")) if entry else []
def flag(name): return argv[argv.index(name) + 1] if name in argv else None
expose = re.search(r"^EXPOSE (\d+)", docker, re.M)
check(expose and flag("--port") == expose.group(1) == "8080",
      "Dockerfile: EXPOSE, --port and the container port agree", str(argv))
check(flag("--host") == "0.0.0.0", "Dockerfile: the daemon listens on all addresses")
model = flag("--model")
check(model and re.search(r"^COPY --from=build \S+ %s$" % re.escape(model), docker, re.M),
      "Dockerfile: --model names the file the image copies in", str(model))
check(re.search(r"^STOPSIGNAL SIGTERM$", docker, re.M), "Dockerfile: STOPSIGNAL SIGTERM")

unit = open("deploy/heptapod.service").read()
uenv = dict(re.findall(r"^Environment=(\w+)=(\S*)", unit, re.M))
unknown = [n for n in uenv if n not in settings]
check(not unknown, "systemd: every HEPTAPOD_* variable is a setting", str(unknown))
stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
udrain = int(uenv.get("HEPTAPOD_DRAIN_TIMEOUT_S", 30))
check(stop > udrain, "systemd: TimeoutStopSec %d s exceeds the drain timeout %d s" % (stop, udrain))
check(re.search(r"^KillSignal=SIGTERM$", unit, re.M) and re.search(r"^Type=simple$", unit, re.M),
      "systemd: Type=simple, KillSignal=SIGTERM")

hap = open("deploy/haproxy.cfg").read()
check(re.search(r"^\s*option httpchk GET /readyz$", hap, re.M), "haproxy: health check is GET /readyz")
nginx = open("deploy/nginx.conf").read()
check(re.search(r"^\s*proxy_buffering off;$", nginx, re.M), "nginx: proxy_buffering off for SSE")
EOF
cat "$TMP/consistency"
passed=$((passed + $(grep -c '^ok: ' "$TMP/consistency" || true)))
failed=$((failed + $(grep -c '^FAIL: ' "$TMP/consistency" || true)))
grep -q '^ok: ' "$TMP/consistency" || fail "the consistency checks did not run"
if grep -q Traceback "$TMP/consistency"; then fail "the consistency checks crashed"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
