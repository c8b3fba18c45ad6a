//! What a hub that died leaves in a local store, and the sweeps that remove
//! it (docs/hub.md, "Crashes and the store"): temporary objects and
//! unfinished uploads older than the grace go, younger ones and this
//! process's uploads in progress stay; blobs nothing references go once
//! they are older than the grace. The same on S3 is in `s3.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kiln_hub::model::*;
use kiln_hub::store::{Expect, Orphans, Store};
use sha2::{Digest, Sha256};

const HOUR: Duration = Duration::from_secs(3600);

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Sets a file's modification time `age` in the past.
fn backdate(p: &Path, age: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.set_modified(SystemTime::now() - age)
        .unwrap_or_else(|e| panic!("backdate {}: {e}", p.display()));
}

/// The names in a directory, sorted (none if it is missing).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn plant(dir: &Path, name: &str, age: Duration) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, name).expect("plant");
    backdate(&p, age);
    p
}

/// A local store: temporary objects (`tmp/NAME`, finished but never moved)
/// and unfinished uploads (`tmp/NAME#N`, object_store's staging files)
/// that a killed hub left go once older than the cutoff; younger ones stay,
/// and so does an upload this process is writing, however old the cutoff
/// says it is — it then finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_orphans_go_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("file://{}", dir.path().display())).expect("open");
    assert_eq!(store.grace, HOUR, "the default grace");
    let tmp = dir.path().join("tmp");
    // Nothing to do on a store that never had an upload.
    let none = store.remove_orphans(SystemTime::now() + HOUR).await.expect("sweep");
    assert_eq!(none, Orphans::default());
    std::fs::create_dir_all(&tmp).expect("tmp");
    plant(&tmp, "1700000000-aaaa", 2 * HOUR);
    plant(&tmp, "1700000000-bbbb#1", 2 * HOUR);
    plant(&tmp, "cccc#2", 2 * HOUR);
    plant(&tmp, "dddd", Duration::ZERO);
    plant(&tmp, "eeee#1", Duration::ZERO);

    // An upload in progress in this process.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, String>>();
    let writer = store.clone();
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let first = Bytes::copy_from_slice(&body[..1_000_000]);
    let rest = Bytes::copy_from_slice(&body[1_000_000..]);
    let before = names(&tmp);
    let upload = tokio::spawn(async move { writer.put(rx, Expect::default()).await });
    tx.unbounded_send(Ok(first)).expect("send");
    let mut staging = None;
    for _ in 0..600 {
        staging = names(&tmp).into_iter().find(|n| !before.contains(n));
        if staging.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let staging = staging.expect("the upload in progress has its staging file");
    assert!(staging.contains('#'), "{staging}");

    let swept = store.remove_orphans(SystemTime::now() - HOUR).await.expect("sweep");
    assert_eq!(swept, Orphans { objects: 3, uploads: 0 });
    let mut left = vec!["dddd".to_string(), "eeee#1".into(), staging.clone()];
    left.sort();
    assert_eq!(names(&tmp), left, "the stale are gone, the fresh stay");

    // A cutoff in the future makes everything stale but this process's
    // upload in progress.
    let swept = store
        .remove_orphans(SystemTime::now() + 24 * HOUR)
        .await
        .expect("sweep");
    assert_eq!(swept, Orphans { objects: 2, uploads: 0 });
    assert_eq!(names(&tmp), vec![staging.clone()]);
    tx.unbounded_send(Ok(rest)).expect("send");
    drop(tx);
    let stored = upload.await.expect("join").expect("the upload finishes");
    assert_eq!(stored.sha256, sha256(&body));
    let (size, stream) = store.get(&stored.key).await.expect("get");
    assert_eq!(size, body.len() as u64);
    let got: Vec<Bytes> = stream.try_collect().await.expect("read");
    assert!(got.concat() == body, "the upload is intact");
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
}

/// A hub on a local store and the database `t`.
async fn hub(t: &common::TestDb, store: &Path) -> (kiln_hub::api::Hub, Principal) {
    let token = kiln_hub::bootstrap_user(&t.url, "admin", None, &["admin".into()])
        .await
        .expect("bootstrap");
    let opts = kiln_hub::ServeOptions {
        db: t.url.clone(),
        store: format!("file://{}", store.display()),
        ..Default::default()
    };
    let hub = kiln_hub::open(&opts).await.expect("open the hub");
    let who = hub
        .db
        .principal_by_token(&kiln_hub::auth::token_hash(&token))
        .await
        .expect("principal")
        .expect("the admin's token");
    (hub, who)
}

async fn put(store: &Store, b: &[u8]) -> String {
    let body = futures::stream::iter(vec![Ok::<_, String>(Bytes::copy_from_slice(b))]);
    store.put(body.boxed(), Expect::default()).await.expect("put").key
}

// The store sweep: blobs an upload stored but never recorded (the hub died
// in between) go once older than the grace; referenced blobs and young
// ones stay; stale temporary objects go in the same run.
both!(
    store_sweep_removes_old_unreferenced_blobs,
    |t: common::TestDb| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (hub, who) = hub(&t, dir.path()).await;
        let (image, artifact, orphan, young) = (b"hsqs image".as_slice(), b"artifact", b"orphan", b"young");
        let image_key = put(&hub.store, image).await;
        let artifact_key = put(&hub.store, artifact).await;
        let orphan_key = put(&hub.store, orphan).await;
        let young_key = put(&hub.store, young).await;
        let img = Image {
            name: "fw".into(),
            version: "1".into(),
            format: "squashfs".into(),
            size: image.len() as i64,
            sha256: sha256(image),
            uploader: "admin".into(),
            time: 0,
        };
        hub.db.add_image(&who, &img, &image_key).await.expect("image row");
        let nb: NewBuild = serde_json::from_value(serde_json::json!({
            "name": "fw", "version": "1", "release": "1",
            "artifacts": [{"file": "a.bin", "format": "raw", "size": artifact.len(), "sha256": sha256(artifact)}]
        }))
        .expect("a build");
        hub.db.create_build(&who, &nb).await.expect("build");
        hub.db
            .set_artifact_key(&who, "fw-1-1", "a.bin", &artifact_key)
            .await
            .expect("artifact row");
        for k in [&image_key, &artifact_key, &orphan_key] {
            backdate(&dir.path().join(k), 2 * HOUR);
        }
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp");
        plant(&tmp, "1700000000-0123#1", 2 * HOUR);

        let swept = kiln_hub::api::sweep_store(&hub).await.expect("sweep");
        assert_eq!(swept.blobs, 1, "{swept:?}");
        assert_eq!(swept.orphans, Orphans { objects: 1, uploads: 0 });
        let mut left = vec![image_key.clone(), artifact_key.clone(), young_key.clone()];
        left.sort();
        assert_eq!(hub.store.list_keys("").await.expect("list"), left);

        // Once old enough, the young orphan goes too.
        let mut hub = hub;
        hub.store.grace = Duration::ZERO;
        let swept = kiln_hub::api::sweep_store(&hub).await.expect("sweep");
        assert_eq!(swept.blobs, 1, "{swept:?}");
        assert_eq!(
            hub.store.list_keys("").await.expect("list"),
            left.into_iter().filter(|k| *k != young_key).collect::<Vec<_>>()
        );
    }
);
