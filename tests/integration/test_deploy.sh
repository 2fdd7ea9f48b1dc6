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

# Settings as "HEPTAPOD_NAME default" lines, from the table of config/config.h.
sed -n 's/^ *X(\([a-z_]*\), *CFG_[A-Z]*, *"\([^"]*\)".*/\1 \2/p' config/config.h |
    awk '{ printf "HEPTAPOD_%s %s\n", toupper($1), $2 }' >"$TMP/settings"
[ -s "$TMP/settings" ] || fail "no settings found in config/config.h"

"$PY" - "$TMP/settings" >"$TMP/consistency" 2>&1 <<'EOF' || true
import glob, re, sys
import yaml

defaults = dict((l.split() + [""])[:2] for l in open(sys.argv[1]) if l.strip())
settings = set(defaults)
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
admin = env.get("HEPTAPOD_ADMIN_PORT", {}).get("value")
check(admin and ports.get("admin") == int(admin) != 8080,
      "k8s: container port admin is HEPTAPOD_ADMIN_PORT", "%s %s" % (admin, ports))
services = {s["metadata"]["name"]: s for s in docs["Service"]}
def targets(name): return [p["targetPort"] for p in services[name]["spec"]["ports"]]
check(targets("heptapod") == ["http"], "k8s: the client Service heptapod reaches only the http port",
      str(targets("heptapod")))
check(targets("heptapod-pods") == ["admin"] and
      services["heptapod-pods"]["spec"]["ports"][0]["port"] == ports.get("admin"),
      "k8s: the headless Service heptapod-pods (Prometheus) is the admin port",
      str(services["heptapod-pods"]["spec"]["ports"]))
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = c[probe]["httpGet"]
    check(get["path"] == path and get["port"] in ("admin", ports.get("admin")),
          "k8s: %s is %s on the admin port" % (probe, path), str(get))
ann = pod["metadata"].get("annotations", {})
check(ann.get("prometheus.io/port") == str(ports.get("admin")),
      "k8s: the prometheus.io/port annotation is the admin port", str(ann))

drain = int(env["HEPTAPOD_DRAIN_TIMEOUT_S"]["value"])
cmd = c["lifecycle"]["preStop"]["exec"]["command"]
pre = int(cmd[1]) if cmd[0] == "sleep" else 0
grace = pod["spec"]["terminationGracePeriodSeconds"]
check(pre > 0, "k8s: preStop sleeps before SIGTERM", str(cmd))
check(grace > pre + drain, "k8s: grace period %d s exceeds preStop %d s + drain %d s" % (grace, pre, drain),
      "SIGKILL would cut the drain")

req, lim = c["resources"]["requests"], c["resources"]["limits"]
check("HEPTAPOD_THREADS" not in env,
      "k8s: HEPTAPOD_THREADS is not hard-coded (the daemon follows the CPU limit)")
check(str(req["cpu"]) == str(lim["cpu"]), "k8s: CPUs requested equal CPUs limited",
      "%s %s" % (req, lim))
check(int(str(req["cpu"])) >= 2, "k8s: at least 2 CPUs requested")
k8s_per_client = int(env.get("HEPTAPOD_MAX_CONNECTIONS_PER_CLIENT", {}).get("value", 0))

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
check(flag("--admin-port") == str(ports.get("admin")) and
      re.search(r"^EXPOSE 8080 %s$" % flag("--admin-port"), docker, re.M),
      "Dockerfile: --admin-port, EXPOSE and the k8s admin port agree", str(argv))
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

uport, uadmin = uenv.get("HEPTAPOD_PORT"), uenv.get("HEPTAPOD_ADMIN_PORT")
check(uport and uadmin and uport != uadmin, "systemd: HEPTAPOD_PORT and HEPTAPOD_ADMIN_PORT set apart",
      "%s %s" % (uport, uadmin))
per_client = int(uenv.get("HEPTAPOD_MAX_CONNECTIONS_PER_CLIENT",
                          defaults.get("HEPTAPOD_MAX_CONNECTIONS_PER_CLIENT", 0)))
check(per_client > 0, "systemd: a per-client connection limit is set", str(per_client))
check(uenv.get("HEPTAPOD_CLIENT_HEADER") == "X-Forwarded-For",
      "systemd: fair sharing names the client by X-Forwarded-For (set by the balancers)")
check(0 < k8s_per_client, "k8s: a per-client connection limit is set", str(k8s_per_client))

