#!/bin/sh
# build-image.sh - builds the heptapod container image with podman (no Docker
# engine needed) and smoke-tests the binary it holds: start it from the
# mounted image on 127.0.0.1 as the image's own user, check /healthz,
# /readyz, /v1/models, a small POST /generate and /metrics, start a streamed
# generation, SIGTERM, and check the stream still completes, /readyz turns
# 503 while draining and the daemon exits 0.
#
# Needs root, the Debian archive (base image, apt inside the build) and a few
# minutes. Run from anywhere: sh deploy/build-image.sh
#
# Environment:
#   IMAGE=heptapod:latest   tag to build
#   BASE=debian:bookworm-slim base image; if it is not in podman's store and
#                           cannot be pulled, it is made with debootstrap
#   ISOLATION=chroot        podman build isolation (chroot works inside an
#                           unprivileged container; "oci" on a normal host)
#   PORT=18080              loopback port of the smoke test
#   SKIP_SMOKE=1            build only
set -eu

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-heptapod:latest}
BASE=${BASE:-debian:bookworm-slim}
ISOLATION=${ISOLATION:-chroot}
PORT=${PORT:-18080}

say() { echo "== $*"; }
die() {
    echo "build-image.sh: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (podman image mount and chroot need it)"
[ -s models/default.safetensors ] || die "models/default.safetensors is missing"
need=""
command -v podman >/dev/null || need="$need podman"
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v curl >/dev/null || need="$need curl"
if [ -n "$need" ]; then
    say "installing$need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
fi

# --- base image -------------------------------------------------------------------
# The Dockerfile says FROM debian:bookworm-slim, which podman resolves to
# docker.io/library/debian:bookworm-slim. Without a reachable registry, a
# debootstrap'd minimal bookworm imported under that name stands in for it.
base_ref=docker.io/library/$BASE
if podman image exists "$base_ref"; then
    say "base image $base_ref present"
elif podman pull -q "$base_ref" >/dev/null 2>&1; then
    say "pulled $base_ref"
else
    say "no registry: making $base_ref with debootstrap"
    rootfs=$(mktemp -d /var/tmp/heptapod-rootfs.XXXXXX)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import -q - "$base_ref" >/dev/null
    rm -rf "$rootfs"
fi

# --- build --------------------------------------------------------------------------
say "podman build --isolation=$ISOLATION -t $IMAGE ."
podman build --isolation="$ISOLATION" -t "$IMAGE" .
podman image ls "$IMAGE"
[ "${SKIP_SMOKE:-0}" = 1 ] && exit 0

# --- smoke test ---------------------------------------------------------------------
TMP=$(mktemp -d)
MNT=""
PID=""
cleanup() {
    [ -z "$PID" ] || kill -KILL "$PID" 2>/dev/null || true
    if [ -n "$MNT" ]; then
        umount "$MNT/proc" 2>/dev/null || true
        podman image unmount "$IMAGE" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

MNT=$(podman image mount "$IMAGE")
say "image mounted at $MNT"
# The daemon reads /proc for its process metrics.
mount -t proc proc "$MNT/proc"

user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
entry=$(podman image inspect --format '{{range .Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")
stopsig=$(podman image inspect --format '{{.Config.StopSignal}}' "$IMAGE")
say "user $user, entrypoint: $entry, stop signal $stopsig"
[ "$stopsig" = SIGTERM ] || die "stop signal is '$stopsig', want SIGTERM"

# Every shared library resolves inside the image.
if chroot "$MNT" ldd /usr/local/bin/heptapod | grep 'not found'; then
    die "the runtime stage lacks a library"
fi

# The image's own entrypoint, with the listen address moved to loopback.
set --
for w in $entry; do
    case $w in
    0.0.0.0) w=127.0.0.1 ;;
    8080) w=$PORT ;;
    esac
    set -- "$@" "$w"
done
say "starting: chroot --userspec=$user $MNT $*"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HEPTAPOD_THREADS=2 HEPTAPOD_DRAIN_TIMEOUT_S=60 \
    chroot --userspec="$user" "$MNT" "$@" 2>"$TMP/log" &
PID=$!

URL=http://127.0.0.1:$PORT
for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/log"; die "the daemon exited while starting"; }
    sleep 0.1
done
curl -fsS "$URL/readyz" >/dev/null || { cat "$TMP/log"; die "not ready after 30 s"; }
say "GET /healthz: $(curl -fsS "$URL/healthz")"
say "GET /v1/models: $(curl -fsS "$URL/v1/models")"
say "POST /generate (4x4, 2 iterations):"
curl -fsS -H 'Content-Type: application/json' \
    -d '{"height": 4, "width": 4, "iterations": 2, "seed": 1}' "$URL/generate" | tee "$TMP/gen"
echo
grep -q '"grid"' "$TMP/gen" || die "no grid in the /generate answer"
curl -fsS "$URL/metrics" >"$TMP/metrics"
grep -E '^heptapod_(ready|draining) ' "$TMP/metrics"
grep -qx 'heptapod_ready 1' "$TMP/metrics" || die "/metrics does not say ready"
grep -qE '^heptapod_request_duration_seconds_count\{[^}]*\} 1$' "$TMP/metrics" ||
    die "/metrics did not count the request"
rss=$(sed -n 's/^process_resident_memory_bytes //p' "$TMP/metrics")
say "resident memory after one request: $rss bytes"

# Drain: a stream in flight when SIGTERM arrives still completes. The
# largest grid the model allows, so that the stream outlasts the signal.
curl -fsS "$URL/v1/models" >"$TMP/models"
limit() { grep -o "\"$1\":[0-9]*" "$TMP/models" | head -n 1 | cut -d: -f2; }
w=$(limit max_width)
h=$(limit max_height)
[ $((h * w)) -le "$(limit max_cells)" ] || h=$(($(limit max_cells) / w))
big="{\"height\": $h, \"width\": $w, \"iterations\": $(limit max_iterations), \"seed\": 2, \"stream\": true}"
say "POST /generate $big, then SIGTERM"
curl -sS -N -H 'Content-Type: application/json' -d "$big" "$URL/generate" >"$TMP/stream" &
CURL=$!
sleep 0.3
t0=$(date +%s.%N)
kill -TERM "$PID"
sleep 0.2
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz" || true)
late=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"height": 2, "width": 2}' "$URL/generate" || true)
say "while draining: GET /readyz $code, new POST /generate $late"
wait "$CURL" || die "the stream failed during the drain"
rc=0
wait "$PID" || rc=$?
PID=""
t1=$(date +%s.%N)
events=$(grep -c '^data: ' "$TMP/stream" || true)
say "stream: $events events, last: $(grep '^data: ' "$TMP/stream" | tail -n 1 | cut -c1-160)"
say "daemon exit status $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after SIGTERM"
cat "$TMP/log"
[ "$rc" = 0 ] || die "exit status $rc after SIGTERM, want 0"
[ "$code" = 503 ] || die "/readyz answered $code while draining, want 503"
[ "$late" = 503 ] || die "a new request answered $late while draining, want 503"
grep -q '^event: done' "$TMP/stream" || die "the stream in flight did not complete"
say "smoke test passed"
