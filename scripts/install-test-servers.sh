#!/usr/bin/env bash
# Install the real servers the test suite starts on loopback ports:
#   Dovecot (IMAP), PostgreSQL, and Synapse (Matrix homeserver, in its own venv).
# Idempotent: anything already installed is left alone.
#
# Usage: scripts/install-test-servers.sh [SYNAPSE_VENV]
#   SYNAPSE_VENV (argument or environment variable) defaults to <repo>/.venv-synapse.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
synapse_venv="${1:-${SYNAPSE_VENV:-$repo_root/.venv-synapse}}"
python_bin="${PYTHON:-python3}"

say() { printf '[install-test-servers] %s\n' "$*"; }

# Run a command as root: directly if we are root, else through sudo if available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $* (not root and no sudo available)" >&2
        return 1
    fi
}

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not found: install these packages by hand: $*" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -q
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# --- Dovecot -----------------------------------------------------------------
if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then
    say "dovecot: already installed ($( (/usr/sbin/dovecot --version || dovecot --version) 2>/dev/null | head -n1))"
else
    apt_install dovecot-imapd
    # The tests run their own dovecot on a free port; the packaged system
    # service must not sit on 143/993. Usually it never started (policy-rc.d).
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
        as_root systemctl stop dovecot || true
        as_root systemctl disable dovecot >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        as_root service dovecot stop >/dev/null 2>&1 || true
    fi
    say "dovecot: installed dovecot-imapd (system service stopped if it had started)"
fi

# --- PostgreSQL --------------------------------------------------------------
find_initdb() {
    if command -v initdb >/dev/null 2>&1; then
        command -v initdb
        return 0
    fi
    local candidate
    # newest version last in version sort
    candidate="$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        printf '%s\n' "$candidate"
        return 0
    fi
    return 1
}

if initdb_path="$(find_initdb)"; then
    say "postgresql: already installed ($initdb_path)"
else
    apt_install postgresql
    if command -v service >/dev/null 2>&1; then
        as_root service postgresql stop >/dev/null 2>&1 || true
    fi
    initdb_path="$(find_initdb)" || {
        say "postgresql: installed, but initdb still not found" >&2
        exit 1
    }
    say "postgresql: installed postgresql ($initdb_path)"
fi

# --- Synapse -----------------------------------------------------------------
if [ -x "$synapse_venv/bin/python" ] && "$synapse_venv/bin/python" -c "import synapse" >/dev/null 2>&1; then
    version="$("$synapse_venv/bin/python" -c "import synapse; print(synapse.__version__)")"
    say "synapse: already installed ($version in $synapse_venv)"
else
    if [ ! -x "$synapse_venv/bin/python" ]; then
        "$python_bin" -m venv "$synapse_venv"
    fi
    "$synapse_venv/bin/python" -m pip install -q --upgrade pip
    "$synapse_venv/bin/python" -m pip install -q "matrix-synapse>=1.100"
    version="$("$synapse_venv/bin/python" -c "import synapse; print(synapse.__version__)")"
    say "synapse: installed matrix-synapse $version in $synapse_venv"
fi
