#!/bin/sh
# The compose lab's one-shot apply (the tools image): once sztp-server answers and has written
# its first admin token, send it the fleet file in one atomic request, then mark /lab applied
# so the simulated device boots.
set -eu
export SZTP_SERVER=https://sztp-server:7443 SZTP_TOKEN_FILE=/admin/admin-token
export SZTP_CA_BUNDLE=/lab/pki/tls/ca.pem
limit=${SZTP_LAB_WAIT:-300}
waited=0
until [ -s "$SZTP_TOKEN_FILE" ] && sztpctl status >/dev/null 2>&1; do
  if [ "$waited" -ge "$limit" ]; then
    echo "apply: sztp-server did not answer on $SZTP_SERVER within ${limit}s" >&2
    sztpctl status
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
sztpctl apply -f /lab/fleet.yaml
touch /lab/applied
