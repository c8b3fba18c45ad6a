#!/usr/bin/env python3
"""Fills a kiln hub database with a large generated tag/build history.

    bench/gen_hub.py (--sqlite PATH | --pg URL) --requests-dir DIR
        [--tags 2000] [--builds 100000] [--listings 300000] [--packages 500]
        [--depth 12] [--revoked-pct 10] [--seed 1] [--analyze] [--psql psql]

The database must already have the hub's schema (run `kiln user create … --db
URL` first: it applies the migrations) and no tags, builds or listings; the
rows are written directly with SQL (SQLite through Python's sqlite3 module,
PostgreSQL through `psql` and COPY), with explicit ids after the rows already
there, and PostgreSQL's identity sequences are moved past them so the hub can
keep writing. PostgreSQL is then vacuumed and analyzed (as autovacuum would
do); SQLite only with --analyze (the hub never runs ANALYZE).

The data looks like a Koji hub with many products:

- tags in families (about 100 tags each); each family has one root and
  levels down to a depth between 2 and --depth (family 0 goes to --depth);
  every tag below the root has a parent one level up (priority 0), about a
  third a second parent one or two levels up (priority 10), some a third
  (priority 20), and a few a link to another family's root (priority 30);
  parents are picked with a bias towards the first tags of a level, so many
  children share parents (fan-in);
- every root lists all the packages (so every tag inherits them); a few
  packages are blocked on a few mid-level tags;
- builds (COMPLETE, distinct NVRs, versions growing with the build id) of
  the packages, owned by 20 builder users;
- listings spread over the tags (log-normal weights, roots weighted more),
  each created by its own event, in build order with some jitter, so
  "latest" means something; --revoked-pct of them are later untagged, each
  by its own event.

"The deepest tag" is the tag at the greatest depth of family 0 with the most
tags in its inheritance walk.

It writes request lists for the load generator (crates/kiln-hub/examples/hubload.rs) to
--requests-dir: one file per endpoint, LABEL<TAB>METHOD<TAB>PATH[<TAB>BODY],
and prints a JSON summary (sizes, the deepest tag, its walk, timings) on
stdout. Deterministic for a given seed and size.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict

BUILDERS = 20
API = "/api/v1"


class Data:
    """All the generated rows, ids relative to the bases found in the database."""

    def __init__(self, a, base_event: int, base_user: int, t0: int):
        self.t0 = t0
        self.rng = random.Random(a.seed)
        self.a = a
        self.next_event = base_event
        self.events: list[tuple] = []  # (id, time, user_id, action)
        self.users: list[tuple] = []  # (id, name, password_hash, kind, created)
        self.tags: list[tuple] = []  # (id, slot)
        self.tag_names: list[tuple] = []  # (id, tag_id, name, create_event, revoke_event)
        self.tag_config: list[tuple] = []  # (id, tag_id, arches, perm, locked, create_event, revoke_event)
        self.tag_extra: list[tuple] = []  # (id, tag_id, key, value, blocked, create_event, revoke_event)
        self.inheritance: list[tuple] = []  # (id, tag_id, parent_id, priority, maxdepth, intransitive, noconfig, pkg_filter, create_event, revoke_event)
        self.tag_packages: list[tuple] = []  # (id, tag_id, package, owner, blocked, create_event, revoke_event)
        self.builds: list[tuple] = []  # (id, name, version, release, nvr, state, owner_id, task_id, start_time, completion_time, manifest, extra)
        self.listings: list[tuple] = []  # (id, tag_id, build_id, create_event, revoke_event, package)
        self.builder_ids = [base_user + 1 + i for i in range(BUILDERS)]
        for i, uid in enumerate(self.builder_ids):
            self.users.append((uid, f"builder-{i:02d}", None, "user", t0))

    def event(self, action: str) -> int:
        self.next_event += 1
        e = self.next_event
        self.events.append((e, self.t0 + 7 * len(self.events), self.rng.choice(self.builder_ids), action))
        return e

    # ---- tags ---------------------------------------------------------------

    def gen_tags(self):
        a, rng = self.a, self.rng
        n_fam = max(1, a.tags // 100)
        sizes = [a.tags // n_fam] * n_fam
        sizes[0] += a.tags - sum(sizes)
        self.level: dict[int, int] = {}
        self.family: dict[int, int] = {}
        self.parents: dict[int, list[int]] = defaultdict(list)
        self.roots: list[int] = []
        self.tag_name: dict[int, str] = {}
        fam_levels: list[list[list[int]]] = []
        tid = 0
        for f, size in enumerate(sizes):
            depth = a.depth if f == 0 else rng.randint(min(2, a.depth), a.depth)
            depth = min(depth, max(size - 1, 0))
            # One root, at least one tag per level, the rest weighted towards
            # the deeper levels.
            counts = [1] + [1] * depth
            for _ in range(size - 1 - depth):
                counts[1 + min(depth - 1, int(depth * rng.random() ** 0.7))] += 1
            levels: list[list[int]] = []
            for lv, c in enumerate(counts):
                ids = []
                for k in range(c):
                    tid += 1
                    name = f"p{f:02d}-base" if lv == 0 else f"p{f:02d}-l{lv:02d}-{k:03d}"
                    self.tag_name[tid] = name
                    self.level[tid] = lv
                    self.family[tid] = f
                    ids.append(tid)
                levels.append(ids)
            fam_levels.append(levels)
            self.roots.append(levels[0][0])
        self.tags = [(t, f"#{t}") for t in sorted(self.tag_name)]

        def pick(ids: list[int]) -> int:
            # Biased towards the first tags of the level: fan-in.
            return ids[int(len(ids) * rng.random() ** 2.5)]

        link_id = 0
        cfg_id = 0
        extra_id = 0
        for t in sorted(self.tag_name):
            f, lv = self.family[t], self.level[t]
            levels = fam_levels[f]
            ev = self.event(f"create tag {self.tag_name[t]}")
            cfg_id += 1
            root = lv == 0
            self.tag_config.append((cfg_id, t, "x86_64 aarch64" if root else None, None, False, ev, None))
            self.tag_names.append((t, t, self.tag_name[t], ev, None))
            if root:
                for k, v in (("rpm.macro.dist", f'".p{f:02d}"'), ("mock.package_manager", '"dnf"')):
                    extra_id += 1
                    self.tag_extra.append((extra_id, t, k, v, False, ev, None))
            elif rng.random() < 0.1:
                extra_id += 1
                self.tag_extra.append((extra_id, t, "rpm.macro.vendor", f'"{self.tag_name[t]}"', False, ev, None))
            if root:
                continue
            # The parent one level up, created with the tag.
            p0 = pick(levels[lv - 1])
            link_id += 1
            self.inheritance.append((link_id, t, p0, 0, None, False, False, "", ev, None))
            chosen = {p0}
            for prio, prob in ((10, 0.33), (20, 0.1)):
                if rng.random() < prob:
                    up = lv - 1 if lv < 2 or rng.random() < 0.6 else lv - 2
                    p = pick(levels[up])
                    if p in chosen:
                        continue
                    chosen.add(p)
                    link_id += 1
                    e = self.event(f"add inheritance {self.tag_name[t]} -> {self.tag_name[p]}")
                    self.inheritance.append((link_id, t, p, prio, None, False, False, "", e, None))
            if len(self.roots) > 1 and rng.random() < 0.03:
                p = rng.choice([r for r in self.roots if self.family[r] != f])
                link_id += 1
                e = self.event(f"add inheritance {self.tag_name[t]} -> {self.tag_name[p]}")
                self.inheritance.append((link_id, t, p, 30, None, False, False, "", e, None))
        for row in self.inheritance:
            self.parents[row[1]].append((row[3], row[2]))
        for t in self.parents:
            self.parents[t].sort()

    def walk(self, t: int) -> list[int]:
        """Koji's walk without maxdepth/filters: depth first by priority, each tag once."""
        out: list[int] = []
        seen = {t}

        def rec(x: int):
            for _, p in self.parents.get(x, []):
                if p in seen:
                    continue
                seen.add(p)
                out.append(p)
                rec(p)

        rec(t)
        return out

    def depth(self, t: int, memo: dict[int, int] | None = None) -> int:
        """The longest chain of links up from t."""
        memo = {} if memo is None else memo
        if t not in memo:
            memo[t] = max((1 + self.depth(p, memo) for _, p in self.parents.get(t, [])), default=0)
        return memo[t]

    # ---- packages -----------------------------------------------------------

    def gen_packages(self):
        a, rng = self.a, self.rng
        stems = ["lib", "python3", "perl", "golang", "rust", "nodejs", "kernel", "systemd", "gnome", "qt6", "xorg", "tools"]
        self.packages = [f"{stems[i % len(stems)]}-p{i:04d}" for i in range(a.packages)]
        # A few packages get blocked on a few mid-level tags; the write
        # benchmark leaves them alone.
        self.blocked_pkgs = set(self.packages[-5:]) if a.packages > 20 else set()
        pid = 0
        for r in self.roots:
            ev = self.event(f"add {len(self.packages)} packages to {self.tag_name[r]}")
            for p in self.packages:
                pid += 1
                self.tag_packages.append((pid, r, p, f"builder-{pid % BUILDERS:02d}", False, ev, None))
        mids = [t for t in self.tag_name if self.level[t] in (2, 3)]
        for p in sorted(self.blocked_pkgs):
            for t in rng.sample(mids, min(3, len(mids))):
                ev = self.event(f"block package {p} on {self.tag_name[t]}")
                pid += 1
                self.tag_packages.append((pid, t, p, "builder-00", True, ev, None))

    # ---- builds and listings ------------------------------------------------

    def gen_builds(self):
        a, rng = self.a, self.rng
        counter: dict[str, int] = defaultdict(int)
        # Build times span the history of the tags' events.
        t = self.t0 + 7 * 10_000
        for bid in range(1, a.builds + 1):
            name = self.packages[int(len(self.packages) * rng.random() ** 1.3)]
            n = counter[name]
            counter[name] += 1
            version = f"{1 + n // 20}.{n % 20}"
            release = f"{1 + rng.randint(0, 2)}.k{n % 7}"
            nvr = f"{name}-{version}-{release}"
            t += rng.randint(1, 30)
            self.builds.append(
                (bid, name, version, release, nvr, "COMPLETE", rng.choice(self.builder_ids), 1_000_000 + bid, t - 600, t, None, "{}")
            )

    def gen_listings(self):
        a, rng = self.a, self.rng
        tag_ids = sorted(self.tag_name)
        weights = [rng.lognormvariate(0, 1) * (4 if self.level[t] == 0 else 1) for t in tag_ids]
        cum = []
        s = 0.0
        for w in weights:
            s += w
            cum.append(s)
        nb = len(self.builds)
        pairs: set[tuple[int, int]] = set()
        limit = min(a.listings, len(tag_ids) * nb)
        while len(pairs) < limit:
            t = tag_ids[min(bisect.bisect_left(cum, rng.random() * s), len(tag_ids) - 1)]
            b = 1 + rng.randrange(nb)
            pairs.add((t, b))
        pairs_l = sorted(pairs)
        rng.shuffle(pairs_l)
        # Actions in build order with jitter; an untag comes after its tag.
        actions = []
        revoked = set(rng.sample(range(len(pairs_l)), int(len(pairs_l) * a.revoked_pct / 100)))
        for i, (t, b) in enumerate(pairs_l):
            k = b + rng.uniform(0, nb * 0.02)
            actions.append((k, 0, i))
            if i in revoked:
                actions.append((k + rng.uniform(1, nb * 0.2), 1, i))
        actions.sort()
        create = [0] * len(pairs_l)
        revoke = [None] * len(pairs_l)
        for _, kind, i in actions:
            t, b = pairs_l[i]
            nvr, tag = self.builds[b - 1][4], self.tag_name[t]
            if kind == 0:
                create[i] = self.event(f"tag {nvr} into {tag}")
            else:
                revoke[i] = self.event(f"untag {nvr} from {tag}")
        order = sorted(range(len(pairs_l)), key=lambda i: create[i])
        self.listings = [
            (n + 1, pairs_l[i][0], pairs_l[i][1], create[i], revoke[i], self.builds[pairs_l[i][1] - 1][1])
            for n, i in enumerate(order)
        ]


