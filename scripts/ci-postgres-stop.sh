#!/usr/bin/env bash
# Stops a cluster started by scripts/ci-postgres.sh and removes its directory:
#   scripts/ci-postgres-stop.sh DIR        (DIR defaults to $BKV_PG_DIR)
# Refuses a directory that ci-postgres.sh did not create. Safe to call twice (trap-friendly).
set -euo pipefail
DIR="${1:-${BKV_PG_DIR:-}}"
[ -n "$DIR" ] || { echo "usage: $0 DIR (or set BKV_PG_DIR)" >&2; exit 2; }
[ -d "$DIR" ] || exit 0
[ -f "$DIR/bkv-pg-cluster" ] || { echo "ci-postgres-stop: $DIR was not made by ci-postgres.sh; not touching it" >&2; exit 1; }
BINDIR=
OWNER=
if [ -f "$DIR/stop.env" ]; then
  # shellcheck disable=SC1091
  . "$DIR/stop.env"
fi
RUN=()
if [ "$(id -u)" -eq 0 ] && [ -n "$OWNER" ] && [ "$OWNER" != root ]; then
  if command -v runuser >/dev/null 2>&1; then RUN=(runuser -u "$OWNER" --)
  else RUN=(su -s /bin/sh "$OWNER" -c '"$0" "$@"'); fi
fi
if [ -n "$BINDIR" ] && [ -f "$DIR/data/postmaster.pid" ]; then
  "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
    "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
fi
rm -rf "$DIR"
