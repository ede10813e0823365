#!/usr/bin/env bash
# Make sure a RabbitMQ answers at BGW_BROKER_URL (default amqp://guest:guest@127.0.0.1:5672/).
# If none answers on this machine's loopback, start a local one from Debian's rabbitmq-server
# package (installing it when run as root), or say exactly what to do.
set -euo pipefail

url="${BGW_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672/}"
url="${url%%;*}"              # several nodes (;-separated): the first one
hostport="${url#*://}"        # drop the scheme
hostport="${hostport##*@}"    # drop user:password@
hostport="${hostport%%/*}"    # drop /vhost
host="${hostport%%:*}"
port="${hostport##*:}"
[ "$port" = "$host" ] && port=5672

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

# Management API (queue depths with unacknowledged counts) and RabbitMQ's own Prometheus
# endpoint: enabled when we can (root, local node); a no-op when already on.
enable_plugins() {
  if [ "$(id -u)" -eq 0 ] && command -v rabbitmq-plugins >/dev/null 2>&1 \
     && ! timeout 2 bash -c "exec 3<>/dev/tcp/$host/15692" 2>/dev/null; then
    timeout 120 rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 \
      && echo "RabbitMQ management and prometheus plugins enabled" \
      || echo "could not enable RabbitMQ plugins (queue depths fall back to AMQP)" >&2
  fi
}

if answers; then
  echo "RabbitMQ answers at $host:$port"
  case "$host" in 127.*|localhost) enable_plugins ;; esac
  exit 0
fi

case "$host" in
  127.*|localhost) ;;
  *) echo "RabbitMQ does not answer at $host:$port (BGW_BROKER_URL); start it there or change BGW_BROKER_URL." >&2
     exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "No RabbitMQ at $host:$port and rabbitmq-server is not installed. On Debian/Ubuntu:" >&2
    echo "  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached" >&2
    echo "or point BGW_BROKER_URL at a running broker." >&2
    exit 1
  fi
  echo "Installing rabbitmq-server (Debian package)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null || true
  command -v rabbitmq-server >/dev/null 2>&1 || { echo "rabbitmq-server install failed" >&2; exit 1; }
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "No RabbitMQ at $host:$port. Start it with: sudo rabbitmq-server -detached" >&2
  exit 1
fi

echo "Starting a local RabbitMQ..."
rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 || true
rabbitmq-server -detached
# The node must register before await_startup can talk to it: ping first, then wait.
for _ in $(seq 1 240); do
  rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
  sleep 0.5
done
rabbitmqctl --timeout 120 await_startup >/dev/null
for _ in $(seq 1 120); do
  if answers; then echo "RabbitMQ started at $host:$port"; exit 0; fi
  sleep 0.5
done
echo "RabbitMQ started but does not answer at $host:$port" >&2
exit 1
