#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the storage tests and prints, on stdout only,
#   export BKV_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres
#   export BKV_PG_DIR=/tmp/bkv-pg.XXXXXX
# so that a caller can `pg_env="$(scripts/ci-postgres.sh)"; eval "$pg_env"` and later stop it
# with `scripts/ci-postgres-stop.sh "$BKV_PG_DIR"`. Everything else goes to stderr.
#
# - Uses pg_ctl/initdb from PATH or /usr/lib/postgresql/*/bin (highest version); when there are
#   none, installs Debian's `postgresql` with apt-get (root, or sudo), without a default cluster.
# - The cluster lives in one temporary directory (data, log, unix socket): trust authentication
#   for loopback only, listens on 127.0.0.1 on a free port, fsync and synchronous_commit on.
#   Nothing is registered globally (no service, no pg_ctlcluster entry).
# - Run as root, the server runs as the `postgres` user (or `nobody` when there is none):
#   PostgreSQL refuses to run as root.
set -euo pipefail

log() { printf 'ci-postgres: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

usable() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_bindir() {
  local d
  # PATH first (resolving symlinks such as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb)
  if command -v initdb >/dev/null 2>&1; then
    d="$(dirname "$(readlink -f "$(command -v initdb)")")"
    if usable "$d"; then echo "$d"; return 0; fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
    if usable "$d"; then echo "$d"; return 0; fi
  done
  return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL binaries and no apt-get to install them"
  log "installing Debian's postgresql package"
  # No default cluster on port 5432: this script makes its own, in a temporary directory.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/bkv-no-main.conf >/dev/null
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  BINDIR="$(find_bindir || true)"
  [ -n "$BINDIR" ] || die "postgresql installed, but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
fi

# Who runs the server.
RUN=()
OWNER="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then OWNER=postgres; else OWNER=nobody; fi
  if command -v runuser >/dev/null 2>&1; then RUN=(runuser -u "$OWNER" --)
  else RUN=(su -s /bin/sh "$OWNER" -c '"$0" "$@"'); fi
fi

# A directory the server's user can reach (root's TMPDIR may not be).
BASE="${BKV_PG_TMP:-/tmp}"
[ "$(id -u)" -eq 0 ] || BASE="${BKV_PG_TMP:-${TMPDIR:-/tmp}}"
DIR="$(mktemp -d "$BASE/bkv-pg.XXXXXX")"
touch "$DIR/bkv-pg-cluster" # marks the directory as ours for ci-postgres-stop.sh
chmod 700 "$DIR"
[ "$OWNER" = "$(id -un)" ] || chown "$OWNER" "$DIR"

cleanup_on_failure() {
  "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap 'rc=$?; if [ $rc -ne 0 ]; then [ -f "$DIR/server.log" ] && tail -n 30 "$DIR/server.log" >&2; cleanup_on_failure; fi' EXIT

log "$("$BINDIR/postgres" --version) from $BINDIR, cluster in $DIR, server user $OWNER"
"${RUN[@]}" "$BINDIR/initdb" -D "$DIR/data" -U postgres -E UTF8 --locale=C \
  --auth-local=trust --auth-host=trust >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

free_port() {
  node -e "const s=require('node:net').createServer();s.listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})"
}

started=
for attempt in 1 2 3 4 5; do
  PORT="$(free_port)"
  # Written as root into a directory owned by the server user: keep the file theirs.
  cat >"$DIR/bkv.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
CONF
  [ "$OWNER" = "$(id -un)" ] || chown "$OWNER" "$DIR/bkv.conf"
  grep -q "^include = '$DIR/bkv.conf'" "$DIR/data/postgresql.conf" ||
    echo "include = '$DIR/bkv.conf'" | "${RUN[@]}" tee -a "$DIR/data/postgresql.conf" >/dev/null
  if "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null 2>&1; then
    started=1
    break
  fi
  log "start on port $PORT failed (attempt $attempt)"
done
[ -n "$started" ] || die "could not start the server; log: $DIR/server.log"

# pg_ctl -w waited for the postmaster; also wait until it accepts TCP connections.
if [ -x "$BINDIR/pg_isready" ]; then
  ready=
  for _ in $(seq 1 100); do
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [ -n "$ready" ] || die "server not ready on 127.0.0.1:$PORT"
fi

cat >"$DIR/stop.env" <<ENVF
BINDIR='$BINDIR'
OWNER='$OWNER'
ENVF
log "ready on 127.0.0.1:$PORT (stop with: scripts/ci-postgres-stop.sh $DIR)"
echo "export BKV_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
echo "export BKV_PG_DIR=$DIR"