TABLES = [
    ("users", "id, name, password_hash, kind, created", "users"),
    ("events", "id, time, user_id, action", "events"),
    ("tags", "id, slot", "tags"),
    ("tag_names", "id, tag_id, name, create_event, revoke_event", "tag_names"),
    ("tag_config", "id, tag_id, arches, perm, locked, create_event, revoke_event", "tag_config"),
    ("tag_extra", "id, tag_id, key, value, blocked, create_event, revoke_event", "tag_extra"),
    (
        "tag_inheritance",
        "id, tag_id, parent_id, priority, maxdepth, intransitive, noconfig, pkg_filter, create_event, revoke_event",
        "inheritance",
    ),
    ("tag_packages", "id, tag_id, package, owner, blocked, create_event, revoke_event", "tag_packages"),
    (
        "builds",
        "id, name, version, release, nvr, state, owner_id, task_id, start_time, completion_time, manifest, extra",
        "builds",
    ),
    ("tag_listing", "id, tag_id, build_id, create_event, revoke_event, package", "listings"),
]
EMPTY = ["tags", "tag_names", "tag_config", "tag_inheritance", "tag_packages", "builds", "tag_listing"]


def copy_value(v) -> str:
    if v is None:
        return "\\N"
    if v is True:
        return "t"
    if v is False:
        return "f"
    s = str(v)
    if any(c in s for c in "\t\n\\"):
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return s


