#!/bin/sh
# run.sh - the README's two commands on a fresh Debian 12 root (.ci/run).
#
# A new user starts from a minimal Debian 12 with git, make and CA
# certificates, clones the repository and types the two commands at the top of
# README.md. This script does exactly that in a chroot:
#
#   1. a minbase bookworm root from debootstrap, plus git make ca-certificates
#      and the security and updates suites of a normal install; built once and
#      cached as a tarball keyed by a hash of those inputs, then unpacked
#      afresh for every run;
#   2. `git clone` of this checkout's HEAD into /root/heptapod inside it;
#   3. `make` alone must fail and say to run `make deps`;
#   4. `make deps run` in the background until /readyz answers 200 on
#      127.0.0.1:8080, then every curl example of README.md against it (with
#      the root's own curl and jq), then SIGTERM to the whole command;
#   5. `make test`; afterwards no nginx, HAProxy or Prometheus unit may be
#      enabled and no process may be left running in the root.
#
# /proc, /sys and /dev are mounted in the root and unmounted on every exit
# path; the root shares the host's network, so port 8080 must be free. Each
# step's wall time is printed at the end. Needs root.
#
# Environment: FRESH_CACHE (default /var/cache/heptapod-fresh) holds the base
# tarball and apt's downloaded packages (reused, so a second run downloads
# nothing; FRESH_APT_CACHE=0 starts every run with an empty one);
# FRESH_MIRROR (default http://deb.debian.org/debian); FRESH_KEEP=1 keeps the
# root for inspection. The logs of the last run stay in $FRESH_CACHE/last-logs.
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${FRESH_CACHE:-/var/cache/heptapod-fresh}
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_PKGS="git make ca-certificates"
PORT=8080
READY_TIMEOUT_S=1800

[ "$(id -u)" = 0 ] || { echo "fresh: needs root (debootstrap, chroot, mounts)"; exit 1; }
command -v debootstrap >/dev/null 2>&1 || sh "$REPO/tools/apt-deps.sh" debootstrap
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/" 2>/dev/null; then
    echo "fresh: something already listens on 127.0.0.1:$PORT; the README's daemon needs it"
    exit 1
fi

COMMIT=$(git -C "$REPO" rev-parse HEAD)
mkdir -p "$CACHE/apt-archives/partial"
WORK=$(mktemp -d /var/tmp/heptapod-fresh.XXXXXX)
ROOT=$WORK/root
LOG=$WORK/log
mkdir -p "$ROOT" "$LOG"
RUN_PGID=
times=

# --- cleanup: every exit path ---------------------------------------------------

