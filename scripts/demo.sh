#!/usr/bin/env bash
# `make demo`: a lab PKI for two devices, signed bootstrapping data for one of them, and the
# device-side verification of it (and its refusal by the other device).
set -euo pipefail

sztpctl=${SZTPCTL:-sztpctl}
dir=${DEMO_DIR:-build/demo}
pki="$dir/pki"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$dir"
mkdir -p "$dir"

step "Lab PKI: manufacturer CA + MASA, owner CA + owner certificate, server TLS, two IDevIDs"
"$sztpctl" pki init "$pki" --serial SN-0001 --serial SN-0002 --hw-model DPU-LAB-1
find "$pki" -type f -printf '%m %p\n' | sort -k2

step "A boot image and a day-0 configuration for device SN-0001"
printf 'LabOS 1.2 boot image (demo payload)\n' >"$dir/labos-1.2.img"
printf 'hostname dpu-sn-0001\nntp server 192.0.2.123\n' >"$dir/day0.cfg"

step "Ownership voucher for SN-0001, signed by the lab MASA, pinning the owner CA"
"$sztpctl" voucher create --serial SN-0001 --pinned-cert "$pki/owner/ca.pem" \
  --masa-cert "$pki/manufacturer/masa.pem" --masa-key "$pki/manufacturer/masa.key" \
  --expires-in-days 30 -o "$dir/SN-0001.vcj"
"$sztpctl" voucher show "$dir/SN-0001.vcj"

step "Signed bootstrapping data: onboarding information signed with the owner key"
"$sztpctl" bootstrap-data sign --owner-cert "$pki/owner/owner.pem" --owner-key "$pki/owner/owner.key" \
  --voucher "$dir/SN-0001.vcj" --os-name LabOS --os-version 1.2 \
  --image-uri https://files.lab.example/labos-1.2.img --image-file "$dir/labos-1.2.img" \
  --configuration "$dir/day0.cfg" --configuration-handling merge -o "$dir/SN-0001.json"
cat "$dir/SN-0001.json"
echo

step "Device SN-0001 verifies it: voucher -> owner certificate -> signature"
"$sztpctl" bootstrap-data verify "$dir/SN-0001.json" --serial SN-0001 \
  --trust-anchor "$pki/manufacturer/ca.pem"

step "Device SN-0002 refuses the same data (the voucher names another serial number)"
if "$sztpctl" bootstrap-data verify "$dir/SN-0001.json" --serial SN-0002 \
  --trust-anchor "$pki/manufacturer/ca.pem" >/dev/null; then
  echo "demo failed: SN-0002 accepted data meant for SN-0001" >&2
  exit 1
fi
printf '\nDemo artifacts are in %s\n' "$dir"
