#!/usr/bin/env bash
# `make demo`: a whole secure bootstrap on one machine. A lab PKI for two devices, vouchers,
# sztp-server on SQLite, the lab fleet applied through the admin API, then a simulated device
# (a real RFC 8572 client) that authenticates with its IDevID, verifies voucher -> owner
# certificate -> signature, downloads and checks its boot image over HTTPS, "reboots", applies
# its configuration and reports progress. Finally the device's status as the server sees it.
set -euo pipefail

bin=${SZTP_BIN:-.venv/bin}
dir=${DEMO_DIR:-build/demo}
device_port=${DEMO_DEVICE_PORT:-18443}
admin_port=${DEMO_ADMIN_PORT:-17080}
files_port=${DEMO_FILES_PORT:-18444}
pki="$dir/pki"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$dir"
mkdir -p "$dir/files"
dir=$(cd "$dir" && pwd)
pki="$dir/pki"

step "Lab PKI: manufacturer CA + MASA, owner CA + owner certificate, server TLS, two IDevIDs"
"$bin/sztpctl" pki init "$pki" --serial SN-0001 --serial SN-0002 --hw-model DPU-LAB-1

step "Ownership vouchers, signed by the lab MASA, pinning the owner CA"
for serial in SN-0001 SN-0002; do
  "$bin/sztpctl" voucher create --serial "$serial" --pinned-cert "$pki/owner/ca.pem" \
    --masa-cert "$pki/manufacturer/masa.pem" --masa-key "$pki/manufacturer/masa.key" \
    --expires-in-days 30 -o "$dir/$serial.vcj"
done

step "Boot image on an HTTPS file server, day-0 configuration, fleet file"
printf 'LabOS 1.2 boot image (demo payload)\n' >"$dir/labos-1.2.img"
cp "$dir/labos-1.2.img" "$dir/files/"
printf 'hostname dpu-sn-0001\nntp server 192.0.2.123\n' >"$dir/day0.cfg"
sed "s|https://files.lab.example/labos-1.2.img|https://127.0.0.1:$files_port/labos-1.2.img|" \
  docs/examples/lab-fleet.yaml >"$dir/fleet.yaml"
"$bin/python" scripts/https_file_server.py "$dir/files" "$files_port" \
  "$pki/tls/server.pem" "$pki/tls/server.key" &
pids+=($!)

step "sztp-server on SQLite: devices on https://127.0.0.1:$device_port, admin API on :$admin_port"
cat >"$dir/server.yaml" <<CONFIG
database_url: sqlite:///$dir/state/sztp.db
device_listeners:
  - {host: 127.0.0.1, port: $device_port, tls_cert: $pki/tls/server.pem, tls_key: $pki/tls/server.key}
admin_listener: {host: 127.0.0.1, port: $admin_port}
admin_token_file: $dir/state/admin-token
log_level: warning
CONFIG
"$bin/sztp-server" run --config "$dir/server.yaml" &
server_pid=$!
pids+=("$server_pid")
export SZTP_SERVER="http://127.0.0.1:$admin_port" SZTP_TOKEN_FILE="$dir/state/admin-token"
export XDG_CONFIG_HOME="$dir/config"
ready=no
for _ in $(seq 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "demo: sztp-server stopped; its message is above (a port in use? another demo?)" >&2
    exit 1
  fi
  if [ -s "$SZTP_TOKEN_FILE" ] && "$bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1])" \
    "$SZTP_SERVER/healthz" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.1
done
if [ "$ready" != yes ]; then
  echo "demo: sztp-server did not answer on $SZTP_SERVER; its messages are above" >&2
  exit 1
fi

step "sztpctl apply -f fleet.yaml (one atomic request)"
"$bin/sztpctl" apply -f "$dir/fleet.yaml"

step "Device SN-0001 boots: DHCP gave it https://127.0.0.1:$device_port"
"$bin/sztpctl" simulate run --serial SN-0001 \
  --idevid-cert "$pki/devices/SN-0001/idevid.pem" --idevid-key "$pki/devices/SN-0001/idevid.key" \
  --trust-anchor "$pki/manufacturer/ca.pem" --server-ca "$pki/tls/ca.pem" \
  --file-server-ca "$pki/tls/ca.pem" --uri "https://127.0.0.1:$device_port" \
  --hw-model DPU-LAB-1 --os-name LabOS --os-version 1.0 --work-dir "$dir/device-SN-0001"

step "What the server saw: sztpctl device status SN-0001"
"$bin/sztpctl" device status SN-0001

step "Fleet overview: sztpctl status"
"$bin/sztpctl" status
printf '\nDemo artifacts are in %s\n' "$dir"
