#!/usr/bin/env bash
# Benchmark: the hub (`kiln serve`) on a large generated history, on SQLite
# and on PostgreSQL.
#
#   bench/hub.sh [--db sqlite|postgres|both]
#
# For each database: a fresh hub database filled by bench/gen_hub.py with
# 2,000 tags (families with inheritance chains up to depth 12, fan-in, 2-3
# parents on some tags), 500 packages, 100,000 builds and 300,000 tag
# listings (10% of them later untagged); then `kiln serve` on it, and
#   - p50/p99 of `list-tagged --inherit --latest` on the deepest tag
#     (GET /api/v1/tags/TAG/builds?inherit=true&latest=true), sequential;
#   - the throughput (req/s) of read and write endpoints under 32 concurrent
#     clients (crates/kiln-hub/examples/hubload.rs), one endpoint at a time.
#   - Koji's protocol on the same call: XML-RPC `listTagged(deepest,
#     inherit=True, latest=True)` at POST /kojihub against the REST call,
#     interleaved, p50 of each and their ratio (target: at most 1.3; both
#     timed to the last byte of the answer, neither parsed); and the wall
#     time of the koji client's `list-tagged --inherit --latest` against
#     `kiln list-tagged --inherit --latest` on the deepest tag (the koji
#     client from target/test-venv, or a venv this script makes under
#     target/bench-venv).
# Target: the deep list-tagged p50 under 50 ms on PostgreSQL. The script
# prints figures and PASS or FAIL, and exits 0 either way; it exits non-zero
# only when something breaks (build, generation, the hub, PostgreSQL).
#
# Settings from the environment: TAGS (2000), BUILDS (100000), LISTINGS
# (300000), PACKAGES (500), DEPTH (12), REVOKED_PCT (10), SEED (1),
# CLIENTS (32), DURATION (10 s per endpoint), WARMUP (2 s), LATENCY_REQUESTS
# (200), DBS ("sqlite postgres"; --db wins), SQLITE_ANALYZE (0: SQLite gets
# no ANALYZE, as the hub never runs one; PostgreSQL is always analyzed, as
# autovacuum would), PG_SHARED_BUFFERS (256MB), PGBIN (PostgreSQL's bin
# directory; default the newest /usr/lib/postgresql/*/bin), KILN (a kiln
# binary to use instead of building one). PostgreSQL runs as the `postgres`
# user when the script runs as root; when it is missing, root gets it with
# apt-get, others get told and only SQLite runs.
set -euo pipefail

TAGS=${TAGS:-2000}
BUILDS=${BUILDS:-100000}
LISTINGS=${LISTINGS:-300000}
PACKAGES=${PACKAGES:-500}
DEPTH=${DEPTH:-12}
REVOKED_PCT=${REVOKED_PCT:-10}
SEED=${SEED:-1}
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
LATENCY_REQUESTS=${LATENCY_REQUESTS:-200}
DBS=${DBS:-sqlite postgres}
SQLITE_ANALYZE=${SQLITE_ANALYZE:-0}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-256MB}
TARGET_MS=50

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --db)
            case "${2:-}" in
                sqlite | postgres) DBS=$2 ;;
                both) DBS="sqlite postgres" ;;
                *) echo "hub.sh: --db takes sqlite, postgres or both" >&2; exit 2 ;;
            esac
            shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "hub.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in TAGS BUILDS LISTINGS PACKAGES DEPTH REVOKED_PCT SEED CLIENTS DURATION WARMUP LATENCY_REQUESTS SQLITE_ANALYZE; do
    case "${!v}" in
        '' | *[!0-9]*) echo "hub.sh: $v must be a whole number, got '${!v}'" >&2; exit 2 ;;
    esac
done
for d in $DBS; do
    case "$d" in
        sqlite | postgres) ;;
        *) echo "hub.sh: DBS: unknown database '$d' (sqlite, postgres)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BENCH=hub.sh
