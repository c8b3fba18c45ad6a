//! A hub killed mid-burst (docs/hub.md, "Crashes and the store"): a real
//! `kiln serve` with a local store, on SQLite and on PostgreSQL, written to
//! by several clients at once — tags created and edited, builds imported
//! with artifacts of a few MB, tagged, tasks submitted and claimed, and an
//! upload stalled halfway — is SIGKILLed at seeded moments and restarted,
//! several times. After each restart the database and the store directory
//! are read directly: no versioned row without its event, no tag listing
//! without its build, no artifact, image or upload row whose blob is missing
//! or damaged, no blob without a row once the store sweep ran, no temporary
//! object once the start-up cleanup ran, and every write a client saw
//! acknowledged is there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kiln_hub_api::model::*;
use kiln_hub_api::{Client, ClientError};
use serde_json::json;

use crate::support::{kiln, run};

/// The hub crate's test databases: PostgreSQL started once per process.
#[path = "../../../kiln-hub/tests/common/mod.rs"]
mod common;

const WRITERS: usize = 4;
const KILLS: u64 = 4;
const MIB: u64 = 1 << 20;
/// Older than the hub's default grace: what a killed hub left is backdated
/// by this much before the restart, as if the restart came that much later.
const LONG_AGO: Duration = Duration::from_secs(2 * 3600);
/// How long the test waits for the hub to listen or to log a line.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn sqlite_survives_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::Sqlite(dir.path().join("hub.db"));
    crash_test(db, dir, 0x5eed_0001);
}

#[test]
fn postgres_survives_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::Pg(common::postgres().url);
    crash_test(db, dir, 0x5eed_0002);
}

// ---- randomness, data ----------------------------------------------------------

/// xorshift64*: the test's only source of randomness, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` bytes that do not repeat, the same for the same seed.
fn data(n: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(n as usize + 8);
    while (v.len() as u64) < n {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(n as usize);
    v
}

fn sha256(b: &[u8]) -> String {
    kiln_store::sha256_copy(b, None).expect("hashing").0
}

fn file_sha256(p: &Path) -> String {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    kiln_store::sha256_copy(f, None).expect("hashing").0
}

// ---- the database, read directly ---------------------------------------------

enum Db {
    Sqlite(PathBuf),
    Pg(String),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Pg(u) => u.clone(),
        }
    }

    /// The rows `sql` returns, each a list of columns (NULL is "").
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = match self {
            Db::Sqlite(p) => Command::new("sqlite3")
                .args(["-readonly", "-batch", "-noheader", "-separator", "|"])
                .arg(p)
                .arg(sql)
                .output(),
            Db::Pg(u) => Command::new("psql")
                .args([
                    u.as_str(),
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-F",
                    "|",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ])
                .output(),
        }
        .expect("sqlite3 and psql are installed");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    fn count(&self, sql: &str) -> i64 {
        let rows = self.rows(sql);
        rows.first()
            .and_then(|r| r.first())
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{sql}: not a count: {rows:?}"))
    }
}

// ---- the hub ------------------------------------------------------------------

