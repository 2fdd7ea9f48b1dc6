#!/bin/sh
# apt-deps.sh - installs the Debian packages named on the command line that
# are not installed yet (make deps, make test-deps, make tools-deps).
#
#   tools/apt-deps.sh [--no-services "UNIT ..."] PACKAGE ...
#
# Only missing packages are asked of apt, so a second run costs one dpkg-query
# and no `apt-get update`; `make test` can therefore call it every time.
#
# Installing a tool must not turn the machine into a server: Debian enables
# and starts nginx, HAProxy and Prometheus as system services on install
# (nginx on port 80). The tests run those programs as plain binaries, so for
# each UNIT of --no-services that this run installed, the service is kept
# from starting during the install (a temporary policy-rc.d, unless one
# exists already) and disabled afterwards. Units that were on the machine
# before are left exactly as they were.
set -eu

services=
if [ "${1:-}" = --no-services ]; then
    services=$2
    shift 2
fi
[ $# -gt 0 ] || { echo "usage: tools/apt-deps.sh [--no-services \"UNIT ...\"] PACKAGE ..." >&2; exit 2; }

missing=
for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $p"
done
[ -n "$missing" ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-deps: these packages are missing and there is no apt-get to install them:$missing" >&2
    echo "apt-deps: heptapod is built and tested on Debian 12; install their equivalents by hand" >&2
    exit 1
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "apt-deps: installing$missing needs root; run this as root or install sudo" >&2
        exit 1
    }
    SUDO=sudo
fi

# Units that already exist belong to the machine's owner, not to this run.
unit_file() {
    for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
        [ -e "$d/$1.service" ] && return 0
    done
    return 1
}
preexisting=
for u in $services; do
    if unit_file "$u" || [ -e "/etc/init.d/$u" ]; then preexisting="$preexisting $u "; fi
done

policy=/usr/sbin/policy-rc.d
own_policy=
cleanup() {
    [ -z "$own_policy" ] || $SUDO rm -f "$policy"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "$services" ] && [ ! -e "$policy" ]; then
    # 101: "action forbidden by policy"; invoke-rc.d and deb-systemd-invoke
    # then skip starting any service until this file is gone.
    printf '#!/bin/sh\n# written by heptapod tools/apt-deps.sh for the duration of an install\nexit 101\n' |
        $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
fi

echo "apt-deps: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing

for u in $services; do
    case "$preexisting" in *" $u "*) continue ;; esac
    unit_file "$u" || [ -e "/etc/init.d/$u" ] || continue
    if command -v systemctl >/dev/null 2>&1; then
        # Offline (no running systemd, e.g. a chroot) disable still removes
        # the links; stop only where systemd runs.
        $SUDO systemctl disable --quiet "$u.service" 2>/dev/null || true
        [ ! -d /run/systemd/system ] || $SUDO systemctl stop "$u.service" 2>/dev/null || true
    else
        $SUDO deb-systemd-helper disable "$u.service" 2>/dev/null || true
    fi
    # sysvinit links, for machines booted without systemd.
    [ ! -e "/etc/init.d/$u" ] || $SUDO update-rc.d "$u" disable >/dev/null 2>&1 || true
    echo "apt-deps: $u installed as a program only: its service is disabled and not running"
done