# shellcheck source=bench/lib-hub.sh
source "$ROOT/bench/lib-hub.sh"

cargo build --release --quiet -p kiln-hub --example hubload
HUBLOAD="$TARGET_DIR/release/examples/hubload"
[ -x "$KILN" ] || { echo "hub.sh: no kiln binary at $KILN" >&2; exit 1; }
[ -x "$HUBLOAD" ] || { echo "hub.sh: no hubload at $HUBLOAD" >&2; exit 1; }
"$KILN" serve --help >/dev/null 2>&1 || { echo "hub.sh: $KILN has no \`serve\` command" >&2; exit 1; }

# The koji client (koji 1.36.1 from PyPI): the test venv's, or one made
# here; without its optional Kerberos dependency.
KOJI_BIN=
koji_client() {
    local venv
    for venv in "$ROOT/target/test-venv" "$ROOT/target/bench-venv"; do
        if [ -x "$venv/bin/koji" ] && "$venv/bin/python" -c 'import koji, koji_cli' 2>/dev/null; then
            KOJI_BIN=$venv/bin/koji
            return 0
        fi
    done
    venv=$ROOT/target/bench-venv
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --no-deps 'koji==1.36.1' \
        && "$venv/bin/pip" install --quiet requests python-dateutil six defusedxml || {
        echo "hub.sh: cannot install the koji client (pip install koji==1.36.1)" >&2
        exit 1
    }
    KOJI_BIN=$venv/bin/koji
}

