//! The blob store on an S3-compatible server: `moto_server` (from PyPI,
//! `pip install 'moto[server]'`; tools/test.sh installs it) on a loopback
//! port, one per test, stopped when the test ends.
//!
//! `Store::open` takes its credentials from the environment, which a test
//! cannot change in its own process (`set_var` is unsafe): each test starts
//! moto and creates the bucket, then runs itself again as a child process
//! with the endpoint and dummy `AWS_*` credentials in its environment (and
//! no other `AWS_*` variable), and the child does the checks.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use kiln_hub::store::{Expect, Store};
use sha2::{Digest, Sha256};

/// Set in the child: the moto endpoint, `http://127.0.0.1:PORT`.
const ENDPOINT: &str = "KILN_S3_TEST_ENDPOINT";
const BUCKET: &str = "kiln-test";
const MIB: usize = 1 << 20;
const INSTALL: &str = "moto_server is needed for the S3 store tests: run `pip install 'moto[server]'` \
     (tools/test.sh installs it in target/test-venv)";

// ---- the parent: moto_server, the bucket, the child -------------------------

struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `moto_server` from tools/test.sh's virtual environment, on PATH, or
/// `python3 -m moto.server`.
fn moto_command() -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/moto_server");
    if venv.is_file() {
        return Command::new(venv);
    }
    if let Some(exe) = on_path("moto_server") {
        return Command::new(exe);
    }
    let importable = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        let mut c = Command::new("python3");
        c.args(["-m", "moto.server"]);
        return c;
    }
    panic!("{INSTALL}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn moto() -> Moto {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("moto.log");
    let port = free_port();
    let out = std::fs::File::create(&log).expect("moto log");
    let err = out.try_clone().expect("moto log");
    let child = moto_command()
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto_server ({e}); {INSTALL}"));
    let mut m = Moto {
        child,
        port,
        log,
        _dir: dir,
    };
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = m.child.try_wait() {
            panic!(
                "moto_server exited ({status}) before it listened:\n{}\n{INSTALL}",
                m.log_tail()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "moto_server did not listen on 127.0.0.1:{port} within 60 s:\n{}",
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // moto takes S3 requests without signatures: an unsigned PUT makes the
    // bucket.
    let r = reqwest::blocking::Client::new()
        .put(format!("http://127.0.0.1:{}/{BUCKET}", m.port))
        .send()
        .expect("creating the bucket");
    assert!(r.status().is_success(), "creating the bucket: {}", r.status());
    m
}

/// In the parent: starts moto and runs `test` again in a child process
/// pointed at it. In the child: the endpoint.
fn endpoint_or_run_child(test: &str) -> Option<String> {
    if let Ok(e) = std::env::var(ENDPOINT) {
        return Some(e);
    }
    let moto = moto();
    let mut c = Command::new(std::env::current_exe().expect("the test executable"));
    c.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    let out = c
        .env(ENDPOINT, format!("http://127.0.0.1:{}", moto.port))
        .env("AWS_ACCESS_KEY_ID", "kiln-test")
        .env("AWS_SECRET_ACCESS_KEY", "kiln-test-secret")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .output()
        .expect("running the test's child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed ({}):\n{stdout}\n{stderr}\n--- moto_server:\n{}",
        out.status,
        moto.log_tail()
    );
    None
}

// ---- the child's helpers -----------------------------------------------------

/// `n` bytes that do not compress or repeat.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `b` as a request body would come: chunks of 64 KiB.
fn body(b: &[u8]) -> impl Stream<Item = Result<Bytes, String>> + Unpin + use<> {
    let chunks: Vec<Result<Bytes, String>> = b.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks)
}

async fn read_all(s: &Store, key: &str) -> Vec<u8> {
    let (size, stream) = s.get(key).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
    let chunks: Vec<Bytes> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {key}: {e}"));
    let all = chunks.concat();
    assert_eq!(all.len() as u64, size, "{key}: the size announced is the size read");
    all
}

/// Multipart uploads the bucket still has open (moto answers unsigned).
async fn open_uploads(endpoint: &str) -> usize {
    let xml = reqwest::Client::new()
        .get(format!("{endpoint}/{BUCKET}?uploads"))
        .send()
        .await
        .expect("listing multipart uploads")
        .text()
        .await
        .expect("listing multipart uploads");
    assert!(xml.contains("ListMultipartUploadsResult"), "{xml}");
    xml.matches("<Upload>").count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- the tests -----------------------------------------------------------------

#[test]
fn store_urls_are_checked() {
    let err = |url: &str| match Store::open(url) {
        Ok(_) => panic!("{url} was accepted"),
        Err(e) => e.message,
    };
    let m = err("s3://kiln-test?endpiont=http://127.0.0.1:9");
    assert!(m.contains("unknown option `endpiont`"), "{m}");
    assert!(m.starts_with("cannot open the store s3://kiln-test?"), "{m}");
    let m = err("s3://?endpoint=http://127.0.0.1:9");
    assert!(m.contains("no bucket"), "{m}");
    let m = err("s3://b?endpoint=ftp://127.0.0.1:9");
    assert!(m.contains("use http:// or https://"), "{m}");
    let m = err("s3://b?endpoint=not a url");
    assert!(m.contains("endpoint `not a url`"), "{m}");
    let m = err("s3://b?endpoint=http://127.0.0.1:9&allow_http=yes");
    assert!(m.contains("allow_http must be true or false"), "{m}");
    let m = err("s3://b?allow_http=false&endpoint=http://127.0.0.1:9");
    assert!(m.contains("contradicts"), "{m}");
    let m = err("gs://b");
    assert!(m.contains("unsupported store URL"), "{m}");
    // Opening contacts nothing: these are all well-formed.
    for ok in [
        "s3://b?endpoint=http://127.0.0.1:9",
        "s3://b/some/prefix/?endpoint=https://127.0.0.1:9&region=eu-west-1",
        "s3://b?region=us-east-1&allow_http=true&endpoint=http://127.0.0.1:9",
    ] {
        if let Err(e) = Store::open(ok) {
            panic!("{ok}: {e}");
        }
    }
}

/// list_keys, get and delete on a local directory, as on S3 below.
#[test]
fn local_store_lists_gets_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&format!("file://{}", dir.path().display())).expect("open");
    runtime().block_on(async {
        assert!(s.list_keys("blobs/").await.expect("list").is_empty());
        let b = data(3 * MIB, 5);
        let st = s
            .put(
                body(&b),
                Expect {
                    sha256: Some(&sha256(&b)),
                    size: Some(b.len() as u64),
                },
            )
            .await
            .expect("put");
        assert_eq!(s.list_keys("").await.expect("list"), vec![st.key.clone()]);
        assert_eq!(s.list_keys("blobs/").await.expect("list"), vec![st.key.clone()]);
        assert!(s.list_keys("blob").await.expect("list").is_empty(), "whole segments");
        assert!(read_all(&s, &st.key).await == b);
        s.delete(&st.key).await.expect("delete");
        s.delete(&st.key).await.expect("deleting a missing key is fine");
        assert!(s.list_keys("").await.expect("list").is_empty());
    });
}

