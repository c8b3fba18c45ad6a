# Shared by bench/hub.sh and bench/farm.sh: a work directory, `kiln serve`
# on a free loopback port, and a throwaway PostgreSQL cluster. Expects
# BENCH (the script's name, for messages) and PG_SHARED_BUFFERS.
# shellcheck shell=bash
# A release kiln (unless KILN names one).
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [ -z "${KILN:-}" ]; then
    cargo build --release --quiet -p kiln-cli
    KILN="$TARGET_DIR/release/kiln"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-${BENCH%.sh}.XXXXXX")
HUB_PID=
PGDIR=
PGCTL=
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
stop_hub() {
    if [ -n "$HUB_PID" ]; then
        kill -TERM "$HUB_PID" 2>/dev/null || true
        wait "$HUB_PID" 2>/dev/null || true
        HUB_PID=
    fi
}
stop_pg() {
    if [ -n "$PGDIR" ] && [ -n "$PGCTL" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
        as_pg "$PGCTL" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}
cleanup() {
    stop_hub
    stop_pg
    [ -z "$PGDIR" ] || rm -rf "$PGDIR"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_hub DB_URL: starts `kiln serve` and waits until it answers.
start_hub() {
    local port
    port=$(free_port)
    HUB_URL="http://127.0.0.1:$port"
    "$KILN" serve --db "$1" --store "file://$WORK/store" --key-file "$WORK/hub.key" --listen "127.0.0.1:$port" \
        >"$WORK/serve.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 1 300); do
        if curl -fs -o /dev/null "$HUB_URL/api/v1/status"; then
            return 0
        fi
        if ! kill -0 "$HUB_PID" 2>/dev/null; then
            echo "$BENCH: kiln serve exited:" >&2
            tail -n 20 "$WORK/serve.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "$BENCH: kiln serve did not answer on $HUB_URL within 60 s" >&2
    tail -n 20 "$WORK/serve.log" >&2
    exit 1
}

# find_pg: sets PGBIN to a directory with initdb, pg_ctl and psql, installing
# PostgreSQL with apt-get when root; returns 1 (after saying why) otherwise.
find_pg() {
    local d
    if [ -n "${PGBIN:-}" ]; then
        if [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pg_ctl" ] || [ ! -x "$PGBIN/psql" ]; then
            echo "$BENCH: PGBIN=$PGBIN has no initdb, pg_ctl and psql; skipping PostgreSQL" >&2
            return 1
        fi
    else
        for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r) "$(pg_config --bindir 2>/dev/null || true)"; do
            if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ]; then PGBIN=$d; break; fi
        done
    fi
    if [ -z "${PGBIN:-}" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${PG_TRIED_APT:-}" ]; then
            PG_TRIED_APT=1
            echo "PostgreSQL not found: installing it with apt-get install -y postgresql" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >"$WORK/apt.log" 2>&1 || {
                echo "$BENCH: apt-get install postgresql failed; skipping PostgreSQL:" >&2
                tail -n 20 "$WORK/apt.log" >&2
                return 1
            }
            find_pg
            return
        fi
        echo "$BENCH: PostgreSQL (initdb, pg_ctl, psql) not found; install it (as root: apt-get install postgresql)" \
            "or set PGBIN; skipping PostgreSQL" >&2
        return 1
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        echo "$BENCH: running as root but there is no \`postgres\` user to run PostgreSQL; skipping PostgreSQL" >&2
        return 1
    fi
}

# start_pg: a throwaway PostgreSQL cluster on a free loopback port; sets DB_URL.
start_pg() {
    local port
    port=$(free_port)
    PGDIR=$(mktemp -d /tmp/kiln-bench-pg.XXXXXX)
    chmod 755 "$PGDIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PGDIR"; fi
    PGCTL="$PGBIN/pg_ctl"
    as_pg "$PGBIN/initdb" -D "$PGDIR/data" --auth=trust -U postgres -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 || {
        echo "$BENCH: initdb failed:" >&2
        tail -n 20 "$WORK/initdb.log" >&2
        exit 1
    }
    as_pg "$PGCTL" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
        -o "-k $PGDIR -h 127.0.0.1 -p $port -c shared_buffers=$PG_SHARED_BUFFERS -c max_connections=100 ${PG_EXTRA:-}" \
        start >/dev/null || {
        echo "$BENCH: PostgreSQL did not start:" >&2
        tail -n 20 "$PGDIR/server.log" >&2
        exit 1
    }
    DB_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