class Sqlite:
    def __init__(self, path: str):
        self.con = sqlite3.connect(path)

    def scalar(self, sql: str):
        return self.con.execute(sql).fetchone()[0]

    def load(self, data: Data):
        cur = self.con.cursor()
        cur.execute("BEGIN")
        for table, cols, attr in TABLES:
            rows = getattr(data, attr)
            marks = ", ".join("?" * len(cols.split(",")))
            cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
        self.con.commit()

    def analyze(self):
        self.con.execute("ANALYZE")
        self.con.commit()

    def close(self):
        self.con.close()


class Pg:
    def __init__(self, url: str, psql: str):
        self.url, self.psql = url, psql

    def run(self, script: str) -> str:
        p = subprocess.run(
            [self.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.url],
            input=script,
            text=True,
            capture_output=True,
        )
        if p.returncode != 0:
            sys.exit(f"gen_hub.py: psql failed: {p.stderr.strip()[:2000]}")
        return p.stdout

    def scalar(self, sql: str):
        out = self.run(sql + ";\n").strip()
        return int(out) if out.lstrip("-").isdigit() else out

    def load(self, data: Data):
        parts = ["BEGIN;\n"]
        for table, cols, attr in TABLES:
            rows = getattr(data, attr)
            parts.append(f"COPY {table} ({cols}) FROM STDIN;\n")
            parts.append("".join("\t".join(copy_value(v) for v in r) + "\n" for r in rows))
            parts.append("\\.\n")
        for table, _, _ in TABLES:
            parts.append(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false);\n"
            )
        parts.append("COMMIT;\n")
        self.run("".join(parts))

    def analyze(self):
        self.run("VACUUM ANALYZE;\n")

    def close(self):
        pass


