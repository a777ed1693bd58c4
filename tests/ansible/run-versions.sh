#!/usr/bin/env bash
# The collection on every ansible-core minor that meta/runtime.yml's requires_ansible declares
# (>=2.16.0: 2.16, 2.17, 2.18, 2.19), the cheapest meaningful subset on each: the inventory
# plugin's unit tests (plain pytest) and the sztp_inventory integration target (which holds the
# template injection proof) against a real sztp-server started here.
# Each version gets a throwaway venv under build/ansible-versions/<version> (kept between runs
# and reused; delete the directory to rebuild it) with that ansible-core, the kit's pinned
# dependencies and the kit itself (editable): from requirements/ansible-<version>.txt when
# that lock exists (the floor, which `make test` runs as `make ansible-floor`), else the
# newest <version>.* from PyPI.
# Usage: tests/ansible/run-versions.sh [2.16 2.17 2.18 2.19]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
base_python=${BASE_PYTHON:-python3.11}  # 2.16 and 2.17 support 3.10-3.12, 2.18 and 2.19 3.11-3.13
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.16 2.17 2.18 2.19)

work=$(mktemp -d)
cleanup() {
  if [ -s "$work/server.pid" ]; then kill "$(cat "$work/server.pid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

venv_for() {
  local version=$1 venv="$root/build/ansible-versions/$1"
  if [ ! -x "$venv/bin/ansible-test" ] || [ ! -e "$venv/.complete" ]; then
    rm -rf "$venv"
    "$base_python" -m venv "$venv"
    if [ -f "$root/requirements/ansible-$version.txt" ]; then
      "$venv/bin/pip" install -q --disable-pip-version-check \
        --require-hashes -r "$root/requirements/ansible-$version.txt"
    else
      "$venv/bin/pip" install -q --disable-pip-version-check \
        --require-hashes -r "$root/roles/server/files/server-requirements.txt"
      "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$version.*" pytest
    fi
    # one editable install at a time: each rewrites the checkout's egg-info
    (cd "$root" && flock "$root/build/ansible-versions/.lock" \
      "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e .)
    touch "$venv/.complete"
  fi
  echo "$venv"
}

# shellcheck source=tests/ansible/integration-server.sh
. "$root/tests/ansible/integration-server.sh"

run_version() {
  local version=$1 venv python collection state
  venv=$(venv_for "$version")
  python="$venv/bin/python"
  export PATH="$venv/bin:$PATH"
  echo "== ansible-core $("$python" -c 'import ansible.release as r; print(r.__version__)') ($("$python" -V))"

  rm -rf "$work/ac" && mkdir -p "$work/ac/ansible_collections/sztp/bootstrap"
  collection="$work/ac/ansible_collections/sztp/bootstrap"
  ansible-galaxy collection build "$root" --output-path "$work/ac" --force >/dev/null
  tar -xzf "$work"/ac/sztp-bootstrap-*.tar.gz -C "$collection"

  # Inside `if`, where set -e does not act: every step's status is checked by hand.
  local rc=0
  echo "-- units: tests/unit/plugins/inventory"
  (cd "$collection" && PYTHONPATH="$work/ac" "$python" -m pytest -q -p no:cacheprovider \
    tests/unit/plugins/inventory) || rc=$?

  echo "-- integration: sztp_inventory against a real sztp-server"
  state="$work/server-$version"
  start_integration_server "$python" "$state" "$collection/tests/integration/integration_config.yml"
  echo "$server_pid" >"$work/server.pid"
  local integration_rc=0
  (cd "$collection" && ansible-test integration --local --python 3.11 --color no sztp_inventory) \
    || integration_rc=$?
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  : >"$work/server.pid"
  if [ "$integration_rc" != 0 ]; then cat "$state/server.log" >&2; rc=$integration_rc; fi
  return "$rc"
}

# The venvs first, side by side (mostly downloads).
setup_start=$SECONDS
for version in "${versions[@]}"; do
  venv_for "$version" >"$work/setup-$version.log" 2>&1 &
done
for job in $(jobs -p); do
  wait "$job" || { cat "$work"/setup-*.log >&2; echo "venv setup failed" >&2; exit 1; }
done
echo "== venvs ready in $((SECONDS - setup_start))s"

declare -A results
failed=0
for version in "${versions[@]}"; do
  start=$SECONDS
  if (run_version "$version"); then outcome=passed; else outcome=FAILED; failed=1; fi
  results[$version]="$outcome in $((SECONDS - start))s"
done
echo "== summary"
for version in "${versions[@]}"; do echo "ansible-core $version: ${results[$version]}"; done
exit "$failed"
