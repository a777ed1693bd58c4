#!/bin/bash
# Build the systemd-capable Debian 12 base image for the molecule scenarios, without any image
# registry: debootstrap a minimal root file system and import it into rootful podman.
# Usage: scripts/build-test-image.sh [IMAGE]
# Skips the build when IMAGE exists and was built by this version of the script (a label
# carries the script's hash), so a changed recipe rebuilds.
set -euo pipefail

image="${1:-localhost/sztp-debian-systemd:bookworm}"
suite=bookworm
recipe="$(sha256sum "$0" | cut -c1-16)"

if podman image exists "$image" &&
  [ "$(podman image inspect --format '{{ index .Labels "sztp.recipe" }}' "$image")" = "$recipe" ]; then
  echo "image $image is up to date"
  exit 0
fi

rootfs="$(mktemp -d /var/tmp/sztp-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# The mirror this host uses (its apt sources name it), so the build works where only the
# package registries are reachable.
mirror="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

# iproute2: Ansible's network facts; python3-packaging: ansible's pip module; python3-apt:
# ansible's apt module in check mode; sudo: playbooks that become root, as sites do.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-venv,python3-packaging,python3-apt,sudo,ca-certificates,iproute2 \
  "$suite" "$rootfs" "$mirror" >/dev/null

# The host's apt configuration and any extra CA certificates (a TLS-inspecting egress proxy
# signs with one), so apt and pip inside the containers reach the same registries.
cp -a /etc/apt/sources.list.d/. "$rootfs/etc/apt/sources.list.d/"
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
for conf in /etc/apt/apt.conf.d/*; do
  grep -qiE 'proxy|Acquire|Check-Valid' "$conf" 2>/dev/null && cp "$conf" "$rootfs/etc/apt/apt.conf.d/"
done
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"

# Each container gets its own machine id at boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
chroot "$rootfs" apt-get clean

tar -C "$rootfs" -c . |
  podman import --change 'CMD ["/sbin/init"]' --change "LABEL sztp.recipe=$recipe" - "$image" >/dev/null
echo "built $image"
