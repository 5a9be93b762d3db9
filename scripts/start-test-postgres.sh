#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the test suite and prints its URL.
# Usage: eval "$(scripts/start-test-postgres.sh)"   -> exports REELSIFT_TEST_POSTGRES_URL
# Installs Debian's postgresql if absent. Runs the server as the `postgres` user because
# initdb refuses to run as root.
set -euo pipefail
port="${PGPORT_TEST:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
data=$(mktemp -d /tmp/reelsift-pg.XXXXXX)
chown postgres "$data"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$bindir/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$bindir/pg_ctl" -D "$data/db" -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" -l "$data/log" -w start >/dev/null
as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres reelsift_test
echo "export REELSIFT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/reelsift_test"
echo "export REELSIFT_TEST_POSTGRES_DATA=$data/db"
