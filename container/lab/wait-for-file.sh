#!/bin/sh
# wait-for-file FILE -- COMMAND...: run COMMAND once FILE exists (the lab's init job writes the
# certificates and configurations the services read), or fail after SZTP_LAB_WAIT seconds.
set -eu
file=$1
shift
[ "$1" = "--" ] && shift
limit=${SZTP_LAB_WAIT:-300}
waited=0
until [ -e "$file" ]; do
  if [ "$waited" -ge "$limit" ]; then
    echo "wait-for-file: $file did not appear within ${limit}s (did the init service fail?)" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
exec "$@"