def write_requests(d: Data, out: str, deep: int, rng: random.Random):
    os.makedirs(out, exist_ok=True)
    names = d.tag_name
    tags = sorted(names)
    builds = d.builds
    n = 4000

    def w(fname: str, lines: list[str]):
        with open(os.path.join(out, fname), "w") as f:
            f.write("\n".join(lines) + "\n")

    w("deep.tsv", [f"list-tagged-deep\tGET\t{API}/tags/{names[deep]}/builds?inherit=true&latest=true"])
    w("tag-info.tsv", [f"tag-info\tGET\t{API}/tags/{names[rng.choice(tags)]}" for _ in range(n)])
    w("build-info.tsv", [f"build-info\tGET\t{API}/builds/{rng.choice(builds)[4]}" for _ in range(n)])
    w("list-tagged.tsv", [f"list-tagged\tGET\t{API}/tags/{names[rng.choice(tags)]}/builds" for _ in range(n)])
    w(
        "list-tagged-latest.tsv",
        [f"list-tagged-inherit-latest\tGET\t{API}/tags/{names[rng.choice(tags)]}/builds?inherit=true&latest=true" for _ in range(n)],
    )
    ok = [b for b in builds if b[1] not in d.blocked_pkgs]
    lines = []
    for _ in range(n):
        b = rng.choice(ok)
        body = json.dumps({"nvr": b[4], "force": True})
        lines.append(f"tag-build\tPOST\t{API}/tags/{names[rng.choice(tags)]}/builds\t{body}")
    w("tag-build.tsv", lines)
    non_roots = [t for t in tags if d.level[t] > 0]
    pk = [p for p in d.packages if p not in d.blocked_pkgs]
    w(
        "package-add.tsv",
        [
            f"package-add\tPOST\t{API}/tags/{names[rng.choice(non_roots)]}/packages\t"
            + json.dumps({"package": rng.choice(pk)})
            for _ in range(n)
        ],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--sqlite", metavar="PATH")
    g.add_argument("--pg", metavar="URL")
    ap.add_argument("--requests-dir", required=True)
    ap.add_argument("--tags", type=int, default=2000)
    ap.add_argument("--builds", type=int, default=100_000)
    ap.add_argument("--listings", type=int, default=300_000)
    ap.add_argument("--packages", type=int, default=500)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--revoked-pct", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--analyze", action="store_true", help="run ANALYZE after loading (SQLite; PostgreSQL always)")
    ap.add_argument("--psql", default="psql")
    a = ap.parse_args()
    if a.tags < 2 or a.builds < 1 or a.packages < 1 or a.depth < 1 or a.listings < 0:
        sys.exit("gen_hub.py: at least 2 tags, 1 build, 1 package and depth 1")

    db = Sqlite(a.sqlite) if a.sqlite else Pg(a.pg, a.psql)
    for t in EMPTY:
        if int(db.scalar(f"SELECT COUNT(*) FROM {t}")) != 0:
            sys.exit(f"gen_hub.py: table {t} is not empty")
    base_event = int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM events"))
    base_user = int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM users"))
    # The history follows the events already there (the bootstrap), in time too.
    start_time = int(db.scalar("SELECT COALESCE(MAX(time), 1600000000) FROM events")) + 60

    t0 = time.monotonic()
    d = Data(a, base_event, base_user, start_time)
    d.gen_tags()
    d.gen_packages()
    d.gen_builds()
    d.gen_listings()
    t1 = time.monotonic()
    db.load(d)
    t2 = time.monotonic()
    if a.pg or a.analyze:
        db.analyze()
    t3 = time.monotonic()
    db.close()

    # The deepest tag: greatest depth in family 0, then the longest walk.
    fam0 = [t for t in d.tag_name if d.family[t] == 0]
    maxlv = max(d.level[t] for t in fam0)
    deep = max((t for t in fam0 if d.level[t] == maxlv), key=lambda t: (len(d.walk(t)), -t))
    walk = d.walk(deep)
    scan = set([deep] + walk)
    active = [l for l in d.listings if l[4] is None]
    in_scan = sum(1 for l in active if l[1] in scan)
    walks = [len(d.walk(t)) for t in d.tag_name]
    write_requests(d, a.requests_dir, deep, random.Random(a.seed + 1))
    print(
        json.dumps(
            {
                "tags": len(d.tags),
                "families": len(d.roots),
                "links": len(d.inheritance),
                "packages": len(d.packages),
                "package_entries": len(d.tag_packages),
                "builds": len(d.builds),
                "listings": len(d.listings),
                "active_listings": len(active),
                "events": len(d.events),
                "deep_tag": d.tag_name[deep],
                "deep_depth": d.depth(deep),
                "deep_walk": len(walk),
                "deep_listings_scanned": in_scan,
                "max_walk": max(walks),
                "mean_walk": round(sum(walks) / len(walks), 1),
                "gen_s": round(t1 - t0, 2),
                "load_s": round(t2 - t1, 2),
                "analyze_s": round(t3 - t2, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
