#!/usr/bin/env bash
# The collection on every ansible-core minor meta/runtime.yml's requires_ansible declares besides
# the dev venv's 2.19 (tests/ansible/run.sh runs everything there): one per lock
# requirements/ansible-<minor>.txt, each on the Python its .in names (`# python-version:`).
# Per minor, on the artifact its own ansible-galaxy builds: ansible-test sanity (--venv) and
# units (--local); integration (every target, against a real sztp-server started here) on the
# oldest and the newest minor only (MATRIX_INTEGRATION="2.16 2.21" to choose).
#
# Each minor gets a venv under build/ansible-versions/<minor>: the locked pip, setuptools and
# wheel, the hash-checked lock (that ansible-core, pytest, the kit's and the server's
# dependencies) and the kit itself (editable). It is kept and reused while its lock and Python
# are unchanged. The unpacked collection is kept too, so that ansible-test's --venv controller
# environment in it (tests/output/.tmp/delegation) is reused: outside the checkout (under
# ~/.cache/sztp/ansible-matrix/, one directory per checkout), because ansible-test inside a git
# work tree lists only the files git tracks. The sanity tests' own venvs are ansible-test's,
# under ~/.ansible/test/venv, reused by every run.
# The venvs are built side by side; then one lane per Python runs its minors in turn (ansible-test
# creates the sanity venvs of one Python under the same path, without locking).
# Usage: tests/ansible/run-matrix.sh [MINOR...]   (default: every requirements/ansible-*.in)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
base="$root/build/ansible-versions"
trees="${XDG_CACHE_HOME:-$HOME/.cache}/sztp/ansible-matrix/$(echo "$root" | sha256sum | cut -c1-12)"
mkdir -p "$base" "$trees"

