#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine (as root, or with sudo):
#   bash scripts/dev.sh demo   set everything up, then start the browser room demo (prints the URL)
#   bash scripts/dev.sh bench  set everything up, then run the send-ring benchmark
#   bash scripts/dev.sh test   set everything up, then run the tests (what CI runs)
#   bash scripts/dev.sh setup  only set up
# Set-up is idempotent: the second time it checks a stamp and takes a second or two.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    # Only the packages that are missing, and apt-get update only when one is.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]} with apt-get"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

setup() {
    command -v apt-get >/dev/null || { echo "setup: needs a Debian/Ubuntu machine (apt-get)" >&2; exit 1; }
    # liburing-dev: the send ring's C core; util-linux: setpriv for the privilege-drop tests.
    apt_install liburing-dev gcc util-linux
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup: relay needs Python >= 3.11; python3 is $(python3 -V 2>&1)" >&2
        exit 1
    fi
    # Headers for the C extension and venv support, when python3 is the system one.
    if ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        apt_install python3-dev
    fi
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$VENV"; python3 -m venv "$VENV"; }
    fi
    # Reinstall only when what the install depends on changed.
    local stamp
    stamp=$(cat pyproject.toml setup.py relay/uring/ring_core.[ch] relay/uring/rewriter_core.[ch] relay/uring/fanout_core.[ch] relay/uring/transport_cc_core.[ch] relay/uring/rtp_extensions.h relay/uring/receive_core.[ch] relay/uring/_build.py \
        relay/loadtest/traffic_core.[ch] relay/loadtest/reflector_core.[ch] relay/loadtest/_build.py | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$VENV/.setup-stamp" 2>/dev/null)" != "$stamp" ] || ! "$PY" -c 'import relay.uring._ring' 2>/dev/null; then
        echo "setup: installing relay and its dependencies into .venv (log: .venv/setup.log)"
        if ! { "$PY" -m pip install --upgrade pip && "$PY" -m pip install -e ".[test]"; } >"$VENV/setup.log" 2>&1; then
            tail -n 40 "$VENV/setup.log" >&2
            echo "setup: pip install failed; the whole log is in .venv/setup.log" >&2
            exit 1
        fi
        echo "$stamp" > "$VENV/.setup-stamp"
    fi
    setup_room
}

setup_room() {
    # The browser room demo (examples/room) and its test: Debian's chromium, node + npm,
    # mediasoup-client / esbuild / playwright-core from npm (package-lock.json), the bundle.
    local room="$ROOT/examples/room"
    apt_install chromium
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
    local lock_stamp
    lock_stamp=$(sha256sum "$room/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$room/node_modules/.setup-stamp" 2>/dev/null)" != "$lock_stamp" ]; then
        echo "setup: npm ci in examples/room"
        (cd "$room" && npm ci --no-audit --no-fund --loglevel=error) >/dev/null
        echo "$lock_stamp" > "$room/node_modules/.setup-stamp"
    fi
    if [ ! -f "$room/public/bundle.js" ] || [ -n "$(find "$room/src" -newer "$room/public/bundle.js" -print -quit)" ] \
            || [ "$room/package-lock.json" -nt "$room/public/bundle.js" ]; then
        (cd "$room" && npm run --silent build) >/dev/null
    fi
}

cmd=${1:-test}
case "$cmd" in
    setup)
        setup ;;
    demo)
        setup
        # Prints the URL to open (in two tabs: each publishes its camera and microphone and
        # shows every other participant). RELAY_ROOM_HOST / RELAY_ROOM_PORT to change them.
        exec "$PY" examples/room/server.py --host "${RELAY_ROOM_HOST:-127.0.0.1}" \
            --port "${RELAY_ROOM_PORT:-8080}" ;;
    bench)
        setup
        exec "$PY" -m relay.uring.bench --quick ;;
    test)
        setup
        "$VENV/bin/ruff" check .
        "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
        exec "$PY" -m pytest -q ;;
    *)
        echo "usage: bash scripts/dev.sh [setup|demo|bench|test]" >&2; exit 2 ;;
esac
