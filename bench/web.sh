#!/usr/bin/env bash
# Benchmark: the web UI's server render on bench/hub.sh's data (SQLite).
#
#   bench/web.sh
#
# A fresh hub database filled by bench/gen_hub.py (2,000 tags, 100,000
# builds, 300,000 listings by default; the same settings as bench/hub.sh),
# then `kiln serve` on it, and for each page the p50 and p99 of REQUESTS
# sequential renders, next to the API's JSON of the same data (the
# baseline, in the same run): the ratio is what rendering HTML costs over
# answering JSON. Target: every page's p50 under 50 ms. The script prints
# the figures and PASS or FAIL and exits 0 either way; non-zero only when
# something breaks.
#
# Settings from the environment: TAGS, BUILDS, LISTINGS, PACKAGES, DEPTH,
# REVOKED_PCT, SEED (as bench/hub.sh), REQUESTS (50), KILN (a kiln binary).
set -euo pipefail

TAGS=${TAGS:-2000}
BUILDS=${BUILDS:-100000}
LISTINGS=${LISTINGS:-300000}
PACKAGES=${PACKAGES:-500}
DEPTH=${DEPTH:-12}
REVOKED_PCT=${REVOKED_PCT:-10}
SEED=${SEED:-1}
REQUESTS=${REQUESTS:-50}
BENCH=web.sh
PG_SHARED_BUFFERS=256MB
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib-hub.sh
. "$ROOT/bench/lib-hub.sh"

url="sqlite://$WORK/hub.db"
"$KILN" user create bench --admin --db "$url" >/dev/null 2>"$WORK/user.log" || {
    echo "web.sh: kiln user create failed:" >&2
    cat "$WORK/user.log" >&2
    exit 1
}
python3 "$ROOT/bench/gen_hub.py" --requests-dir "$WORK/req" --tags "$TAGS" --builds "$BUILDS" \
    --listings "$LISTINGS" --packages "$PACKAGES" --depth "$DEPTH" --revoked-pct "$REVOKED_PCT" \
    --seed "$SEED" --sqlite "$WORK/hub.db" >"$WORK/gen.json" 2>"$WORK/gen.log" || {
    echo "web.sh: gen_hub.py failed:" >&2
    tail -n 20 "$WORK/gen.log" >&2
    exit 1
}
start_hub "$url"
deep=$(head -n 1 "$WORK/req/deep.tsv" | cut -f 3)
build=$(head -n 1 "$WORK/req/build-info.tsv" | cut -f 3)
python3 - "$HUB_URL" "$deep" "$build" "$REQUESTS" <<'PY'
import statistics, sys, time, urllib.parse, urllib.request

hub, deep, build, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tag = urllib.parse.urlparse(deep).path.split("/")[4]
nvr = urllib.parse.urlparse(build).path.split("/")[4]
# (page, its path, the API call that answers the same data as JSON)
pairs = [
    ("dashboard", "/", "/api/v1/tasks?limit=50"),
    ("tasks", "/tasks", "/api/v1/tasks?limit=50"),
    ("builds", "/builds", "/api/v1/builds?limit=50"),
    ("builds search", "/builds?q=" + nvr.split("-")[0] + "-*", "/api/v1/builds?limit=50"),
    ("build", "/builds/" + nvr, "/api/v1/builds/" + nvr),
    ("tags", "/tags", "/api/v1/tags?limit=100"),
    ("deep tag", "/tags/" + tag, "/api/v1/tags/" + tag + "/builds?latest=true"),
    ("deep tag, inherited", "/tags/" + tag + "?inherit=1", "/api/v1/tags/" + tag + "/builds?inherit=true&latest=true"),
    ("targets", "/targets", "/api/v1/targets"),
    ("hosts", "/hosts", "/api/v1/hosts"),
    ("pipelines", "/pipelines", "/api/v1/pipelines"),
]

def times(path):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(hub + path) as r:
            r.read()
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return statistics.median(out), out[min(len(out) - 1, int(len(out) * 0.99))]

print(f"== kiln web UI render (SQLite; {n} sequential requests each; baseline: the API's JSON of the same data)")
print(f"  {'page':20} {'p50 ms':>8} {'p99 ms':>8} {'API p50':>8} {'ratio':>6}")
worst = 0.0
for name, page, api in pairs:
    times(page)  # warm up
    p50, p99 = times(page)
    a50, _ = times(api)
    worst = max(worst, p50)
    print(f"  {name:20} {p50:8.1f} {p99:8.1f} {a50:8.1f} {p50 / a50:6.2f}")
print(f"target: every page's p50 under 50 ms: {'PASS' if worst < 50 else 'FAIL'} (slowest {worst:.1f} ms)")
PY
