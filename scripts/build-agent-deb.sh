#!/bin/bash
# Build the device agent's Debian package from this repository:
#   scripts/build-agent-deb.sh OUTDIR [WHEEL]
# writes OUTDIR/sztp-agent_<version>_<arch>.deb and prints its path. The package is
# self-contained: a virtual environment at /opt/sztp-agent made from Debian's python3, the
# kit's locked dependencies (requirements/kit.txt, hash-checked: the agent needs nothing else)
# and the sztp wheel (WHEEL, or one built here from the checkout); /usr/bin/ztp; the systemd
# unit; the generic install handlers as conffiles in /etc/sztp-agent/handlers; the dhclient
# snippets and the OpenSSL configuration for an IDevID key in a TPM (openssl-tpm2.cnf) in
# /usr/share/sztp-agent. The only network access is pip's, to the package index.
# Needs python3 with venv (python3-venv) and dpkg-deb; PYTHON names the Python that builds the
# wheel when none is given (default: .venv/bin/python, where `make wheel` builds it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUTDIR [WHEEL]" >&2
  exit 2
fi
outdir=$1
wheel=${2:-}
prefix=/opt/sztp-agent
# Debian's interpreter, not a venv's or a pyenv's: the package's venv links to it on devices.
system_python=/usr/bin/python3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

if [ -z "$wheel" ]; then
  python=${PYTHON:-$root/.venv/bin/python}
  # As `make wheel`: setuptools never deletes from build/lib, so a stale module would ship.
  rm -rf "$root/build/lib" "$root"/build/bdist.*
  "$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/wheel" "$root"
  wheel=$(ls "$work"/wheel/sztp-*.whl)
fi
[ -f "$wheel" ] || { echo "$0: no wheel at $wheel" >&2; exit 2; }
# sztp-0.1.0-py3-none-any.whl -> 0.1.0 (a PEP 440 version is a valid Debian upstream version
# for the releases this project makes: digits and dots, maybe a pre-release letter).
version=$(basename "$wheel" | cut -d- -f2)
arch=$(dpkg --print-architecture)

stage=$work/stage
venv=$stage$prefix
# The venv is built where it is staged and then moved by rewriting the paths it records (its
# scripts' shebangs, activate, pyvenv.cfg): venvs are not relocatable, and building in the
# real /opt would touch the build machine.
"$system_python" -m venv "$venv"
# --no-compile: byte code would record the staging path; postinst compiles on the device.
"$venv/bin/pip" install -q --no-compile --disable-pip-version-check --require-hashes \
  -r "$root/requirements/kit.txt"
"$venv/bin/pip" install -q --no-compile --disable-pip-version-check --no-deps "$wheel"
# pip and setuptools are only for building: the agent never installs anything at run time.
"$venv/bin/python" -m pip uninstall -q -y pip setuptools >/dev/null
# The wheel's other commands need the cli and server extras, which a device does not have.
rm -f "$venv/bin/sztpctl" "$venv/bin/sztp-server"
# The unit as `ztp systemd-unit` prints it, for the installed path (the agent's own template).
"$venv/bin/python" -c 'from sztp_agent.cli import systemd_unit; import sys; print(systemd_unit(sys.argv[1]), end="")' \
  "$prefix/bin/python -m sztp_agent" >"$work/sztp-agent.service"
agent_data=$("$venv/bin/python" -c 'from importlib.resources import files; print(files("sztp_agent") / "data")')
installed_version=$("$venv/bin/python" -m sztp_agent --version)
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
# direct_url.json names the wheel's path on the build machine: nothing a device can use.
for record in "$venv"/lib/python*/site-packages/sztp-*.dist-info; do
  rm -f "$record/direct_url.json"
  sed -i '/direct_url\.json/d' "$record/RECORD"
done
grep -rlI --null -F "$venv" "$venv" | xargs -0 -r sed -i "s|$venv|$prefix|g"
if grep -rqI -F "$work" "$venv"; then
  echo "$0: the staging path is still recorded in:" >&2
  grep -rlI -F "$work" "$venv" >&2
  exit 1
fi

