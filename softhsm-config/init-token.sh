#!/usr/bin/env bash
# Creates the SoftHSM2 token of a Backup Key Vault data folder from the command line, the same
# way host/tokens/softhsm.ts does in-process (PKCS#11 v2.40 C_InitToken + C_InitPIN through
# softhsm2-util): writes <data>/softhsm/softhsm2.conf from softhsm2.conf.template, and, unless a
# token with the label already exists, initializes one in a free slot.
#
#   softhsm-config/init-token.sh <data folder> [label so-pin user-pin]
#
# Without label and PINs it reads them from <data>/token.json (created by the vault at first
# start, see host/tokens/config.ts), or creates that file with fresh random PINs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?usage: init-token.sh <data folder> [label so-pin user-pin]}"
mkdir -p "$data"
data="$(cd "$data" && pwd)"
conf_dir="$data/softhsm"
mkdir -p "$conf_dir/tokens"
chmod 700 "$conf_dir"
if [ ! -f "$conf_dir/softhsm2.conf" ]; then
  sed "s|@TOKENDIR@|$conf_dir/tokens|g" "$here/softhsm2.conf.template" > "$conf_dir/softhsm2.conf.tmp"
  mv "$conf_dir/softhsm2.conf.tmp" "$conf_dir/softhsm2.conf"
fi
export SOFTHSM2_CONF="$conf_dir/softhsm2.conf"

if [ $# -ge 4 ]; then
  label="$2"; so_pin="$3"; user_pin="$4"
else
  if [ ! -f "$data/token.json" ]; then
    label="bkv-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    so_pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    user_pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    umask 077
    printf '{\n  "format": "backup-key-vault token",\n  "version": 1,\n  "kind": "softhsm",\n  "label": "%s",\n  "soPin": "%s",\n  "userPin": "%s"\n}\n' \
      "$label" "$so_pin" "$user_pin" > "$data/token.json.tmp"
    mv "$data/token.json.tmp" "$data/token.json"
  fi
  read_field() { sed -n "s/^ *\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$data/token.json"; }
  [ "$(read_field kind)" = "softhsm" ] || { echo "init-token.sh: $data/token.json is not for the softhsm token" >&2; exit 1; }
  label="$(read_field label)"; so_pin="$(read_field soPin)"; user_pin="$(read_field userPin)"
fi

if softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *\$"; then
  echo "token '$label' already initialized in $conf_dir/tokens"
else
  softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$user_pin" >/dev/null
  echo "token '$label' initialized in $conf_dir/tokens"
fi