#[test]
fn blobs_on_s3() {
    let Some(endpoint) = endpoint_or_run_child("blobs_on_s3") else {
        return;
    };
    runtime().block_on(async {
        let s = Store::open(&format!("s3://{BUCKET}?endpoint={endpoint}")).expect("open");
        assert!(s.list_keys("").await.expect("list").is_empty());

        // More than two parts of 5 MiB: streamed, hashed, at its address.
        let big = data(12 * MIB + 123, 1);
        let sha = sha256(&big);
        let st = s
            .put(
                body(&big),
                Expect {
                    sha256: Some(&sha),
                    size: Some(big.len() as u64),
                },
            )
            .await
            .expect("put");
        assert_eq!(st.key, format!("blobs/sha256/{sha}"));
        assert_eq!((st.sha256.as_str(), st.size), (sha.as_str(), big.len() as u64));
        assert!(st.head == big[..4096], "the head is the first 4 KiB");
        assert_eq!(s.list_keys("").await.expect("list"), vec![st.key.clone()]);
        assert!(read_all(&s, &st.key).await == big, "the download is the upload");
        let only_big = vec![st.key.clone()];

        // Refused uploads leave no object, no temporary object and no open
        // multipart upload behind.
        let other = data(11 * MIB, 2);
        let e = s
            .put(
                body(&other),
                Expect {
                    sha256: Some(&"0".repeat(64)),
                    size: None,
                },
            )
            .await
            .err()
            .expect("a wrong sha256 is refused");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("sha256 mismatch"), "{e}");
        let e = s
            .put(
                body(&other),
                Expect {
                    sha256: None,
                    size: Some(6 * MIB as u64),
                },
            )
            .await
            .err()
            .expect("more bytes than declared are refused");
        assert!(e.message.contains("larger than the declared"), "{e}");
        let e = s
            .put(
                body(&other),
                Expect {
                    sha256: None,
                    size: Some(other.len() as u64 + 1),
                },
            )
            .await
            .err()
            .expect("fewer bytes than declared are refused");
        assert!(e.message.contains("size mismatch"), "{e}");
        let mut cut: Vec<Result<Bytes, String>> = other[..7 * MIB]
            .chunks(MIB)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        cut.push(Err("connection reset".into()));
        let e = s
            .put(futures::stream::iter(cut), Expect::default())
            .await
            .err()
            .expect("an interrupted upload fails");
        assert!(e.message.contains("upload interrupted: connection reset"), "{e}");
        assert_eq!(s.list_keys("").await.expect("list"), only_big, "nothing new");
        assert!(s.list_keys("tmp/").await.expect("list").is_empty());
        assert_eq!(open_uploads(&endpoint).await, 0, "aborted multipart uploads");

        // The same content again is fine: same address, same bytes.
        let again = s
            .put(
                body(&big),
                Expect {
                    sha256: Some(&sha.to_uppercase()),
                    size: None,
                },
            )
            .await
            .expect("put again");
        assert_eq!(again.key, st.key);
        assert_eq!(s.list_keys("").await.expect("list"), only_big);
        assert!(read_all(&s, &st.key).await == big);

        // An empty upload is a blob too.
        let empty = s.put(body(b""), Expect::default()).await.expect("empty put");
        assert_eq!(empty.key, format!("blobs/sha256/{}", sha256(b"")));
        assert!(read_all(&s, &empty.key).await.is_empty());
        s.delete(&empty.key).await.expect("delete");

        // Delete: gone, and deleting again is no error.
        s.delete(&st.key).await.expect("delete");
        let e = s.get(&st.key).await.err().expect("a deleted key is missing");
        assert_eq!(e.status, 404, "{e}");
        s.delete(&st.key).await.expect("deleting a missing key is fine");
        assert!(s.list_keys("").await.expect("list").is_empty());

        // A prefix in the URL: everything lives under it, keys are relative.
        let p = Store::open(&format!(
            "s3://{BUCKET}/pre/fix/?region=us-east-1&allow_http=true&endpoint={endpoint}"
        ))
        .expect("open with a prefix");
        let small = data(100_000, 3);
        let ps = p.put(body(&small), Expect::default()).await.expect("put");
        assert_eq!(ps.key, format!("blobs/sha256/{}", sha256(&small)));
        assert_eq!(p.list_keys("blobs/").await.expect("list"), vec![ps.key.clone()]);
        assert_eq!(
            s.list_keys("").await.expect("list"),
            vec![format!("pre/fix/{}", ps.key)],
            "under the prefix in the bucket"
        );
        assert!(s.list_keys("blobs/").await.expect("list").is_empty());
        assert!(read_all(&p, &ps.key).await == small);
        assert!(read_all(&s, &format!("pre/fix/{}", ps.key)).await == small);
        p.delete(&ps.key).await.expect("delete");
        assert!(s.list_keys("").await.expect("list").is_empty());
        assert_eq!(open_uploads(&endpoint).await, 0);
    });
}

