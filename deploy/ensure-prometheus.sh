#!/usr/bin/env bash
# The monitoring tests run a real Prometheus and promtool (Debian's prometheus package).
# Install it when missing and we are root; otherwise say how (the tests then skip locally and
# fail under CI=true).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus/promtool not found: install Debian's 'prometheus' package for the monitoring tests" >&2
  exit 0
fi
echo "Installing prometheus (Debian package) for the monitoring tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start a service where systemd runs; the tests start their own instance.
command -v promtool >/dev/null 2>&1 || { echo "prometheus install failed" >&2; exit 1; }