locked=()
for in_file in "$root"/requirements/ansible-*.in; do
  minor=${in_file##*/ansible-}
  locked+=("${minor%.in}")
done
mapfile -t locked < <(printf '%s\n' "${locked[@]}" | sort -V)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${locked[@]}")
read -r -a integration_versions <<<"${MATRIX_INTEGRATION:-${locked[0]} ${locked[-1]}}"

work=$(mktemp -d)
cleanup() {
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python_version_for() {
  local in_file="$root/requirements/ansible-$1.in" version
  if [ "$1" = 2.19 ]; then
    echo "ansible-core 2.19 is the dev venv's: tests/ansible/run.sh (make ansible-test) runs it" >&2
    return 1
  fi
  if [ ! -f "$in_file" ] || [ ! -f "$root/requirements/ansible-$1.txt" ]; then
    echo "no lock for ansible-core $1: add requirements/ansible-$1.in and run \`make lock\`" >&2
    return 1
  fi
  version=$(sed -n 's/^# python-version: //p' "$in_file")
  [ -n "$version" ] || { echo "$in_file names no '# python-version:'" >&2; return 1; }
  echo "$version"
}

# A real interpreter of that version (not a venv's, not a pyenv shim): python3.X on PATH, else
# pyenv's newest 3.X.* build. Prints its path; without one, says what to install and fails
# (neither pyenv nor uv can fetch CPython on a machine without python.org and GitHub).
find_python() {  # find_python PYTHON_VERSION MINOR
  local version=$1 minor=$2 candidate real
  for candidate in "$(command -v "python$version" || true)" \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/"python$version" 2>/dev/null | sort -rV); do
    [ -n "$candidate" ] || continue
    real=$("$candidate" -c "import sys
assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))
import ensurepip, ssl, venv
print(getattr(sys, '_base_executable', sys.executable))" 2>/dev/null) || continue
    [ -x "$real" ] && { echo "$real"; return 0; }
  done
  cat >&2 <<MESSAGE
ansible-core $minor runs on Python $version here, and this machine has none (python$version is not on
PATH, nor under ${PYENV_ROOT:-$HOME/.pyenv}/versions/): install CPython $version with venv,
ensurepip and ssl (e.g. \`pyenv install $version\`, or your distribution's python$version and
python$version-venv packages) so that python$version is on PATH, then run this again.
MESSAGE
  return 1
}

# The venv of one minor, (re)built unless its stamp names the same lock and interpreter.
venv_for() {
  local minor=$1 python=$2 venv="$base/$1/venv" lock="$root/requirements/ansible-$1.txt" stamp
  stamp="$(sha256sum "$lock" "$root/requirements/bootstrap.txt" | cut -d' ' -f1 | tr '\n' ' ')$("$python" -V)"
  if [ -x "$venv/bin/ansible-test" ] && [ "$(cat "$venv/.complete" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes \
    -r "$root/requirements/bootstrap.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$lock"
  # one editable install at a time: each rewrites the checkout's egg-info
  (cd "$root" && flock "$base/.lock" "$venv/bin/pip" install -qq --disable-pip-version-check \
    --no-deps --no-build-isolation -e .)
  echo "$stamp" >"$venv/.complete"
}

# shellcheck source=tests/ansible/integration-server.sh
. "$root/tests/ansible/integration-server.sh"
# shellcheck source=tests/ansible/offline-get-pip.sh
. "$root/tests/ansible/offline-get-pip.sh"

# One minor, its steps timed into $work/result-<minor>; returns non-zero if any step failed.
run_minor() {
  local minor=$1 python_version=$2 real_python=$3 venv="$base/$1/venv" python collection
  local rc=0 step_rc start state pip_version cache results="$work/result-$1"
  python="$venv/bin/python"
  # The venv first, then the real interpreter: ansible-test makes its venvs with the latter.
  export PATH="$venv/bin:$(dirname "$real_python"):$PATH"
  echo "== ansible-core $("$python" -c 'import ansible.release as r; print(r.__version__)')" \
    "on $("$python" -V)"
  step() {  # step NAME COMMAND...: runs it, records "NAME passed|FAILED Ns"
    local name=$1 began=$SECONDS
    shift
    echo "-- $name"
    if "$@"; then
      echo "$name passed $((SECONDS - began))s" >>"$results"
    else
      echo "$name FAILED $((SECONDS - began))s" >>"$results"
      rc=1
      return 1
    fi
  }

  # The artifact this ansible-galaxy builds, unpacked over the previous run's (only
  # tests/output/.tmp/delegation, ansible-test's --venv controller venv, is kept).
  collection="$trees/$minor/ansible_collections/sztp/bootstrap"
  build() {
    mkdir -p "$collection" "$work/$minor"
    find "$collection" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
    if [ -d "$collection/tests" ]; then
      find "$collection/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
      find "$collection/tests/output" -mindepth 1 -maxdepth 1 ! -name .tmp -exec rm -rf {} + 2>/dev/null || true
      find "$collection/tests/output/.tmp" -mindepth 1 -maxdepth 1 ! -name delegation -exec rm -rf {} + 2>/dev/null || true
    fi
    ansible-galaxy collection build "$root" --output-path "$work/$minor" --force >/dev/null &&
      tar -xzf "$work/$minor"/sztp-bootstrap-*.tar.gz -C "$collection"
  }
  step build build || { cat "$results"; return 1; }
  cd "$collection"

  provide_get_pip "$python" "$root"

  step sanity ansible-test sanity --venv --python "$python_version" --color no
  step units ansible-test units --local --python "$python_version" --color no
  if [[ " ${integration_versions[*]} " == *" $minor "* ]]; then
    integration() {
      local status=0
      state="$work/server-$minor"
      start_integration_server "$python" "$state" tests/integration/integration_config.yml
      ansible-test integration --local --python "$python_version" --color no || status=$?
      kill "$server_pid" 2>/dev/null || true
      wait "$server_pid" 2>/dev/null || true
      if [ "$status" != 0 ]; then cat "$state/server.log" >&2; fi
      return "$status"
    }
    step integration integration
  fi
  return "$rc"
}

# Interpreters and venvs first: a missing Python stops the run here, before anything else.
declare -A python_of real_of lanes
for minor in "${versions[@]}"; do
  python_of[$minor]=$(python_version_for "$minor")
  real_of[$minor]=$(find_python "${python_of[$minor]}" "$minor")
  lanes[${python_of[$minor]}]+="$minor "
done

setup_start=$SECONDS
declare -A setup_jobs
for minor in "${versions[@]}"; do
  (
    began=$SECONDS
    venv_for "$minor" "${real_of[$minor]}"
    echo "$((SECONDS - began))" >"$work/venv-$minor.seconds"
  ) >"$work/venv-$minor.log" 2>&1 &
  setup_jobs[$minor]=$!
done
setup_failed=0
for minor in "${versions[@]}"; do
  if ! wait "${setup_jobs[$minor]}"; then
    echo "ansible-core $minor: venv setup failed:" >&2
    cat "$work/venv-$minor.log" >&2
    setup_failed=1
  fi
done
[ "$setup_failed" = 0 ] || exit 1
echo "== venvs ready in $((SECONDS - setup_start))s"

run_start=$SECONDS
declare -A lane_jobs
for lane in "${!lanes[@]}"; do
  (
    status=0
    for minor in ${lanes[$lane]}; do
      began=$SECONDS
      if (run_minor "$minor" "$lane" "${real_of[$minor]}") >"$work/log-$minor" 2>&1; then
        echo "ansible-core $minor: passed in $((SECONDS - began))s" >"$work/outcome-$minor"
      else
        echo "ansible-core $minor: FAILED in $((SECONDS - began))s" >"$work/outcome-$minor"
        status=1
      fi
    done
    exit "$status"
  ) &
  lane_jobs[$lane]=$!
done
failed=0
for lane in "${!lane_jobs[@]}"; do wait "${lane_jobs[$lane]}" || failed=1; done

for minor in "${versions[@]}"; do cat "$work/log-$minor"; done
echo "== summary: venvs $((run_start - setup_start))s, then the lanes (one per Python, side by side)" \
  "$((SECONDS - run_start))s; whole run ${SECONDS}s"
for minor in "${versions[@]}"; do
  steps=$(tr '\n' ',' <"$work/result-$minor" 2>/dev/null | sed 's/,$//; s/,/, /g')
  echo "$(cat "$work/outcome-$minor") on Python ${python_of[$minor]} (venv $(cat "$work/venv-$minor.seconds")s; ${steps:-no steps ran})"
done
exit "$failed"
