#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing: PostgreSQL 15 and Chromium.
# `system-deps.sh bench` also installs wrk, the load generator bench/api.py drives.
set -euo pipefail
need=()
if [ "${1:-}" = "bench" ] && ! command -v wrk >/dev/null 2>&1; then
  need+=(wrk)
fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql-15)
fi
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing ${need[*]} from Debian's packages"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
