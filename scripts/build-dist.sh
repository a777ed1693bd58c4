#!/bin/bash
# Build what a release publishes, both at the project's one version (pyproject.toml):
#   scripts/build-dist.sh OUTDIR
# writes OUTDIR/sztp-<version>-py3-none-any.whl (the Python distribution, for PyPI) and
# OUTDIR/sztp-bootstrap-<version>.tar.gz (the Ansible collection, for Galaxy), replacing
# earlier builds there, and prints their paths. PYTHON names the Python that builds them, with
# setuptools, wheel and ansible-core installed (default: .venv/bin/python).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
python=${PYTHON:-$root/.venv/bin/python}
bin=$(dirname "$python")

rm -f "$outdir"/sztp-*.whl "$outdir"/sztp-bootstrap-*.tar.gz
# As `make wheel`: setuptools never deletes from build/lib, so a stale module would ship.
rm -rf "$root/build/lib" "$root"/build/bdist.*
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$outdir" "$root"
"$bin/ansible-galaxy" collection build --force --output-path "$outdir" "$root" >/dev/null
ls "$outdir"/sztp-*.whl "$outdir"/sztp-bootstrap-*.tar.gz
