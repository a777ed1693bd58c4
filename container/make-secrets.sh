#!/bin/sh
# The compose lab's secrets, once: a random PostgreSQL password and the database URL sztp-server
# reads it from, in DIR (default container/secrets; compose reads $SZTP_LAB_SECRETS, default
# ./secrets). The directory is the host's guard (0700); the files are readable by the
# containers' own users, which are not the host's.
# Usage: container/make-secrets.sh [DIR]
set -eu
dir=${1:-$(cd "$(dirname "$0")" && pwd)/secrets}
if [ -e "$dir/postgres-password" ]; then
  echo "make-secrets: $dir already holds the secrets; remove it to make new ones" >&2
  exit 1
fi
install -d -m 0700 "$dir"
password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
umask 022
printf '%s\n' "$password" >"$dir/postgres-password"
printf 'postgresql://sztp:%s@postgres:5432/sztp\n' "$password" >"$dir/database-url"
echo "make-secrets: wrote $dir/postgres-password and $dir/database-url"
