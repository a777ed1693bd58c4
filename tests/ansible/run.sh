#!/usr/bin/env bash
# ansible-test on the collection as it ships: the artifact from `ansible-galaxy collection build`
# (galaxy.yml's build_ignore leaves out the Python distribution, benchmarks and pytest suites)
# unpacked under .../ansible_collections/sztp/bootstrap, the path ansible-test insists on.
# Sanity runs in a venv ansible-test builds; units run in this environment, where the sztp kit
# the modules call into is installed; integration runs the targets against a real sztp-server
# started here; lint runs ansible-lint's production profile; docs lints the plugin and role
# documentation as Ansible's documentation site renders it (antsibull-docs).
# Usage: tests/ansible/run.sh [sanity|units|integration|lint|docs|all]
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

# shellcheck source=tests/ansible/offline-get-pip.sh
. "$root/tests/ansible/offline-get-pip.sh"
provide_get_pip "$python" "$root"

if [ "$what" = lint ] || [ "$what" = all ]; then
  ANSIBLE_COLLECTIONS_PATH="$work" ansible-lint --profile production --offline --nocolor
fi
if [ "$what" = docs ] || [ "$what" = all ]; then
  # The collection depends on no other: a reference to one outside it and ansible.builtin is
  # an error too.
  antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs dependent \
    --disallow-unknown-collection-refs .
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
  # shellcheck source=tests/ansible/integration-server.sh
  . "$root/tests/ansible/integration-server.sh"
  state="$work/server"
  start_integration_server "$python" "$state" tests/integration/integration_config.yml
  ansible-test integration --local --python 3.11 --color no || { cat "$state/server.log" >&2; exit 1; }
fi