install -d -m 0755 "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/sztp-agent/handlers" \
  "$stage/usr/share/sztp-agent" "$stage/usr/share/doc/sztp-agent" "$stage/DEBIAN"
ln -s "$prefix/bin/ztp" "$stage/usr/bin/ztp"
install -m 0644 "$work/sztp-agent.service" "$stage/lib/systemd/system/sztp-agent.service"
for handler in install-image apply-configuration; do
  install -m 0755 "$agent_data/handlers/$handler" "$stage/etc/sztp-agent/handlers/$handler"
  echo "/etc/sztp-agent/handlers/$handler" >>"$stage/DEBIAN/conffiles"
done
install -m 0644 "$agent_data/dhclient-sztp.conf" "$agent_data/dhclient6-sztp.conf" \
  "$agent_data/openssl-tpm2.cnf" "$stage/usr/share/sztp-agent/"
install -m 0644 "$root/docs/agent.md" "$stage/usr/share/doc/sztp-agent/agent.md"
# Debian policy 12.5: every package carries its copyright and licence.
cat > "$stage/usr/share/doc/sztp-agent/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sztp
Source: https://github.com/sztp/sztp

Files: *
Copyright: sztp developers
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$stage/usr/share/doc/sztp-agent/copyright"

# The venv's lib/pythonX.Y is tied to the interpreter's minor version it was built with (3.11
# on Debian 12, the oldest Python the kit supports).
python_minor=$("$system_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
python_next="${python_minor%.*}.$((${python_minor#*.} + 1))"
installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: sztp-agent
Version: $version
Architecture: $arch
Maintainer: sztp developers <sztp@localhost>
Section: admin
Priority: optional
Installed-Size: $installed_kib
Depends: python3 (>= $python_minor), python3 (<< $python_next), tar
Suggests: tpm2-openssl, tpm2-tools
Homepage: https://github.com/sztp/sztp
Description: secure zero touch provisioning (RFC 8572) device agent
 sztp-agent starts at boot, finds bootstrap servers (DHCP option 143/136 or
 configured URIs), authenticates with the device's IDevID, verifies ownership
 vouchers and signed onboarding information, installs the boot image, applies
 the configuration and reports progress. The ztp command shows and controls it.
 Self-contained: its Python libraries live in /opt/sztp-agent ($installed_version).
EOF

cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Compile the venv's byte code here (the build left none: it would name the build's paths),
# then enable the unit without starting it: a device bootstraps at its next boot, or when the
# operator runs `ztp run` (a half-configured agent.yaml must not start a session).
set -e
if [ "$1" = configure ]; then
    /opt/sztp-agent/bin/python -m compileall -q /opt/sztp-agent/lib >/dev/null 2>&1 || true
fi
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        # Removes only the mask postrm left; was-enabled is true on a first install.
        deb-systemd-helper unmask sztp-agent.service >/dev/null || true
        if deb-systemd-helper --quiet was-enabled sztp-agent.service; then
            deb-systemd-helper enable sztp-agent.service >/dev/null || true
        else
            deb-systemd-helper update-state sztp-agent.service >/dev/null || true
        fi
    elif command -v systemctl >/dev/null 2>&1; then
        systemctl enable sztp-agent.service >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
exit 0
EOF

cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# On removal a running session is stopped (it marks itself aborted); the byte code postinst
# made goes, so dpkg can remove the directories it owns.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop sztp-agent.service >/dev/null 2>&1 || true
fi
if [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; then
    find /opt/sztp-agent -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
fi
exit 0
EOF

cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# The unit's enablement goes with the package; on purge also the agent's state (status, log,
# downloads). /etc/sztp-agent's agent.yaml and IDevID are the operator's: never removed here.
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper mask sztp-agent.service >/dev/null || true
fi
if [ "$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge sztp-agent.service >/dev/null || true
        deb-systemd-helper unmask sztp-agent.service >/dev/null || true
    fi
    rm -rf /var/lib/sztp-agent
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

deb=$outdir/sztp-agent_${version}_${arch}.deb
# --root-owner-group: every file root's, whoever builds; gzip: quicker than xz for a venv
# whose largest parts (compiled extensions) compress alike.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
