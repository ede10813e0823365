#!/usr/bin/env bash
# The web console's browser tests drive Debian's chromium through Playwright (no browser
# download). Install it when missing and we are root; otherwise say how (the tests then skip
# locally and fail under CI=true).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: install Debian's 'chromium' package for the web console tests" >&2
  exit 0
fi
echo "Installing chromium (Debian package) for the web console tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
[ -x /usr/bin/chromium ] || { echo "chromium install failed" >&2; exit 1; }
