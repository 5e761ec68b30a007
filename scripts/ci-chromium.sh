#!/usr/bin/env bash
# Installs Debian's chromium for test/client/browser.test.ts (issue 5, the client SDK: the client path
# runs in a browser; Debian's chromium package works headless with playwright-core).
# Does nothing when /usr/bin/chromium is already there. Needs root, or sudo without a password.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "== chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "ci-chromium: $CHROMIUM is missing and this user can not install packages (not root, no sudo)" >&2
  exit 1
fi

echo "== installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

if [ ! -x "$CHROMIUM" ]; then
  echo "ci-chromium: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "== chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
