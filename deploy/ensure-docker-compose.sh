#!/usr/bin/env bash
# tests/test_deploy.py checks deploy/docker-compose.yml with `docker-compose config` (Debian's
# docker-compose package; no Docker daemon needed). Install it when missing and we are root;
# otherwise say how (the test then skips locally and fails under CI=true).
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "docker-compose not found: install Debian's 'docker-compose' package for the deploy test" >&2
  exit 0
fi
echo "Installing docker-compose (Debian package) for the deploy test..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null 2>&1 || { echo "docker-compose install failed" >&2; exit 1; }
