#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs everything it needs, then runs pytest.
#
#   bash scripts/run-tests.sh            # every test
#   bash scripts/run-tests.sh -k kafka   # arguments go to pytest
#
# Installs: Debian's chromium (browser tests; apt-get, as root or with sudo), a virtual
# environment .venv with the package and its test extra, and the Node packages of
# package-lock.json (build and test tools) when Node is present.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e ".[test]"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec .venv/bin/python -m pytest "$@"