struct Hub {
    db: Db,
    dir: PathBuf,
    store: PathBuf,
    child: Option<Child>,
    url: String,
    log: PathBuf,
    starts: usize,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Hub {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `kiln serve` on a free port and waits until it listens: the
    /// start-up cleanup of the store is done by then.
    fn start(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        self.starts += 1;
        self.log = self.dir.join(format!("serve-{}.log", self.starts));
        let child = kiln()
            .args([
                "serve",
                "--db",
                &self.db.url(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--store")
            .arg(format!("file://{}", self.store.display()))
            .arg("--key-file")
            .arg(self.dir.join("hub.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe that nobody reads.
            .stderr(std::fs::File::create(&self.log).expect("serve log"))
            .spawn()
            .expect("kiln serve");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("kiln serve exited ({status}):\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "kiln serve does not listen:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.url = format!("http://127.0.0.1:{port}");
    }

    fn kill(&mut self) {
        let mut c = self.child.take().expect("a running hub");
        c.kill().expect("SIGKILL");
        c.wait().expect("wait");
    }

    /// Waits until the hub's log has a line containing `needle`.
    fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log_text().contains(needle) {
            assert!(
                start.elapsed() < PATIENCE,
                "no `{needle}` in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token.to_string())).expect("client")
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn backdate(p: &Path) {
    let f = std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.set_modified(SystemTime::now() - LONG_AGO)
        .unwrap_or_else(|e| panic!("backdate {}: {e}", p.display()));
}

// ---- the writers ----------------------------------------------------------------

/// One client's writes, and which of them the hub acknowledged.
struct Writer {
    id: usize,
    rng: Rng,
    n: u64,
    work: PathBuf,
    tags: Vec<String>,
    /// The tags' arches as last acknowledged, and an edit that was in
    /// flight when the hub died (it may or may not have committed).
    arches: BTreeMap<String, String>,
    pending_arches: BTreeMap<String, String>,
    builds: BTreeSet<String>,
    /// (NVR, file) → (sha256, size).
    uploaded: BTreeMap<(String, String), (String, u64)>,
    complete: BTreeSet<String>,
    tagged: BTreeSet<(String, String)>,
    tasks: BTreeSet<i64>,
    claimed: BTreeSet<i64>,
    /// (seed, size) of contents uploaded, some uploaded again.
    contents: Vec<(u64, u64)>,
    /// Answers with an error status: the hub refused or failed a request
    /// while it was running — never right here.
    refused: Vec<String>,
}

impl Writer {
    fn new(id: usize, seed: u64, work: PathBuf) -> Writer {
        std::fs::create_dir_all(&work).expect("work dir");
        Writer {
            id,
            rng: Rng((seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1),
            n: 0,
            work,
            tags: Vec::new(),
            arches: BTreeMap::new(),
            pending_arches: BTreeMap::new(),
            builds: BTreeSet::new(),
            uploaded: BTreeMap::new(),
            complete: BTreeSet::new(),
            tagged: BTreeSet::new(),
            tasks: BTreeSet::new(),
            claimed: BTreeSet::new(),
            contents: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn main_tag(&self) -> String {
        format!("w{}", self.id)
    }

    /// Writes until a request fails (the hub died).
    fn burst(&mut self, user: &Client, host: &Client) {
        loop {
            if let Err(e) = self.step(user, host) {
                if e.status.is_some() {
                    self.refused
                        .push(format!("writer {}: {} ({})", self.id, e.message, e.code));
                }
                return;
            }
        }
    }

    fn step(&mut self, c: &Client, host: &Client) -> Result<(), ClientError> {
        self.n += 1;
        let n = self.n;
        match self.rng.below(10) {
            0 => {
                let name = format!("w{}-t{n}", self.id);
                let t: NewTag = serde_json::from_value(json!({"name": name, "arches": "x86_64"})).expect("tag");
                c.create_tag(&t)?;
                self.tags.push(name.clone());
                self.arches.insert(name, "x86_64".into());
            }
            1 | 2 => {
                let tag = self.tags[self.rng.below(self.tags.len() as u64) as usize].clone();
                let value = format!("a{n}");
                let e: TagEdit = serde_json::from_value(json!({"arches": value})).expect("edit");
                self.pending_arches.insert(tag.clone(), value.clone());
                c.edit_tag(&tag, &e)?;
                self.pending_arches.remove(&tag);
                self.arches.insert(tag, value);
            }
            3 => {
                let t = c.submit_task(&NewTask::new(TaskRequest::Noop))?;
                self.tasks.insert(t.id);
                if let Some(t) = host.claim()? {
                    self.claimed.insert(t.id);
                }
            }
            _ => self.import(c)?,
        }
        Ok(())
    }

    /// A build with one or two artifacts of 1 to 3 MiB (now and then the
    /// content of an earlier one: the same blob), completed and tagged.
    fn import(&mut self, c: &Client) -> Result<(), ClientError> {
        let (name, version) = (format!("pkg{}", self.id), format!("{}", self.n));
        let nvr = format!("{name}-{version}-1");
        let mut files = Vec::new();
        for k in 0..1 + self.rng.below(2) {
            let (seed, size) = if !self.contents.is_empty() && self.rng.below(4) == 0 {
                self.contents[self.rng.below(self.contents.len() as u64) as usize]
            } else {
                (self.rng.next(), MIB + self.rng.below(2 * MIB))
            };
            let bytes = data(size, seed);
            let path = self.work.join(format!("{nvr}-{k}.bin"));
            std::fs::write(&path, &bytes).expect("artifact");
            files.push((format!("f{k}.bin"), path, sha256(&bytes), size, seed));
        }
        let nb: NewBuild = serde_json::from_value(json!({
            "name": name, "version": version, "release": "1",
            "artifacts": files.iter().map(|(f, _, sha, size, _)| json!({
                "file": f, "format": "raw", "size": size, "sha256": sha
            })).collect::<Vec<_>>()
        }))
        .expect("build");
        c.create_build(&nb)?;
        self.builds.insert(nvr.clone());
        for (file, path, sha, size, seed) in &files {
            c.upload_artifact(&nvr, file, path, sha)?;
            self.uploaded.insert((nvr.clone(), file.clone()), (sha.clone(), *size));
            self.contents.push((*seed, *size));
            let _ = std::fs::remove_file(path);
        }
        c.set_build_state(&nvr, "COMPLETE")?;
        self.complete.insert(nvr.clone());
        let t: TagBuildIn = serde_json::from_value(json!({"nvr": nvr})).expect("tag build");
        c.tag_build(&self.main_tag(), &t)?;
        self.tagged.insert((self.main_tag(), nvr));
        Ok(())
    }
}

/// An upload that stops halfway and waits: the hub is writing its
/// temporary object when it is killed.
fn stall_an_upload(hub: &Hub, c: &Client, token: &str, round: u64) -> std::net::TcpStream {
    let size = 4 * MIB;
    let bytes = data(size, 0xdead_0000 + round);
    let nvr = format!("stalled-{round}-1");
    let nb: NewBuild = serde_json::from_value(json!({
        "name": "stalled", "version": round.to_string(), "release": "1",
        "artifacts": [{"file": "big.bin", "format": "raw", "size": size, "sha256": sha256(&bytes)}]
    }))
    .expect("build");
    c.create_build(&nb).expect("a build to stall");
    let before = files(&hub.store.join("tmp"));
    let addr = hub.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "PUT /api/v1/builds/{nvr}/files/big.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {size}\r\n\r\n"
    )
    .expect("headers");
    s.write_all(&bytes[..MIB as usize]).expect("half a body");
    let start = Instant::now();
    while files(&hub.store.join("tmp")).len() <= before.len() {
        assert!(start.elapsed() < PATIENCE, "the stalled upload has no temporary object");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

// ---- the checks --------------------------------------------------------------

const VERSIONED: [&str; 7] = [
    "user_perms",
    "tag_config",
    "tag_extra",
    "tag_inheritance",
    "tag_packages",
    "tag_listing",
    "target_config",
];

/// The database and the store agree with each other and with what the
/// writers saw acknowledged. Settles the writers' in-flight tag edits to
/// what the database holds.
fn check(hub: &Hub, writers: &mut [Writer]) {
    let db = &hub.db;
    for t in VERSIONED {
        let n = db.count(&format!(
            "SELECT COUNT(*) FROM {t} WHERE create_event NOT IN (SELECT id FROM events) \
             OR (revoke_event IS NOT NULL AND revoke_event NOT IN (SELECT id FROM events))"
        ));
        assert_eq!(n, 0, "{t}: rows without their event");
    }
    let n = db.count("SELECT COUNT(*) FROM tags t WHERE NOT EXISTS (SELECT 1 FROM tag_config c WHERE c.tag_id = t.id)");
    assert_eq!(n, 0, "tags without a configuration");
    let n = db.count(
        "SELECT COUNT(*) FROM tag_listing l WHERE l.build_id NOT IN (SELECT id FROM builds) \
         OR l.tag_id NOT IN (SELECT id FROM tags)",
    );
    assert_eq!(n, 0, "tag listings without their build or tag");
    let n = db.count(
        "SELECT COUNT(*) FROM artifacts a JOIN builds b ON b.id = a.build_id \
         WHERE b.state = 'COMPLETE' AND a.store_key IS NULL",
    );
    assert_eq!(n, 0, "COMPLETE builds with files never uploaded");

    // Every row's blob is there, whole; every blob has a row.
    let rows = db.rows(
        "SELECT store_key, sha256, size FROM artifacts WHERE store_key IS NOT NULL \
         UNION ALL SELECT store_key, sha256, size FROM images \
         UNION ALL SELECT u.store_key, u.sha256, u.size FROM task_uploads u WHERE u.stored",
    );
    let mut keys = BTreeSet::new();
    for r in &rows {
        let (key, sha, size) = (&r[0], &r[1], &r[2]);
        assert_eq!(key, &format!("blobs/sha256/{sha}"), "a row's key is its content's");
        let p = hub.store.join(key);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("the blob of a row, {key}: {e}"));
        assert_eq!(meta.len().to_string(), *size, "{key}: the size its row says");
        if keys.insert(key.clone()) {
            assert_eq!(&file_sha256(&p), sha, "{key}: the content its row says");
        }
    }
    let referenced: BTreeSet<String> = db
        .rows("SELECT store_key FROM task_uploads")
        .into_iter()
        .map(|r| r[0].clone())
        .chain(keys)
        .collect();
    for p in files(&hub.store.join("blobs")) {
        let key = p.strip_prefix(&hub.store).expect("in the store").display().to_string();
        assert!(referenced.contains(&key), "a blob without a row after the sweep: {key}");
    }

    // What the writers saw acknowledged.
    let arches: BTreeMap<String, String> = db
        .rows("SELECT t.name, c.arches FROM tag_names t JOIN tag_config c ON c.tag_id = t.tag_id AND c.revoke_event IS NULL WHERE t.revoke_event IS NULL")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let mut artifacts = BTreeMap::new();
    let mut states = BTreeMap::new();
    for r in db.rows(
        "SELECT b.nvr, b.state, a.file, a.sha256, COALESCE(a.store_key, '') FROM builds b \
         LEFT JOIN artifacts a ON a.build_id = b.id",
    ) {
        states.insert(r[0].clone(), r[1].clone());
        artifacts.insert((r[0].clone(), r[2].clone()), (r[3].clone(), r[4].clone()));
    }
    let listed: BTreeSet<(String, String)> = db
        .rows(
            "SELECT t.name, b.nvr FROM tag_listing l JOIN tag_names t ON t.tag_id = l.tag_id AND t.revoke_event IS NULL \
             JOIN builds b ON b.id = l.build_id WHERE l.revoke_event IS NULL",
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let tasks: BTreeMap<i64, i64> = db
        .rows("SELECT id, attempts FROM tasks")
        .into_iter()
        .map(|r| (r[0].parse().expect("id"), r[1].parse().expect("attempts")))
        .collect();
    for w in writers.iter_mut() {
        assert!(w.refused.is_empty(), "the hub refused: {:?}", w.refused);
        for (tag, want) in &w.arches {
            let got = arches.get(tag).unwrap_or_else(|| panic!("tag {tag} is lost"));
            let pending = w.pending_arches.get(tag);
            assert!(
                got == want || Some(got) == pending,
                "tag {tag}: arches {got}, acknowledged {want} (in flight: {pending:?})"
            );
        }
        for tag in w.pending_arches.keys() {
            if let Some(got) = arches.get(tag) {
                w.arches.insert(tag.clone(), got.clone());
            }
        }
        w.pending_arches.clear();
        for nvr in &w.builds {
            assert!(states.contains_key(nvr), "build {nvr} is lost");
        }
        for ((nvr, file), (sha, _)) in &w.uploaded {
            let (row_sha, key) = artifacts.get(&(nvr.clone(), file.clone())).expect("an artifact row");
            assert_eq!(row_sha, sha, "{nvr} {file}");
            assert_eq!(key, &format!("blobs/sha256/{sha}"), "{nvr} {file} is uploaded");
        }
        for nvr in &w.complete {
            assert_eq!(states.get(nvr).map(String::as_str), Some("COMPLETE"), "{nvr}");
        }
        for t in &w.tagged {
            assert!(listed.contains(t), "{t:?} is no longer tagged");
        }
        for id in &w.tasks {
            assert!(tasks.contains_key(id), "task {id} is lost");
        }
        for id in &w.claimed {
            assert!(tasks.get(id).is_some_and(|a| *a >= 1), "the claim of task {id} is lost");
        }
    }
}

/// The unreferenced blobs a hub's log says its store sweep removed.
fn swept_blobs_in(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.split_once("store sweep: removed ")?.1.split(" and ").nth(1))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

// ---- the test ------------------------------------------------------------------

fn crash_test(db: Db, dir: tempfile::TempDir, seed: u64) {
    let seed = std::env::var("KILN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let mut rng = Rng(seed);
    let r = run(kiln().args(["user", "create", "admin", "--admin", "--db", &db.url()]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.stdout.trim().to_string();
    let mut hub = Hub {
        db,
        dir: dir.path().to_path_buf(),
        store: dir.path().join("store"),
        child: None,
        url: String::new(),
        log: PathBuf::new(),
        starts: 0,
    };
    hub.start();
    let admin = hub.client(&token);
    let h: NewHost = serde_json::from_value(json!({"name": "b1", "arch": "amd64", "capacity": 1000})).expect("host");
    let host_token = admin.create_host(&h).expect("a host").token;
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|i| Writer::new(i, seed, dir.path().join(format!("w{i}"))))
        .collect();
    for w in &mut writers {
        let t: NewTag = serde_json::from_value(json!({"name": w.main_tag(), "arches": "x86_64"})).expect("tag");
        admin.create_tag(&t).expect("a writer's tag");
        let p: PackageIn = serde_json::from_value(json!({"package": format!("pkg{}", w.id)})).expect("package");
        admin.set_package(&w.main_tag(), &p, false).expect("its package");
        w.tags.push(w.main_tag());
        w.arches.insert(w.main_tag(), "x86_64".into());
    }

    let (mut orphans, mut swept_blobs) = (0, 0);
    for round in 0..KILLS {
        let user = hub.client(&token);
        let stalled = stall_an_upload(&hub, &user, &token, round);
        let delay = Duration::from_millis(300 + rng.below(1200));
        std::thread::scope(|s| {
            for w in writers.iter_mut() {
                let (user, host) = (hub.client(&token), hub.client(&host_token));
                s.spawn(move || w.burst(&user, &host));
            }
            std::thread::sleep(delay);
            hub.kill();
        });
        drop(stalled);
        // What the killed hub left: an hour later, nobody may be writing it.
        let tmp = files(&hub.store.join("tmp"));
        assert!(!tmp.is_empty(), "the stalled upload left its temporary object");
        orphans += tmp.len();
        for p in tmp.iter().chain(&files(&hub.store.join("blobs"))) {
            backdate(p);
        }

        hub.start();
        let left = files(&hub.store.join("tmp"));
        assert!(
            left.is_empty(),
            "temporary objects survived the start-up cleanup: {left:?}\n{}",
            hub.log_text()
        );
        hub.wait_for_log("store sweep:");
        swept_blobs += swept_blobs_in(&hub.log_text());
        check(&hub, &mut writers);
    }

    // Every acknowledged upload downloads whole through the API.
    let c = hub.client(&token);
    let dest = dir.path().join("download.bin");
    let mut uploads = 0;
    for w in &writers {
        for ((nvr, file), (sha, _)) in &w.uploaded {
            let got = c.download_artifact(nvr, file, &dest).expect("download");
            assert_eq!(&got, sha, "{nvr} {file}");
            uploads += 1;
        }
    }
    assert!(uploads > 0, "no upload completed in {KILLS} rounds");
    assert!(orphans >= KILLS as usize);
    eprintln!(
        "seed {seed}: {uploads} uploads acknowledged; {KILLS} kills left {orphans} temporary objects \
         and {swept_blobs} blobs without a row"
    );
}
