#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 on loopback for the tests; print the exports to eval.
# Usage: eval "$(.ci/postgres.sh start)"   ...   .ci/postgres.sh stop "$KPISAT_PG_DIR"
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

case "${1:-}" in
start)
  dir=$(mktemp -d /tmp/kpisat-pg.XXXXXX)
  chown postgres:postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pw="ci-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$pw" > "$dir/pwfile"; chown postgres "$dir/pwfile"
  runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -U kpisat --pwfile="$dir/pwfile" \
      --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  rm -f "$dir/pwfile"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null
  PGPASSWORD="$pw" "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U kpisat kpisat
  echo "export KPISAT_PG_DIR=$dir"
  echo "export KPISAT_TEST_PG_URL=postgresql://kpisat@127.0.0.1:$port/kpisat"
  echo "export KPISAT_TEST_PG_PASSWORD=$pw"
  ;;
stop)
  dir=${2:?data folder}
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