/// A whole hub on S3: source images and a build's artifact up and down
/// through the CLI's client, refused uploads leave nothing, removing an
/// image removes its blob.
#[test]
fn hub_on_s3() {
    let Some(endpoint) = endpoint_or_run_child("hub_on_s3") else {
        return;
    };
    use kiln_hub_api::Client;
    use kiln_hub_api::model::NewBuild;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("hub.db").display());
    let opts = kiln_hub::ServeOptions {
        db: db.clone(),
        store: format!("s3://{BUCKET}/hub?endpoint={endpoint}"),
        listen: "127.0.0.1:0".into(),
        anonymous_read: true,
        lease_seconds: kiln_hub::db::LEASE_SECONDS,
        key_file: None,
        koji_session_seconds: kiln_hub::KOJI_SESSION_SECONDS,
        read_cache_mb: kiln_hub::db::cache::DEFAULT_MB,
    };
    let rt = runtime();
    let bucket = Store::open(&format!("s3://{BUCKET}?endpoint={endpoint}")).expect("open the bucket");
    let keys = || rt.block_on(bucket.list_keys("")).expect("list");
    let (addr, token) = rt.block_on(async {
        let token = kiln_hub::bootstrap_user(&db, "admin", Some("admin-password"), &["admin".into()])
            .await
            .expect("bootstrap");
        let hub = Arc::new(kiln_hub::open(&opts).await.expect("open the hub"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = kiln_hub::api::router(hub).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, token)
    });
    // The blocking client runs on this thread, outside the runtime.
    let c = Client::new(&format!("http://{addr}"), Some(token)).expect("client");

    // A source image of 11 MiB (three parts).
    let img = common::images::tar_image(&data(11 * MIB, 4));
    let sha = sha256(&img);
    let file = dir.path().join("fw.squashfs");
    std::fs::write(&file, &img).expect("write");
    let up = c.upload_image("fw", "1", &file, &sha).expect("upload");
    assert_eq!(up.sha256, sha);
    assert_eq!(keys(), vec![format!("hub/blobs/sha256/{sha}")]);
    let dest = dir.path().join("fw-1.squashfs");
    let got = c.download_image("fw", "1", &dest).expect("download");
    assert_eq!(got, sha);
    assert!(std::fs::read(&dest).expect("read") == img, "the download is the upload");

    // A wrong declaration is refused and stores nothing.
    let e = c
        .upload_image("fw", "2", &file, &"0".repeat(64))
        .expect_err("a wrong sha256 is refused");
    assert_eq!(e.status, Some(400), "{e}");
    assert!(e.message.contains("sha256 mismatch"), "{e}");
    assert_eq!(keys(), vec![format!("hub/blobs/sha256/{sha}")]);

    // A build's artifact with the same content shares the blob.
    let nb: NewBuild = serde_json::from_value(serde_json::json!({
        "name": "fw", "version": "1", "release": "1",
        "artifacts": [{"file": "fw.squashfs", "format": "squashfs", "size": img.len(), "sha256": sha}]
    }))
    .expect("a build");
    let b = c.create_build(&nb).expect("create a build");
    assert_eq!(b.state, "BUILDING", "{b:?}");
    c.upload_artifact("fw-1-1", "fw.squashfs", &file, &sha)
        .expect("upload the artifact");
    let dest = dir.path().join("artifact.squashfs");
    c.download_artifact("fw-1-1", "fw.squashfs", &dest)
        .expect("download the artifact");
    assert!(std::fs::read(&dest).expect("read") == img);
    assert_eq!(keys(), vec![format!("hub/blobs/sha256/{sha}")]);

    // Removing the image keeps the blob the artifact still uses.
    c.remove_image("fw", "1").expect("remove the image");
    assert_eq!(keys(), vec![format!("hub/blobs/sha256/{sha}")]);

    // An image alone in its blob takes it along when removed.
    let img2 = common::images::tar_image(&data(MIB, 6));
    let sha2 = sha256(&img2);
    let file2 = dir.path().join("fw2.squashfs");
    std::fs::write(&file2, &img2).expect("write");
    c.upload_image("fw", "2", &file2, &sha2).expect("upload");
    assert_eq!(keys().len(), 2);
    c.remove_image("fw", "2").expect("remove the image");
    assert_eq!(keys(), vec![format!("hub/blobs/sha256/{sha}")]);
    assert!(
        rt.block_on(bucket.list_keys("hub/tmp/")).expect("list").is_empty(),
        "no temporary object"
    );
}

