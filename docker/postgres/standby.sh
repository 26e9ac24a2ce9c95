#!/usr/bin/env bash
# The standby: on first start a copy of the primary made by pg_basebackup -R (which writes
# standby.signal and primary_conninfo), then PostgreSQL streaming from it. Runs as postgres.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD="$REPLICATION_PASSWORD"
  until pg_basebackup -h postgres-primary -U replicator -D "$PGDATA" -R -X stream; do
    echo "waiting for the primary"; rm -rf "${PGDATA:?}"/*; sleep 2
  done
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