def seconds(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", v)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
keepalive_s = int(defaults["HEPTAPOD_SSE_KEEPALIVE_MS"]) / 1000
deadline_s = int(defaults["HEPTAPOD_DEFAULT_DEADLINE_MS"]) / 1000
header_s = int(defaults["HEPTAPOD_HEADER_TIMEOUT_MS"]) / 1000
max_body = int(defaults["HEPTAPOD_MAX_BODY_BYTES"])

# The replicas, as each file names them: host:main port / host:admin port.
prom = yaml.safe_load(open("deploy/prometheus.yml"))
jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
scraped = sorted(t for sc in jobs["heptapod"]["static_configs"] for t in sc["targets"])
hosts = sorted(t.rsplit(":", 1)[0] for t in scraped)
check(all(t.endswith(":" + str(uadmin)) for t in scraped),
      "prometheus: static targets are the admin port %s" % uadmin, str(scraped))
dns = jobs["heptapod-kubernetes"]["dns_sd_configs"][0]
check(dns["port"] == ports.get("admin"), "prometheus: pods are scraped on the k8s admin port",
      "%s %s" % (dns["port"], ports))

hap = open("deploy/haproxy.cfg").read()
def hap_has(pattern, msg, why="missing"): check(re.search(pattern, hap, re.M), "haproxy: " + msg, why)
hap_has(r"^\s*option httpchk GET /readyz$", "health check is GET /readyz")
servers = re.findall(r"^\s*server \S+ (\S+):(\d+) (.*)$", hap, re.M)
check(sorted(h for h, _, _ in servers) == hosts and all(p == uport for _, p, _ in servers),
      "haproxy: servers are the replicas' main port, as Prometheus lists them", str(servers))
check(all(re.search(r"\bcheck port %s\b" % uadmin, rest) for _, _, rest in servers),
      "haproxy: health checks go to the admin port %s" % uadmin, str(servers))
hap_has(r"^\s*option http-buffer-request$", "request bodies are buffered whole")
hap_has(r"^\s*option http-no-delay$", "SSE events are sent without delay (http-no-delay)")
hap_has(r"^\s*option http-server-close$", "one request per replica connection")
m = re.search(r"^\s*timeout http-request (\S+)$", hap, re.M)
check(m and seconds(m.group(1)) <= header_s,
      "haproxy: timeout http-request bounds headers and body, within the daemon's header timeout",
      str(m and m.group(1)))
for t in ("client", "server"):
    m = re.search(r"^\s*timeout %s (\S+)$" % t, hap, re.M)
    check(m and seconds(m.group(1)) > max(keepalive_s, deadline_s),
          "haproxy: timeout %s exceeds the SSE keep-alive and the default deadline" % t,
          str(m and m.group(1)))
retry = re.search(r"^\s*retry-on (.*)$", hap, re.M)
words = retry.group(1).split() if retry else []
check("conn-failure" in words and not set(words) & {"empty-response", "junk-response",
      "response-timeout", "all-retryable-errors"} and set(words) <= {"conn-failure", "503"},
      "haproxy: retries only a failed connection or a 503 (no work done)", str(words))
check(not re.search(r"^\s*option accept-invalid-http-", hap, re.M), "haproxy: malformed requests are refused")
mc = [int(x) for x in re.findall(r"\bmaxconn (\d+)", re.search(r"^\s*default-server (.*)$", hap, re.M).group(1))]
check(mc and mc[0] < per_client,
      "haproxy: per-replica maxconn is below the daemon's per-client limit", "%s %s" % (mc, per_client))
hap_has(r"^\s*http-request set-header X-Forwarded-For %\[src\]$",
        "X-Forwarded-For is replaced by the client's address")
check(not re.search(r"^\s*option forwardfor", hap, re.M), "haproxy: no appended X-Forwarded-For")
m = re.search(r"^\s*tune.bufsize (\d+)$", hap, re.M)
d = re.search(r"req\.body_size gt (\d+)", hap)
check(m and d and int(d.group(1)) <= int(m.group(1)) - 4096,
      "haproxy: bodies above what one buffer holds are refused", str(d and d.group(0)))

nginx = open("deploy/nginx.conf").read()
def ngx(name):
    m = re.findall(r"^\s*%s\s+([^;]*);" % name, nginx, re.M)
    return m[-1] if m else None
def size(v): return int(v[:-1]) * {"k": 1024, "m": 1 << 20}[v[-1].lower()] if v[-1].isalpha() else int(v)
ups = re.findall(r"^\s*server (\S+):(\d+) (.*);$", nginx, re.M)
check(sorted(h for h, _, _ in ups) == hosts and all(p == uport for _, p, _ in ups),
      "nginx: upstream servers are the replicas' main port", str(ups))
mcs = [int(m) for _, _, rest in ups for m in re.findall(r"max_conns=(\d+)", rest)]
check(len(mcs) == len(ups) and max(mcs) < per_client and ngx("zone"),
      "nginx: max_conns per replica (shared zone) below the daemon's per-client limit", str(mcs))
check(ngx("keepalive") is None, "nginx: no idle upstream connections on top of max_conns")
check(ngx("proxy_request_buffering") in (None, "on"), "nginx: request bodies are buffered whole")
check(ngx("client_header_timeout") and seconds(ngx("client_header_timeout")) <= header_s,
      "nginx: client_header_timeout within the daemon's header timeout")
for t in ("client_body_timeout", "send_timeout"):
    check(ngx(t) and seconds(ngx(t)) <= 60, "nginx: %s set (%s)" % (t, ngx(t)))
check(ngx("client_max_body_size") and size(ngx("client_max_body_size")) <= max_body,
      "nginx: client_max_body_size within HEPTAPOD_MAX_BODY_BYTES (%d)" % max_body)
check(ngx("large_client_header_buffers"), "nginx: header size bounded")
prt = ngx("proxy_read_timeout")
check(prt and seconds(prt) > max(keepalive_s, deadline_s),
      "nginx: proxy_read_timeout exceeds the SSE keep-alive and the default deadline", str(prt))
nu = (ngx("proxy_next_upstream") or "").split()
check(nu == ["error"], "nginx: retries a POST only when it could not be sent", str(nu))
sse_unbuffered = ngx("proxy_buffering") == "off" or (
    "X-Accel-Buffering" not in (ngx("proxy_ignore_headers") or "") and
    any('"X-Accel-Buffering", "no"' in open(f).read() for f in glob.glob("server/*.c")))
check(sse_unbuffered, "nginx: SSE responses unbuffered (proxy_buffering off, or the daemon's "
      "X-Accel-Buffering: no honoured)")
check(ngx("gzip") == "off" and not re.search(r"gzip_types[^;]*event-stream", nginx),
      "nginx: no compression of event streams")
check(ngx("proxy_set_header X-Forwarded-For") == "$remote_addr",
      "nginx: X-Forwarded-For is replaced by the client's address")
check(ngx("limit_conn") and ngx("limit_conn_zone"), "nginx: connections per client address bounded")

# The proxies' own error answers have the daemon's JSON error shape.
import json
error_schema = json.load(open("proto/openapi.json"))["components"]["schemas"]["Error"]
codes = set(error_schema["properties"]["error"]["properties"]["code"]["enum"])
def error_body(text, status, where):
    try:
        e = json.loads(text)["error"]
        good = set(e) <= {"code", "message", "field"} and e["code"] in codes and e["message"]
    except (ValueError, KeyError, TypeError):
        good = False
    check(good, "%s: its own %s answer is a JSON error of proto/openapi.json" % (where, status), text)
hap_errors = re.findall(r"^\s*http-error status (\d+) content-type application/json string '([^']*)'",
                        hap, re.M)
check(len(hap_errors) >= 8, "haproxy: http-error bodies for its own answers", len(hap_errors))
for status, text in hap_errors:
    error_body(text, status, "haproxy")
pages = dict(re.findall(r"^\s*error_page (\d+) (\S+);", nginx, re.M))
check(len(pages) >= 8, "nginx: error_page for its own answers", len(pages))
for status, uri in pages.items():
    loc = re.search(r"location = %s \{\n(.*?)\n\s*\}\n" % re.escape(uri), nginx, re.S)
    ret = loc and re.search(r"return (\d+) '([^']*)';", loc.group(1))
    check(ret and ret.group(1) == status and "internal;" in loc.group(1),
          "nginx: error page %s is an internal location answering %s" % (uri, status))
    if ret:
        error_body(ret.group(2).replace("\\n", "\n"), status, "nginx")
EOF
cat "$TMP/consistency"
passed=$((passed + $(grep -c '^ok: ' "$TMP/consistency" || true)))
failed=$((failed + $(grep -c '^FAIL: ' "$TMP/consistency" || true)))
grep -q '^ok: ' "$TMP/consistency" || fail "the consistency checks did not run"
if grep -q Traceback "$TMP/consistency"; then fail "the consistency checks crashed"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
