#!/usr/bin/env bash
# PostgreSQL for the multi-worker search test (tests/search/test_postgres.py starts its own server in
# a temporary data directory, on 127.0.0.1 only): Debian's `postgresql` package (15 on Debian 12),
# installed with apt-get as root or with sudo. Idempotent: nothing to do when initdb is there.
set -euo pipefail

say() { echo "install_postgresql: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else say "need root (or sudo) to run: $*"; exit 1
    fi
}

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
say "installing postgresql"
as_root apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