# Processes whose root directory is inside $ROOT (left by a step, or by us).
root_pids() {
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        case "$r" in "$ROOT" | "$ROOT"/*) echo "${p#/proc/}" ;; esac
    done
}

unmount_all() {
    for m in dev/pts dev sys proc var/cache/apt/archives; do
        mountpoint -q "$ROOT/$m" 2>/dev/null && umount -R "$ROOT/$m" 2>/dev/null
        mountpoint -q "$ROOT/$m" 2>/dev/null && umount -R -l "$ROOT/$m"
    done
    return 0
}

cleanup() {
    [ -z "$times" ] || printf 'wall times:\n%s' "$times"
    [ -z "$RUN_PGID" ] || kill -KILL "-$RUN_PGID" 2>/dev/null || true
    for p in $(root_pids); do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.2
    unmount_all
    rm -rf "$CACHE/last-logs" && cp -r "$LOG" "$CACHE/last-logs" 2>/dev/null &&
        echo "fresh: logs of this run in $CACHE/last-logs"
    if [ "${FRESH_KEEP:-0}" = 1 ]; then
        echo "fresh: root kept in $ROOT"
    else
        # Never delete through a mount that is still there.
        if grep -q " $ROOT/" /proc/mounts; then
            echo "fresh: mounts left under $ROOT; not deleting it"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() {
    echo "FAIL: $*"
    exit 1
}

now() { date +%s.%N; }

# timed NAME CMD...: runs CMD, records its wall time under NAME.
timed() {
    name=$1
    shift
    t0=$(now)
    rc=0
    "$@" || rc=$?
    times="$times$(awk -v n="$name" -v a="$t0" -v b="$(now)" 'BEGIN { printf "  %-44s %7.1f s", n, b - a }')
"
    return $rc
}

# in_root CMD: runs the shell command CMD as root inside the chroot, in a
# clean environment like a login shell's, from /root/heptapod.
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
        ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} \
        sh -c "cd /root/heptapod 2>/dev/null || cd /root; $1"
}

mount_all() {
    mount -t proc proc "$ROOT/proc"
    mount --rbind /sys "$ROOT/sys"
    mount --make-rslave "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount --make-rslave "$ROOT/dev"
    if [ "${FRESH_APT_CACHE:-1}" = 1 ]; then
        mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
    fi
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
}

# --- 1. the base root ---------------------------------------------------------------

KEY=$(printf '%s\n' "$SUITE" "$MIRROR" minbase "$BASE_PKGS" security+updates |
    sha256sum | cut -c1-16)
BASE=$CACHE/base-$KEY.tar

build_base() {
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$LOG/debootstrap.log" 2>&1 ||
        { tail -n 20 "$LOG/debootstrap.log"; die "debootstrap"; }
    cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    mount_all
    in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $BASE_PKGS" \
        >"$LOG/base.log" 2>&1 || { tail -n 20 "$LOG/base.log"; die "installing $BASE_PKGS"; }
    unmount_all
    rm -f "$ROOT/etc/resolv.conf"
    tar -C "$ROOT" -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
}

if [ -s "$BASE" ]; then
    timed "unpack cached base root" tar -C "$ROOT" -xf "$BASE"
else
    timed "debootstrap minbase + $BASE_PKGS" build_base
fi

# --- 2. the clone -------------------------------------------------------------------

clone() {
    git clone -q --no-checkout "$REPO" "$ROOT/root/heptapod"
    git -C "$ROOT/root/heptapod" -c advice.detachedHead=false checkout -q "$COMMIT"
}
timed "git clone $(echo "$COMMIT" | cut -c1-12)" clone
mount_all

# --- 3. make before make deps ----------------------------------------------------

if in_root make >"$LOG/make-nodeps.log" 2>&1; then
    die "make succeeded without dependencies?"
fi
grep -q 'make deps' "$LOG/make-nodeps.log" ||
    { cat "$LOG/make-nodeps.log"; die "make without dependencies does not say to run make deps"; }
echo "ok: make without dependencies: $(grep 'make deps' "$LOG/make-nodeps.log" | head -n 1)"

# --- 4. make deps run ----------------------------------------------------------------

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/readyz")" = 200 ]
}

serve() {
    setsid chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
        ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} \
        sh -c 'cd /root/heptapod && make deps run' >"$LOG/deps-run.log" 2>&1 &
    RUN_PGID=$!
    end=$(($(date +%s) + READY_TIMEOUT_S))
    until ready; do
        if ! kill -0 "$RUN_PGID" 2>/dev/null; then
            tail -n 30 "$LOG/deps-run.log"
            die "make deps run exited before serving"
        fi
        [ "$(date +%s)" -lt "$end" ] || { tail -n 30 "$LOG/deps-run.log"; die "not ready after ${READY_TIMEOUT_S}s"; }
        sleep 0.5
    done
}
timed "make deps run (until /readyz is 200)" serve
echo "ok: make deps run serves on 127.0.0.1:$PORT"

readme_examples() {
    /usr/bin/python3 "$REPO/tests/docs/run_examples.py" --url "http://127.0.0.1:$PORT" \
        --wrap "chroot $ROOT /usr/bin/env --chdir=/root/heptapod" "$REPO/README.md"
}
timed "README curl examples against it" readme_examples ||
    die "the README's examples fail against make deps run"

kill -TERM "-$RUN_PGID"
i=0
while kill -0 "$RUN_PGID" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -0 "$RUN_PGID" 2>/dev/null && die "make deps run did not stop on SIGTERM"
RUN_PGID=

# --- 5. make test -----------------------------------------------------------------------

run_tests() {
    in_root "make test" >"$LOG/test.log" 2>&1 || {
        tail -n 60 "$LOG/test.log"
        die "make test fails on a fresh root (log above)"
    }
}
timed "make test (test-deps + all tests)" run_tests
grep -E '^(== |all passed|FAIL)' "$LOG/test.log" | sed 's/^/  /' | head -n 80

for u in nginx haproxy prometheus; do
    links=$(find "$ROOT/etc/systemd/system" -path '*.wants/*' -name "$u.service" 2>/dev/null)
    links="$links$(find "$ROOT"/etc/rc[2-5].d -name "S[0-9]*$u" 2>/dev/null)"
    [ -z "$links" ] || die "$u is enabled as a service after make test: $links"
    [ -e "$ROOT/usr/sbin/$u" ] || [ -e "$ROOT/usr/bin/$u" ] || die "$u is not installed by make test"
done
grep '^apt-deps: ' "$LOG/test.log" | sed 's/^/  /'
echo "ok: nginx, haproxy and prometheus are installed as programs, none enabled as a service"
[ ! -e "$ROOT/usr/sbin/policy-rc.d" ] || die "make test left /usr/sbin/policy-rc.d behind"
left=$(root_pids)
[ -z "$left" ] || die "processes left running in the root: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
echo "ok: no process left running in the root"

echo "all passed: the README's commands on a fresh Debian 12 root, commit $COMMIT"
