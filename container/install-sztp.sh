#!/bin/sh
# install-sztp LOCK: /opt/sztp, a venv with LOCK's pinned, hash-checked packages and the sztp
# wheel from /tmp/wheels on top (its dependencies are LOCK's); the build's files go afterwards.
set -eu
python3 -m venv /opt/sztp
pip="/opt/sztp/bin/pip install -q --disable-pip-version-check --no-cache-dir"
$pip --require-hashes -r "$1"
$pip --no-deps /tmp/wheels/sztp-*.whl
rm -r "$1" /tmp/wheels