# koji_compare OUT DEEP_PATH: Koji's protocol against REST on the deepest
# tag's list-tagged; figures to OUT/koji.json.
koji_compare() {
    local out=$1 deep=$2 tag
    tag=${deep#/api/v1/tags/}
    tag=${tag%%/*}
    [ -n "$KOJI_BIN" ] || koji_client
    python3 - "$HUB_URL" "$deep" "$tag" "$LATENCY_REQUESTS" >"$out/koji-calls.json" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse
base, path, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port)
body = ("<?xml version='1.0'?><methodCall><methodName>listTagged</methodName><params>"
        "<param><value><string>%s</string></value></param><param><value><struct>"
        "<member><name>inherit</name><value><boolean>1</boolean></value></member>"
        "<member><name>latest</name><value><boolean>1</boolean></value></member>"
        "<member><name>__starstar</name><value><boolean>1</boolean></value></member>"
        "</struct></value></param></params></methodCall>" % tag).encode()
def rest():
    c.request("GET", path)
    r = c.getresponse(); b = r.read()
    assert r.status == 200, r.status
    return b
def koji():
    c.request("POST", "/kojihub", body=body, headers={"Content-Type": "text/xml"})
    r = c.getresponse(); b = r.read()
    assert r.status == 200 and b"<fault>" not in b, b[:300]
    return b
rest_n = len(json.loads(rest())); koji_n = koji().count(b"<name>nvr</name>")
assert rest_n == koji_n, (rest_n, koji_n)
times = {"rest": [], "koji": []}
for i in range(10):
    rest(); koji()
for i in range(n):
    for name, f in (("rest", rest), ("koji", koji)) if i % 2 else (("koji", koji), ("rest", rest)):
        t = time.perf_counter(); f(); times[name].append((time.perf_counter() - t) * 1000)
p50 = {k: statistics.median(v) for k, v in times.items()}
print(json.dumps({"builds": rest_n, "requests": n, "rest_p50_ms": p50["rest"], "koji_p50_ms": p50["koji"],
                  "ratio": p50["koji"] / p50["rest"]}))
PY
    printf '[kiln]\nserver = %s/kojihub\nweburl = %s/\ntopurl = %s/\nauthtype = password\n' \
        "$HUB_URL" "$HUB_URL" "$HUB_URL" >"$out/koji.conf"
    python3 - "$KOJI_BIN" "$out/koji.conf" "$KILN" "$HUB_URL" "$tag" >"$out/koji-cli.json" <<'PY'
import json, os, statistics, subprocess, sys, time
koji, conf, kiln, hub, tag = sys.argv[1:6]
env = dict(os.environ, KILN_HUB=hub)
env.pop("KILN_TOKEN", None)
cmds = {"koji": [koji, "-c", conf, "-p", "kiln", "--noauth", "list-tagged", "--inherit", "--latest", tag],
        "kiln": [kiln, "list-tagged", "--inherit", "--latest", tag]}
lines, walls = {}, {k: [] for k in cmds}
for i in range(7):
    for name, cmd in cmds.items():
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        walls[name].append(time.perf_counter() - t)
        lines[name] = len(out.splitlines())
print(json.dumps({k: {"wall_s": statistics.median(v), "lines": lines[k]} for k, v in walls.items()}))
PY
}

# bench_db NAME DB_URL: one database through the whole benchmark; the
# figures go to $WORK/NAME.json.
bench_db() {
    local name=$1 url=$2
    local out=$WORK/$name t0 t1 token gen_args f deep
    mkdir -p "$out"
    t0=$EPOCHREALTIME
    token=$("$KILN" user create bench --admin --db "$url" 2>"$out/user.log" | tail -n 1) || {
        echo "hub.sh: kiln user create failed:" >&2
        cat "$out/user.log" >&2
        exit 1
    }
    [ -n "$token" ] || { echo "hub.sh: kiln user create printed no token" >&2; exit 1; }
    gen_args=(--requests-dir "$out/req" --tags "$TAGS" --builds "$BUILDS" --listings "$LISTINGS"
        --packages "$PACKAGES" --depth "$DEPTH" --revoked-pct "$REVOKED_PCT" --seed "$SEED")
    if [ "$name" = sqlite ]; then
        gen_args+=(--sqlite "${url#sqlite://}")
        [ "$SQLITE_ANALYZE" = 0 ] || gen_args+=(--analyze)
    else
        gen_args+=(--pg "$url" --psql "$PGBIN/psql")
    fi
    python3 "$ROOT/bench/gen_hub.py" "${gen_args[@]}" >"$out/gen.json" 2>"$out/gen.log" || {
        echo "hub.sh: gen_hub.py failed:" >&2
        tail -n 20 "$out/gen.log" >&2
        exit 1
    }
    t1=$EPOCHREALTIME
    python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$t1" >"$out/setup_s"

    start_hub "$url"
    deep=$(head -n 1 "$out/req/deep.tsv" | cut -f 3)
    curl -fsS "$HUB_URL$deep" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' >"$out/deep_count"
    "$HUBLOAD" --base "$HUB_URL" --concurrency 1 --requests 10 "$out/req/deep.tsv" >/dev/null
    "$HUBLOAD" --base "$HUB_URL" --concurrency 1 --requests "$LATENCY_REQUESTS" "$out/req/deep.tsv" >"$out/latency.json"
    koji_compare "$out" "$deep"
    for f in tag-info build-info list-tagged list-tagged-latest deep; do
        "$HUBLOAD" --base "$HUB_URL" --concurrency "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
            "$out/req/$f.tsv" >"$out/read-$f.json"
    done
    for f in tag-build package-add; do
        "$HUBLOAD" --base "$HUB_URL" --token "$token" --concurrency "$CLIENTS" --duration "$DURATION" \
            --warmup "$WARMUP" "$out/req/$f.tsv" >"$out/write-$f.json"
    done
    stop_hub
    python3 - "$out" "$name" "$DB_VERSION" <<'EOF'
import glob, json, os, sys
out, name, version = sys.argv[1:4]
rd = lambda f: open(os.path.join(out, f)).read().strip()
g = json.loads(rd("gen.json"))
lat = json.loads(rd("latency.json"))
runs = {}
for p in sorted(glob.glob(os.path.join(out, "read-*.json"))) + sorted(glob.glob(os.path.join(out, "write-*.json"))):
    kind, _, ep = os.path.basename(p)[:-5].partition("-")
    runs[ep] = dict(json.load(open(p)), kind=kind)
res = {"db": name, "version": version, "gen": g, "setup_s": float(rd("setup_s")),
       "deep_count": int(rd("deep_count")), "latency": lat, "runs": runs,
       "koji": dict(json.loads(rd("koji-calls.json")), cli=json.loads(rd("koji-cli.json")))}
json.dump(res, open(os.path.join(out, "..", name + ".json"), "w"))
EOF
    python3 "$WORK/report.py" db "$WORK/$name.json" "$CLIENTS" "$DURATION" "$TARGET_MS"
}

cat >"$WORK/report.py" <<'EOF'
import json, sys

KOJI_RATIO = 1.3
LABELS = {
    "tag-info": "GET /tags/{tag}",
    "build-info": "GET /builds/{nvr}",
    "list-tagged": "GET /tags/{tag}/builds",
    "list-tagged-latest": "GET /tags/{tag}/builds?inherit&latest",
    "deep": "GET /tags/{deepest}/builds?inherit&latest",
    "tag-build": "POST /tags/{tag}/builds (tag-build, force)",
    "package-add": "POST /tags/{tag}/packages",
}
ORDER = ["tag-info", "build-info", "list-tagged", "list-tagged-latest", "deep", "tag-build", "package-add"]


def db_report(path, clients, duration, target):
    r = json.load(open(path))
    g, lat = r["gen"], r["latency"]
    print(f"== {r['db']} ({r['version']})")
    print(f"data:      {g['tags']} tags in {g['families']} families, {g['links']} inheritance links "
          f"(walks: mean {g['mean_walk']}, max {g['max_walk']} tags), {g['packages']} packages "
          f"({g['package_entries']} list entries), {g['builds']} builds, {g['listings']} listings "
          f"({g['active_listings']} active), {g['events']} events")
    print(f"generated: {r['setup_s']:.1f} s (generate {g['gen_s']:.1f} s, load {g['load_s']:.1f} s, "
          f"analyze {g['analyze_s']:.1f} s, with the bootstrap user)")
    print(f"deepest:   {g['deep_tag']}: depth {g['deep_depth']}, {g['deep_walk']} tags in its walk, "
          f"{g['deep_listings_scanned']} active listings in them, {r['deep_count']} builds listed")
    print(f"deep list-tagged --inherit --latest, {lat['requests']} sequential requests: "
          f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms"
          f"{'' if lat['errors'] == 0 else ', ' + str(lat['errors']) + ' ERRORS'}")
    k = r["koji"]
    print(f"Koji protocol, deep listTagged(inherit, latest), {k['requests']} interleaved requests each: "
          f"XML-RPC p50 {k['koji_p50_ms']:.1f} ms, REST p50 {k['rest_p50_ms']:.1f} ms, ratio {k['ratio']:.2f} "
          f"(target <= {KOJI_RATIO}: {'PASS' if k['ratio'] <= KOJI_RATIO else 'FAIL'})")
    c = k["cli"]
    print(f"koji list-tagged --inherit --latest (koji 1.36.1 client): {c['koji']['wall_s']:.2f} s wall, "
          f"kiln list-tagged: {c['kiln']['wall_s']:.2f} s wall ({c['koji']['wall_s'] / c['kiln']['wall_s']:.2f}x), "
          f"median of 7")
    print(f"{clients} clients, {duration} s per endpoint:")
    print(f"  {'':6} {'endpoint':46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for ep in ORDER:
        x = r["runs"].get(ep)
        if x is None:
            continue
        print(f"  {x['kind']:6} {LABELS[ep]:46} {x['req_s']:8.1f} {x['p50_ms']:8.1f} {x['p99_ms']:8.1f} {x['errors']:7}")
    if r["db"] == "postgres":
        verdict = "PASS" if lat["p50_ms"] < target else "FAIL"
        print(f"deep list-tagged p50 {lat['p50_ms']:.1f} ms (target < {target:.0f} ms: {verdict})")
    print(flush=True)


def summary(paths, target):
    rs = [json.load(open(p)) for p in paths]
    print("== summary")
    head = f"{'':52}" + "".join(f"{r['db']:>12}" for r in rs)
    print(head)
    print(f"{'deep list-tagged p50 (ms)':52}" + "".join(f"{r['latency']['p50_ms']:12.1f}" for r in rs))
    print(f"{'deep list-tagged p99 (ms)':52}" + "".join(f"{r['latency']['p99_ms']:12.1f}" for r in rs))
    print(f"{'deep listTagged XML-RPC / REST p50':52}" + "".join(f"{r['koji']['ratio']:12.2f}" for r in rs))
    print(f"{'koji list-tagged --inherit --latest wall (s)':52}" + "".join(f"{r['koji']['cli']['koji']['wall_s']:12.2f}" for r in rs))
    print(f"{'kiln list-tagged --inherit --latest wall (s)':52}" + "".join(f"{r['koji']['cli']['kiln']['wall_s']:12.2f}" for r in rs))
    for ep in ORDER:
        if all(ep in r["runs"] for r in rs):
            print(f"{LABELS[ep] + ' (req/s)':52}" + "".join(f"{r['runs'][ep]['req_s']:12.1f}" for r in rs))
    pg = [r for r in rs if r["db"] == "postgres"]
    if pg:
        p50 = pg[0]["latency"]["p50_ms"]
        print(f"target: deep list-tagged p50 under {target:.0f} ms on PostgreSQL: "
              f"{'PASS' if p50 < target else 'FAIL'} ({p50:.1f} ms)")
    else:
        print(f"target: deep list-tagged p50 under {target:.0f} ms on PostgreSQL: not measured (no PostgreSQL run)")


if sys.argv[1] == "db":
    db_report(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
else:
    summary(sys.argv[3:], float(sys.argv[2]))
EOF

CPU=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//' || true)
echo "== kiln hub benchmark"
echo "machine:  $(nproc) CPUs, ${CPU:-unknown CPU}, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kiln:     $("$KILN" --version 2>/dev/null || echo '?') ($KILN)"
echo "data:     TAGS=$TAGS BUILDS=$BUILDS LISTINGS=$LISTINGS PACKAGES=$PACKAGES DEPTH=$DEPTH REVOKED_PCT=$REVOKED_PCT SEED=$SEED"
echo "load:     CLIENTS=$CLIENTS DURATION=${DURATION}s WARMUP=${WARMUP}s LATENCY_REQUESTS=$LATENCY_REQUESTS (hubload on one thread, same machine)"
echo

DONE=()
for d in $DBS; do
    if [ "$d" = sqlite ]; then
        DB_VERSION="SQLite, the hub's settings (WAL, synchronous=NORMAL, 8 readers, 1 writer)"
        if [ "$SQLITE_ANALYZE" = 0 ]; then DB_VERSION+=", not analyzed"; else DB_VERSION+=", analyzed"; fi
        bench_db sqlite "sqlite://$WORK/sqlite.db"
        DONE+=("$WORK/sqlite.json")
    else
        find_pg || continue
        start_pg
        DB_VERSION="$("$PGBIN/postgres" --version), shared_buffers $PG_SHARED_BUFFERS"
        bench_db postgres "$DB_URL"
        stop_pg
        DONE+=("$WORK/postgres.json")
    fi
done

[ ${#DONE[@]} -gt 0 ] || { echo "hub.sh: no database was benchmarked" >&2; exit 1; }
python3 "$WORK/report.py" summary "$TARGET_MS" "${DONE[@]}"
