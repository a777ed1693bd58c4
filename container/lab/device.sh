#!/bin/sh
# The compose lab's simulated device SN-0001 (the tools image, as root for DHCP's raw socket):
# ISC dhclient asks Kea for a lease with option 143, and the device simulator bootstraps from
# the servers that option names, verifying everything with the IDevID and trust anchors the
# manufacturer gave it, then reports bootstrap-complete.
set -eu
lab=/lab
/usr/local/share/sztp-lab/wait-for-file.sh "$lab/applied" -- true
work=$(mktemp -d)
printf 'option sztp-redirect code 143 = string;\nalso request sztp-redirect;\n' >"$work/dhclient.conf"
# -sf /bin/true: the lease is only read here; the container keeps the address compose gave it.
dhclient -4 -1 -v -cf "$work/dhclient.conf" -lf "$work/leases" -pf "$work/pid" -sf /bin/true eth0
dhclient -x -pf "$work/pid" >/dev/null 2>&1 || true
octets=$(sed -n 's/^ *option sztp-redirect \([0-9a-f:]*\);$/\1/p' "$work/leases" | tail -n 1)
if [ -z "$octets" ]; then
  echo "device: the DHCP lease carries no option 143 (sztp-redirect)" >&2
  cat "$work/leases" >&2
  exit 1
fi
hex=$(echo "$octets" | tr ':' '\n' | while read -r octet; do printf '%02x' "0x$octet"; done)
echo "device: option 143 from DHCP: $hex"
sztpctl simulate run --serial SN-0001 --dhcp-option-hex "$hex" \
  --idevid-cert "$lab/pki/devices/SN-0001/idevid.pem" \
  --idevid-key "$lab/pki/devices/SN-0001/idevid.key" \
  --trust-anchor "$lab/pki/manufacturer/ca.pem" --server-ca "$lab/pki/tls/ca.pem" \
  --file-server-ca "$lab/pki/tls/ca.pem" \
  --hw-model DPU-LAB-1 --os-name LabOS --os-version 1.0 --work-dir "$work/device"