/// The keys of the multipart uploads the bucket still has open, sorted.
async fn open_upload_keys(endpoint: &str) -> Vec<String> {
    let xml = reqwest::Client::new()
        .get(format!("{endpoint}/{BUCKET}?uploads"))
        .send()
        .await
        .expect("listing multipart uploads")
        .text()
        .await
        .expect("listing multipart uploads");
    let mut keys: Vec<String> = xml
        .split("<Upload>")
        .skip(1)
        .filter_map(|u| Some(u.split_once("<Key>")?.1.split_once("</Key>")?.0.to_string()))
        .collect();
    keys.sort();
    keys
}

/// What a hub killed mid-upload leaves on S3 — a temporary object, an
/// unfinished multipart upload — goes once untouched for longer than the
/// cutoff; younger ones, an upload that received a part since, uploads
/// outside the store's prefix and this process's upload in progress stay.
#[test]
fn orphans_on_s3() {
    let Some(endpoint) = endpoint_or_run_child("orphans_on_s3") else {
        return;
    };
    use object_store::ObjectStore;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjPath;
    use std::time::SystemTime;

    runtime().block_on(async {
        let s = Store::open(&format!("s3://{BUCKET}/hub?endpoint={endpoint}")).expect("open");
        let raw = AmazonS3Builder::from_env()
            .with_bucket_name(BUCKET)
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .build()
            .expect("a raw client");
        let object = |key: &'static str| {
            let raw = raw.clone();
            async move {
                raw.put(&ObjPath::from(key), Bytes::from_static(b"left behind").into())
                    .await
                    .expect("put");
            }
        };
        // An unfinished multipart upload, with a part or not, dropped as a
        // killed hub drops it.
        let unfinished = |key: &'static str, part: bool| {
            let raw = raw.clone();
            async move {
                let mut up = raw.put_multipart(&ObjPath::from(key)).await.expect("start");
                if part {
                    up.put_part(Bytes::from(data(MIB, 9)).into()).await.expect("a part");
                }
                up
            }
        };
        object("hub/tmp/1700000000-stale").await;
        object("hub/blobs/sha256/old").await;
        drop(unfinished("hub/tmp/stale-upload", true).await);
        drop(unfinished("hub/tmp/1700000000-stale-empty-upload", false).await);
        drop(unfinished("other/tmp/stale-upload", true).await);
        let mut slow = unfinished("hub/tmp/slow-upload", false).await;
        std::thread::sleep(Duration::from_millis(1100));
        let cutoff = SystemTime::now();
        std::thread::sleep(Duration::from_millis(1100));
        object("hub/tmp/fresh").await;
        drop(unfinished("hub/tmp/fresh-upload", true).await);
        slow.put_part(Bytes::from(data(MIB, 10)).into()).await.expect("a part");
        drop(slow);

        // An upload in progress in this process, its multipart upload open.
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, String>>();
        let writer = s.clone();
        let body = data(7 * MIB, 11);
        let upload = tokio::spawn(async move { writer.put(rx, Expect::default()).await });
        tx.unbounded_send(Ok(Bytes::copy_from_slice(&body[..6 * MIB])))
            .expect("send");
        let mut mine = None;
        for _ in 0..600 {
            mine = open_upload_keys(&endpoint)
                .await
                .into_iter()
                .find(|k| k.starts_with("hub/tmp/") && !k.contains("upload"));
            if mine.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mine = mine.expect("the upload in progress is open");

        let swept = s.remove_orphans(cutoff).await.expect("sweep");
        assert_eq!((swept.objects, swept.uploads), (1, 2), "{swept:?}");
        let objects = s.list_keys("").await.expect("list");
        assert_eq!(objects, vec!["blobs/sha256/old".to_string(), "tmp/fresh".into()]);
        let mut open = vec![
            "hub/tmp/fresh-upload".to_string(),
            "hub/tmp/slow-upload".into(),
            "other/tmp/stale-upload".into(),
            mine.clone(),
        ];
        open.sort();
        assert_eq!(open_upload_keys(&endpoint).await, open);

        // A cutoff in the future makes everything stale but this process's
        // upload in progress, which then finishes.
        let swept = s
            .remove_orphans(SystemTime::now() + Duration::from_secs(86_400))
            .await
            .expect("sweep");
        assert_eq!((swept.objects, swept.uploads), (1, 2), "{swept:?}");
        let mut open = vec!["other/tmp/stale-upload".to_string(), mine];
        open.sort();
        assert_eq!(open_upload_keys(&endpoint).await, open);
        tx.unbounded_send(Ok(Bytes::copy_from_slice(&body[6 * MIB..])))
            .expect("send");
        drop(tx);
        let stored = upload.await.expect("join").expect("the upload finishes");
        assert!(read_all(&s, &stored.key).await == body, "the upload is intact");
        assert_eq!(
            open_upload_keys(&endpoint).await,
            vec!["other/tmp/stale-upload".to_string()]
        );
        assert!(s.list_keys("tmp/").await.expect("list").is_empty());
    });
}
