#!/usr/bin/env bash
# Starts a throwaway redis-server for the test suite and prints its URL.
# Usage: eval "$(scripts/start-test-redis.sh)"   -> exports REELSIFT_TEST_REDIS_URL
# Installs Debian's redis-server if absent. No persistence: the data dir is a temp dir and
# the server stops when REELSIFT_TEST_REDIS_DIR/redis.pid's process is killed.
set -euo pipefail
port="${REDIS_PORT_TEST:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
server=$(command -v redis-server || true)
if [ -z "$server" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) >&2
  server=$(command -v redis-server)
fi
dir=$(mktemp -d /tmp/reelsift-redis.XXXXXX)
"$server" --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/log" >/dev/null
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
echo "export REELSIFT_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
echo "export REELSIFT_TEST_REDIS_DIR=$dir"
