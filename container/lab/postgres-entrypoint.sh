#!/bin/sh
# PostgreSQL for the lab: on an empty data volume, a cluster whose superuser is POSTGRES_USER
# with the password in POSTGRES_PASSWORD_FILE (a secret), a database POSTGRES_DB, TCP with
# scram-sha-256 from anywhere on the compose network (the unix socket, inside this container
# only, trusts its users); then the server in the foreground.
set -eu
: "${POSTGRES_USER:=sztp}" "${POSTGRES_DB:=sztp}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ ! -r "${POSTGRES_PASSWORD_FILE:-}" ]; then
    echo "postgres: POSTGRES_PASSWORD_FILE must name a readable file" >&2
    exit 1
  fi
  initdb --username="$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
    >>"$PGDATA/pg_hba.conf"
  postgres -c listen_addresses='' -c unix_socket_directories=/run/postgresql &
  until pg_isready -q -h /run/postgresql; do sleep 0.2; done
  createdb -h /run/postgresql -U "$POSTGRES_USER" "$POSTGRES_DB"
  pg_ctl stop -m fast -w >/dev/null
fi
exec postgres -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
