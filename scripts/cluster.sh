#!/usr/bin/env bash
# A local three-node dohost cluster in one command (`make cluster`): its own etcd and
# PostgreSQL in a temp dir (Debian's etcd-server and postgresql-15), three nodes on
# $PORTS serving the given components. Ctrl-C (or SIGTERM) stops everything it started and
# removes the temp dir.
#
#   scripts/cluster.sh COMPONENT.wasm...
#   DOHOST_BIN   the dohost binary          [target/release/dohost]
#   PORTS        the three nodes' ports     ["8787 8788 8789"]
set -euo pipefail

BIN=${DOHOST_BIN:-target/release/dohost}
PORTS=(${PORTS:-8787 8788 8789})
[ $# -gt 0 ] || { echo "usage: $0 COMPONENT.wasm..." >&2; exit 2; }
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL is not installed (make test-deps)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "etcd is not installed (make test-deps)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

DIR=$(mktemp -d /tmp/dohost-cluster.XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    echo "cluster stopped"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

# PostgreSQL, owned by the postgres user when we are root (initdb refuses root).
mkdir -p "$DIR/pg"
[ "$(id -u)" = 0 ] && chown postgres "$DIR/pg"
as_pg "$PG_BIN/initdb" -D "$DIR/pg" -A trust -U postgres -E UTF8 --locale=C >"$DIR/initdb.log"
PG_PORT=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg/postgres.log" -w start \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" >/dev/null

# etcd, one member.
C=$(free_port); P=$(free_port)
etcd --data-dir "$DIR/etcd" --listen-client-urls "http://127.0.0.1:$C" \
    --advertise-client-urls "http://127.0.0.1:$C" --listen-peer-urls "http://127.0.0.1:$P" \
    --initial-advertise-peer-urls "http://127.0.0.1:$P" \
    --initial-cluster "default=http://127.0.0.1:$P" >"$DIR/etcd.log" 2>&1 &
PIDS+=($!)
until curl -fs "http://127.0.0.1:$C/health" | grep -q true; do sleep 0.1; done

SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
i=0
for port in "${PORTS[@]}"; do
    i=$((i + 1))
    "$BIN" run --listen "127.0.0.1:$port" --data "$DIR/n$i" \
        --storage "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
        --cluster "http://127.0.0.1:$C" --node-id "n$i" --advertise "127.0.0.1:$port" \
        --cluster-secret "$SECRET" --admin off "$@" >"$DIR/n$i.log" 2>&1 &
    PIDS+=($!)
done
for port in "${PORTS[@]}"; do
    until curl -fs "http://127.0.0.1:$port/.well-known/dohost/health" >/dev/null; do sleep 0.1; done
done
echo "cluster ready: nodes on ${PORTS[*]/#/127.0.0.1:} (etcd 127.0.0.1:$C, PostgreSQL 127.0.0.1:$PG_PORT; logs in $DIR)"
echo "try: curl http://127.0.0.1:${PORTS[0]}/counter/demo/increment; Ctrl-C stops everything"
wait -n "${PIDS[@]}" || true
echo "a process of the cluster exited (see its log); stopping" >&2
exit 1
