#!/usr/bin/env bash
# Installs what the p11-kit token server tests need on a Debian machine (test/hsm/tokens/p11kit.test.ts,
# test/host/cli/token-serve.test.ts): p11-kit-modules (the client module
# /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so), opensc (pkcs11-tool) and gnutls-bin (p11tool),
# with apt-get, only when they are missing. Run as root or with sudo available; .ci/run calls it.
set -euo pipefail
client=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
need=()
[ -e "$client" ] || need+=(p11-kit-modules)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v p11tool >/dev/null || need+=(gnutls-bin)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
echo "== p11-kit-client.so from p11-kit-modules $(dpkg-query -W -f '${Version}' p11-kit-modules 2>/dev/null || echo '?'), $(p11tool --version 2>&1 | head -1)"
