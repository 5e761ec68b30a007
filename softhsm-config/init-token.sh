#!/usr/bin/env bash
# Creates the SoftHSM2 token of a Backup Key Vault data folder from the command line, the same
# way hsm/tokens/softhsm.ts does in-process (PKCS#11 v2.40 C_InitToken + C_InitPIN through
# softhsm2-util): writes <data>/softhsm/softhsm2.conf from softhsm2.conf.template, and, unless a
# token with the label already exists, initializes one in a free slot.
#
#   softhsm-config/init-token.sh <data folder> [label so-pin user-pin]
#
# Without label and PINs it reads the label from <data>/token.json and the PINs from the
# development-mode operator folder, $BKV_OPERATOR_DIR or by default <data>.operator (file
# token-<label>.json), as the vault does (hsm/tokens/token-pins.ts); for a new data folder it
# creates both: token.json with the label only, and the PINs (128 random bits each) in the
# operator folder (mode 0700, file 0600). PINs never go into the data folder. An older
# token.json that still holds the PINs is read as it is; the vault moves them out at its next
# start. With a pin file of your own (bkv serve --token-pin-file), give label and PINs here.
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
  operator="${BKV_OPERATOR_DIR:-$data.operator}"
  case "$(cd "$(dirname "$operator")" 2>/dev/null && pwd)/$(basename "$operator")/" in
    "$data"/*) echo "init-token.sh: the operator folder $operator lies inside the data folder $data: keep it outside" >&2; exit 1 ;;
  esac
  read_field() { sed -n "s/^ *\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2"; }
  if [ ! -f "$data/token.json" ]; then
    label="bkv-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    so_pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    user_pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    umask 077
    mkdir -p "$operator"
    chmod 700 "$operator"
    printf '{\n  "format": "backup-key-vault token pins",\n  "version": 1,\n  "label": "%s",\n  "soPin": "%s",\n  "userPin": "%s"\n}\n' \
      "$label" "$so_pin" "$user_pin" > "$operator/token-$label.json.tmp"
    mv "$operator/token-$label.json.tmp" "$operator/token-$label.json"
    printf '{\n  "format": "backup-key-vault token",\n  "version": 2,\n  "kind": "softhsm",\n  "label": "%s"\n}\n' "$label" > "$data/token.json.tmp"
    mv "$data/token.json.tmp" "$data/token.json"
  fi
  [ "$(read_field kind "$data/token.json")" = "softhsm" ] || { echo "init-token.sh: $data/token.json is not for the softhsm token" >&2; exit 1; }
  label="$(read_field label "$data/token.json")"
  so_pin="$(read_field soPin "$data/token.json")"; user_pin="$(read_field userPin "$data/token.json")"
  if [ -z "$user_pin" ]; then
    pins="$operator/token-$label.json"
    [ -f "$pins" ] || { echo "init-token.sh: no PINs for token $label in $operator (give label and PINs, or BKV_OPERATOR_DIR)" >&2; exit 1; }
    so_pin="$(read_field soPin "$pins")"; user_pin="$(read_field userPin "$pins")"
  fi
fi

if softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *\$"; then
  echo "token '$label' already initialized in $conf_dir/tokens"
else
  softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$user_pin" >/dev/null
  echo "token '$label' initialized in $conf_dir/tokens"
fi
