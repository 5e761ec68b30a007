#!/usr/bin/env bash
# Installs what the SoftHSM2 token tests need on a Debian machine: softhsm2 (the PKCS#11 module
# /usr/lib/softhsm/libsofthsm2.so and softhsm2-util) and opensc (pkcs11-tool), with apt-get,
# only when they are missing. Run as root or with sudo available; .ci/run calls it before npm ci.
set -euo pipefail
need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
if [ ${#need[@]} -eq 0 ]; then
  echo "== softhsm2 and opensc present ($(softhsm2-util --version))"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
echo "== softhsm2 $(softhsm2-util --version)"
