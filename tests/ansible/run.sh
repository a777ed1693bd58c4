#!/usr/bin/env bash
# ansible-test on the collection as it ships: the artifact from `ansible-galaxy collection build`
# (galaxy.yml's build_ignore leaves out the Python distribution, benchmarks and pytest suites)
# unpacked under .../ansible_collections/sztp/bootstrap, the path ansible-test insists on.
# Sanity runs in a venv ansible-test builds; units run in this environment, where the sztp kit
# the modules call into is installed; integration runs the targets against a real sztp-server
# started here; lint runs ansible-lint's production profile.
# Usage: tests/ansible/run.sh [sanity|units|integration|lint|all]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
bin=$(dirname "$python")
what=${1:-all}
export PATH="$bin:$PATH"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
collection="$work/ansible_collections/sztp/bootstrap"
mkdir -p "$collection"
ansible-galaxy collection build "$root" --output-path "$work" >/dev/null
tar -xzf "$work"/sztp-bootstrap-*.tar.gz -C "$collection"
cd "$collection"

# ansible-test would download a pip bootstrap script from a host these machines cannot reach;
# a stand-in in its cache does the same job offline.
pip_version=$("$python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
cp "$root/tests/ansible/get_pip.py" "$cache/get_pip_${pip_version//./_}.py"

if [ "$what" = lint ] || [ "$what" = all ]; then
  ANSIBLE_COLLECTIONS_PATH="$work" ansible-lint --profile production --offline --nocolor
fi
if [ "$what" = sanity ] || [ "$what" = all ]; then
  ansible-test sanity --venv --python 3.11 --color no
fi
if [ "$what" = units ] || [ "$what" = all ]; then
  if [ -d tests/unit ]; then
    ansible-test units --local --python 3.11 --color no
  else
    echo "no unit tests in the collection yet"
  fi
fi
if [ "$what" = integration ] || [ "$what" = all ]; then
  port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  admin_port=$(port)
  device_port=$(port)
  state="$work/server"
  mkdir -p "$state"
  cat >"$state/server.yaml" <<CONFIG
database_url: sqlite:///$state/sztp.db
device_listeners: [{host: 127.0.0.1, port: $device_port}]
admin_listener: {host: 127.0.0.1, port: $admin_port}
admin_token_file: $state/admin-token
log_level: warning
CONFIG
  sztp-server run --config "$state/server.yaml" 2>"$state/server.log" &
  server_pid=$!
  for _ in $(seq 100); do
    if [ -s "$state/admin-token" ] && "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1])" \
      "http://127.0.0.1:$admin_port/healthz" 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat >tests/integration/integration_config.yml <<VARS
sztp_server_url: http://127.0.0.1:$admin_port
sztp_device_url: http://127.0.0.1:$device_port
sztp_token: $(cat "$state/admin-token")
sztp_device_password: integration-$RANDOM-$RANDOM
VARS
  ansible-test integration --local --python 3.11 --color no || { cat "$state/server.log" >&2; exit 1; }
fi
