# proxy_lib.sh - sourced after server_lib.sh: runs the shipped
# deploy/nginx.conf and deploy/haproxy.cfg in front of the test daemon, as
# unprivileged foreground processes on free loopback ports (no service, no
# port 80), each changed only where it names addresses: the replicas become
# the daemon at $PORT (HAProxy's health checks go to its admin listener,
# which start_server must open: --admin-port 0), the listener a free port.
# Both are stopped on exit.

PROXIES=
trap 'for p in $PROXIES; do kill "$p" 2>/dev/null || true; done; cleanup' EXIT

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_nginx: sets NGINX_URL once nginx answers /healthz through to the daemon.
start_nginx() {
    port=$(free_port)
    d=$TMP/nginx
    mkdir -p "$d"
    sed -e "s|^\( *\)server 10\.0\.0\.11:8080 .*|\1server 127.0.0.1:$PORT;|" \
        -e '/server 10\.0\.0\.1[23]:8080/d' \
        -e "s|listen 80;|listen 127.0.0.1:$port;|" -e '/listen \[::\]:80;/d' deploy/nginx.conf \
        >"$d/site.conf"
    cat >"$d/main.conf" <<EOF
pid $d/pid;
error_log $d/error.log;
daemon off;
events {}
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    include $d/site.conf;
}
EOF
    nginx -p "$d" -c "$d/main.conf" 2>>"$d/error.log" &
    PROXIES="$PROXIES $!"
    NGINX_URL=http://127.0.0.1:$port
    wait_for "curl -sf -o /dev/null $NGINX_URL/healthz" 10 ||
        fail "nginx did not start: $(tail -n 5 "$d/error.log")"
}

# start_haproxy: sets HAPROXY_URL once HAProxy passes /readyz through.
start_haproxy() {
    port=$(free_port)
    admin=$(sed -n 's/.*admin listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" |
        head -n 1)
    [ -n "$admin" ] || fail "start_haproxy: the daemon has no admin listener (--admin-port 0)"
    sed -e "s|^\( *\)bind :8080|\1bind 127.0.0.1:$port|" \
        -e "s|^\( *\)server heptapod-1 10\.0\.0\.11:8080 \(.*\)port 8081|\1server heptapod-1 127.0.0.1:$PORT \2port $admin|" \
        -e '/server heptapod-[23] /d' deploy/haproxy.cfg >"$TMP/haproxy.cfg"
    grep -q "127.0.0.1:$PORT .*port $admin" "$TMP/haproxy.cfg" ||
        fail "start_haproxy: deploy/haproxy.cfg no longer names heptapod-1 as expected"
    haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
    PROXIES="$PROXIES $!"
    HAPROXY_URL=http://127.0.0.1:$port
    wait_for "curl -sf -o /dev/null $HAPROXY_URL/readyz" 10 ||
        fail "haproxy did not pass requests: $(tail -n 5 "$TMP/haproxy.log")"
}
