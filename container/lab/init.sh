#!/bin/sh
# The compose lab's one-shot init (the tools image, as the sztp user, in the `lab` volume):
# a lab PKI whose TLS certificate names sztp-server and files, SN-0001's voucher, the boot
# image and day-0 configuration, the fleet file, and Kea's configuration with the fleet's dhcp
# section merged in, for the prefix the compose network has; and sztp-server's secret key (0600,
# this same user) in the server-key volume. A volume already initialised is left as it is.
set -eu
share=/usr/local/share/sztp-lab
cd /lab
if [ -e /lab/initialised ]; then
  echo "init: /lab is already initialised"
  exit 0
fi
sztpctl pki init pki --serial SN-0001 --hw-model DPU-LAB-1 \
  --server-name sztp-server --server-name files --server-name localhost --force
sztpctl voucher create --serial SN-0001 --pinned-cert pki/owner/ca.pem \
  --masa-cert pki/manufacturer/masa.pem --masa-key pki/manufacturer/masa.key \
  --expires-in-days 30 -o SN-0001.vcj
mkdir -p files
printf 'LabOS 1.2 boot image (compose lab payload)\n' >files/labos-1.2.img
printf 'hostname dpu-sn-0001\nntp server 192.0.2.123\n' >day0.cfg
cp "$share/fleet.yaml" fleet.yaml
sztpctl validate -f fleet.yaml
sztpctl dhcp render -f fleet.yaml --format kea4 >kea-option-data.json
# The lab network's prefix, as the compose engine chose it: Kea serves the top quarter of it,
# above the addresses the engine hands out from the bottom.
prefix=$(ip -o -4 addr show dev eth0 | awk '{print $4; exit}')
python3 - "$share/kea-dhcp4.json" kea-option-data.json "$prefix" kea-dhcp4.json.new <<'PY'
import ipaddress
import json
import sys

base, rendered, prefix, output = sys.argv[1:]
config = json.load(open(base))["Dhcp4"]
config["option-data"] = json.load(open(rendered))["Dhcp4"]["option-data"]
network = ipaddress.ip_interface(prefix).network
first = network.network_address + network.num_addresses * 3 // 4
last = network.broadcast_address - 1
config["subnet4"] = [{"id": 1, "subnet": str(network), "pools": [{"pool": f"{first} - {last}"}]}]
json.dump({"Dhcp4": config}, open(output, "w"), indent=2)
PY
mv kea-dhcp4.json.new kea-dhcp4.json
if [ ! -e /server-key/secret-key ]; then
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >/server-key/secret-key)
fi
touch initialised
echo "init: lab ready in /lab"
