#!/usr/bin/env bash
# Installs what the SoftHSM2 token tests need on a Debian machine: softhsm2 (the PKCS#11 module
# /usr/lib/softhsm/libsofthsm2.so and softhsm2-util) and opensc (pkcs11-tool); and what the p11-kit
# token server tests need (test/hsm/tokens/p11kit.test.ts): p11-kit-modules (p11-kit-client.so)
# and gnutls-bin (p11tool); and p11-kit (`p11-kit server`, test/hsm/tokens/p11kit-carries.test.ts).
# With apt-get, only when they are missing. Run as root or with sudo available; .ci/run calls it.
set -euo pipefail
need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
[ -e /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so ] || need+=(p11-kit-modules)
command -v p11tool >/dev/null || need+=(gnutls-bin)
command -v p11-kit >/dev/null || need+=(p11-kit)
if [ ${#need[@]} -eq 0 ]; then
  echo "== softhsm2, opensc, p11-kit-modules, p11-kit and gnutls-bin present ($(softhsm2-util --version))"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
echo "== softhsm2 $(softhsm2-util --version)"
