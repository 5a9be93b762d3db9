#!/usr/bin/env bash
# Starts a throwaway Redis Cluster (3 masters, no replicas) for the test suite and prints
# its seed URL.
# Usage: eval "$(scripts/start-test-redis-cluster.sh)"
#   -> exports REELSIFT_TEST_REDIS_CLUSTER_URL (any one node: the client discovers the rest)
#      and REELSIFT_TEST_REDIS_CLUSTER_DIR (one sub-directory per node, each with redis.pid)
# Debian's redis-server with cluster-enabled yes, joined by `redis-cli --cluster create`.
# No persistence; stop it by killing the pid in each $REELSIFT_TEST_REDIS_CLUSTER_DIR/*/redis.pid.
set -euo pipefail
server=$(command -v redis-server || true)
if [ -z "$server" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) >&2
  server=$(command -v redis-server)
fi
cli=$(command -v redis-cli)
# Three free ports whose cluster-bus ports (port + 10000) are free as well.
read -r -a ports <<<"$(python3 - <<'PY'
import socket
ports = []
while len(ports) < 3:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    if port + 10000 > 65535 or port in ports:
        continue
    try:
        b = socket.socket(); b.bind(("127.0.0.1", port + 10000)); b.close()
    except OSError:
        continue
    ports.append(port)
print(*ports)
PY
)"
dir=$(mktemp -d /tmp/reelsift-redis-cluster.XXXXXX)
for port in "${ports[@]}"; do
  mkdir -p "$dir/$port"
  "$server" --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --save '' --appendonly no \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout 5000 \
    --daemonize yes --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/log" >/dev/null
done
for port in "${ports[@]}"; do
  for _ in $(seq 50); do
    "$cli" -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
done
"$cli" --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 0 \
  --cluster-yes >"$dir/create.log" 2>&1
# The slots are assigned at once; the nodes agree on them a moment later.
for _ in $(seq 100); do
  "$cli" -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
  sleep 0.1
done
"$cli" -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok' || {
  echo "the Redis Cluster did not come up: see $dir" >&2; exit 1; }
echo "export REELSIFT_TEST_REDIS_CLUSTER_URL=redis://127.0.0.1:${ports[0]}/0"
echo "export REELSIFT_TEST_REDIS_CLUSTER_DIR=$dir"
