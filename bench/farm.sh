#!/usr/bin/env bash
# Benchmark: the build farm's task throughput, on SQLite and on PostgreSQL.
#
#   bash bench/farm.sh [--db sqlite|postgres|both]
#
# For each database: a fresh `kiln serve`, 20 registered builders, 10,000
# queued `noop` tasks; then 20 `kiln builder` processes (one slot each) claim
# and finish them all. Prints tasks/s completed (from the first builder's
# start to the last task CLOSED) and the claim latency p50/p99 measured by
# the builders (every claim call, empty ones included). Target on
# PostgreSQL: >= 500 tasks/s with a claim p99 under 50 ms. It prints figures
# and PASS or FAIL and never fails on timing.
#
# Settings from the environment: BUILDERS (20), TASKS (10000), DBS
# ("sqlite postgres"), PG_SHARED_BUFFERS (256MB), PGBIN, KILN (a kiln
# binary to use instead of building one), PG_EXTRA (more postgres -c
# options), PG_STATS (set, with PG_EXTRA="-c
# shared_preload_libraries=pg_stat_statements": print the claim query's
# plan and the statements by time).
set -euo pipefail

BUILDERS=${BUILDERS:-20}
TASKS=${TASKS:-10000}
DBS=${DBS:-sqlite postgres}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-256MB}
case "${1:-}" in
    --db) DBS=${2:?--db needs sqlite, postgres or both}; [ "$DBS" = both ] && DBS="sqlite postgres" ;;
    '') ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH=farm.sh
# shellcheck source=bench/lib-hub.sh
source "$ROOT/bench/lib-hub.sh"

now() { date +%s.%N; }

# farm_db NAME DB_URL: one database through the benchmark; prints its block
# and writes $WORK/NAME.json.
farm_db() {
    local name=$1 db=$2 admin i t0 t1 closed
    admin=$("$KILN" user create bench --admin --db "$db" 2>/dev/null | tail -n 1)
    start_hub "$db"
    export KILN_HUB=$HUB_URL
    for i in $(seq 1 "$BUILDERS"); do
        KILN_TOKEN=$admin "$KILN" host add "b$i" --arch amd64 >"$WORK/b$i.token" 2>/dev/null
    done
    t0=$(now)
    KILN_TOKEN=$admin "$KILN" task submit noop --count "$TASKS" >/dev/null
    t1=$(now)
    local queued
    queued=$(python3 -c "print(f'{$TASKS / ($t1 - $t0):.0f}')")
    rm -f "$WORK"/stats-*.json
    t0=$(now)
    local pids=()
    for i in $(seq 1 "$BUILDERS"); do
        KILN_TOKEN=$(cat "$WORK/b$i.token") "$KILN" builder --name "b$i" --poll 0.05 --exit-when-idle 1 --stats \
            >"$WORK/stats-$i.json" 2>"$WORK/builder-$i.log" &
        pids+=($!)
    done
    while :; do
        # A light poll (no interpreter start per poll): the builders and the
        # hub share this machine's CPUs with it.
        closed=$(curl -fs "$HUB_URL/api/v1/tasks?state=CLOSED&limit=1" | grep -o '"total":[0-9]*' | cut -d: -f2)
        [ "$closed" -ge "$TASKS" ] && break
        for i in "${!pids[@]}"; do
            kill -0 "${pids[$i]}" 2>/dev/null || [ "$closed" -ge "$TASKS" ] || {
                wait "${pids[$i]}" || { echo "farm.sh: builder $((i + 1)) failed:" >&2; tail -n 5 "$WORK/builder-$((i + 1)).log" >&2; exit 1; }
            }
        done
        sleep 0.1
    done
    t1=$(now)
    wait "${pids[@]}"
    stop_hub
    python3 - "$name" "$TASKS" "$BUILDERS" "$t0" "$t1" "$queued" "$WORK" <<'PY'
import json, sys, glob
name, tasks, builders, t0, t1, queued, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
lat, ran = [], 0
for f in glob.glob(f"{work}/stats-*.json"):
    s = json.load(open(f))
    lat += s["claim_latencies_ms"]
    ran += s["tasks"]
lat.sort()
pct = lambda p: lat[min(int(len(lat) * p), len(lat) - 1)] if lat else float("nan")
r = {"db": name, "tasks_per_s": tasks / (t1 - t0), "seconds": t1 - t0, "claims": len(lat), "ran": ran,
     "claim_p50_ms": pct(0.5), "claim_p99_ms": pct(0.99), "submitted_per_s": float(queued)}
json.dump(r, open(f"{work}/{name}.json", "w"))
print(f"== {name}: {tasks} noop tasks, {builders} builders")
print(f"queued at {r['submitted_per_s']:.0f} tasks/s (one client)")
print(f"completed in {r['seconds']:.1f} s: {r['tasks_per_s']:.0f} tasks/s; {ran} run by the builders")
print(f"claim latency over {len(lat)} claims: p50 {r['claim_p50_ms']:.1f} ms, p99 {r['claim_p99_ms']:.1f} ms")
PY
}

for d in $DBS; do
    case "$d" in
        sqlite) farm_db sqlite "sqlite://$WORK/farm.db" ;;
        postgres)
            if find_pg; then
                start_pg
                farm_db postgres "$DB_URL"
                if [ -n "${PG_STATS:-}" ]; then
                    "$PGBIN/psql" "$DB_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM tasks WHERE state = 'FREE' ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED" -c "SELECT round(total_exec_time::numeric, 0) AS ms, calls, round(mean_exec_time::numeric, 3) AS mean, left(query, 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12" || true
                fi
                stop_pg
            fi
            ;;
        *) echo "farm.sh: unknown database '$d'" >&2; exit 2 ;;
    esac
done
if [ -f "$WORK/postgres.json" ]; then
    python3 - "$WORK/postgres.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["tasks_per_s"] >= 500 and r["claim_p99_ms"] < 50
print(f"target on PostgreSQL: >= 500 tasks/s and claim p99 < 50 ms: {'PASS' if ok else 'FAIL'} "
      f"({r['tasks_per_s']:.0f} tasks/s, p99 {r['claim_p99_ms']:.1f} ms)")
PY
fi
