# Sourced by run.sh and run-matrix.sh. ansible-test would download a pip bootstrap script from a
# host these machines cannot reach; the stand-in in its cache does the same job offline.
#   provide_get_pip PYTHON ROOT
# puts ROOT/tests/ansible/get_pip.py where the ansible-test of PYTHON looks for it, written whole
# (a temporary name, then a rename), since parallel runs share the cache.
provide_get_pip() {
  local python=$1 root=$2 pip_version cache
  pip_version=$("$python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
PY
  )
  cache="$HOME/.ansible/test/cache"
  mkdir -p "$cache"
  cp "$root/tests/ansible/get_pip.py" "$cache/.get_pip.$$.$BASHPID"
  mv -f "$cache/.get_pip.$$.$BASHPID" "$cache/get_pip_${pip_version//./_}.py"
}
