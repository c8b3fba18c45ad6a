//! The hub's blob store (object_store): build artifacts and source images,
//! by sha256. Uploads stream into a temporary object while they are hashed,
//! are checked against what the client declared, and only then move to
//! their content address; a failed or wrong upload leaves nothing behind.
//!
//! A hub that dies mid-upload leaves its temporary object (on S3, an
//! unfinished multipart upload): [`Store::remove_orphans`] removes those
//! untouched for longer than [`Store::grace`], never one this process is
//! still writing (docs/hub.md, "Crashes and the store").

mod s3;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::{HubError, Result};

#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The same store for requests that may rightly take long: downloads,
    /// which stream at their reader's pace, and the server-side copy that
    /// publishes an upload. On S3 their request timeout is an hour instead
    /// of object_store's 30 s (which would also bound a download's body).
    long: Arc<dyn ObjectStore>,
    pub url: String,
    /// How long a temporary object or an unfinished upload must have been
    /// left untouched before a sweep takes it for a dead hub's, and how old
    /// an unreferenced blob must be before it goes. Another hub sharing the
    /// store may be writing anything younger. [`GRACE`] unless set.
    pub grace: Duration,
    /// What object_store does not list.
    backend: Backend,
    /// The temporary objects of this process's uploads in progress, which
    /// no sweep removes, however old.
    writing: Arc<Mutex<HashSet<String>>>,
}

/// Where unfinished uploads are: a local store's are files `tmp/NAME#N`
/// (object_store's staging files, which it does not list) under the
/// store's directory; S3's are multipart uploads.
#[derive(Clone)]
enum Backend {
    Local(PathBuf),
    S3(Arc<s3::Uploads>),
}

/// The default [`Store::grace`]: an hour.
pub const GRACE: Duration = Duration::from_secs(3600);

/// The prefix of temporary objects.
const TMP: &str = "tmp/";

/// What [`Store::remove_orphans`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Orphans {
    /// Temporary objects (on a local store, also unfinished uploads).
    pub objects: usize,
    /// Unfinished multipart uploads (S3).
    pub uploads: usize,
}

/// Parts (of 5 MiB) an upload may have in flight: the memory it may hold.
const PARTS_IN_FLIGHT: usize = 4;

/// The request timeout of [`Store::long`] on S3, unless `AWS_TIMEOUT` says.
const LONG_TIMEOUT: &str = "1h";

/// What an upload must be.
#[derive(Default)]
pub struct Expect<'a> {
    pub sha256: Option<&'a str>,
    pub size: Option<u64>,
}

pub struct Stored {
    pub key: String,
    pub sha256: String,
    pub size: u64,
    /// The first bytes, for format checks.
    pub head: Vec<u8>,
}

fn io(what: &str) -> impl Fn(object_store::Error) -> HubError + '_ {
    move |e| HubError::internal(format!("store: {what}: {e}"))
}

impl Store {
    /// `file://PATH` (created if missing), or an S3-compatible bucket:
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&allow_http=true]`, with
    /// credentials from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, …) and the
    /// URL's options over them. With an endpoint (MinIO, Ceph, moto…)
    /// requests are path-style, and an `http://` endpoint allows plain HTTP.
    pub fn open(url: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path)
                .map_err(|e| HubError::internal(format!("cannot create the store {path}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| HubError::internal(format!("cannot open the store {path}: {e}")))?;
            let inner: Arc<dyn ObjectStore> = Arc::new(fs);
            return Ok(Store {
                long: inner.clone(),
                inner,
                url: url.to_string(),
                grace: GRACE,
                backend: Backend::Local(PathBuf::from(path)),
                writing: Arc::default(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::open_s3(url, rest);
        }
        Err(HubError::bad_request(format!(
            "unsupported store URL `{url}`: use file://PATH or s3://BUCKET[/PREFIX]?endpoint=URL"
        )))
    }

    fn open_s3(url: &str, rest: &str) -> Result<Store> {
        use object_store::ClientConfigKey;
        use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
        let bad = |m: String| HubError::bad_request(format!("cannot open the store {url}: {m}"));
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket (s3://BUCKET[/PREFIX]?endpoint=URL)".into()));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut http_endpoint = false;
        let mut allow_http = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "endpoint" => {
                    let e = url::Url::parse(&v).map_err(|e| bad(format!("endpoint `{v}`: {e}")))?;
                    match e.scheme() {
                        "http" => http_endpoint = true,
                        "https" => http_endpoint = false,
                        s => return Err(bad(format!("endpoint `{v}`: use http:// or https://, not {s}://"))),
                    }
                    b = b.with_endpoint(v.as_ref()).with_virtual_hosted_style_request(false);
                }
                "region" if !v.is_empty() => b = b.with_region(v.as_ref()),
                "region" => return Err(bad("an empty region".into())),
                "allow_http" => {
                    allow_http = Some(match v.as_ref() {
                        "true" => true,
                        "false" => false,
                        v => return Err(bad(format!("allow_http must be true or false, not `{v}`"))),
                    })
                }
                other => {
                    return Err(bad(format!(
                        "unknown option `{other}` (known: endpoint, region, allow_http)"
                    )));
                }
            }
        }
        b = match allow_http {
            Some(false) if http_endpoint => {
                return Err(bad("allow_http=false contradicts an http:// endpoint".into()));
            }
            Some(a) => b.with_allow_http(a),
            None if http_endpoint => b.with_allow_http(true),
            None => b,
        };
        let long = if std::env::var_os("AWS_TIMEOUT").is_some() {
            b.clone()
        } else {
            b.clone()
                .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), LONG_TIMEOUT)
        };
        let build = |b: &AmazonS3Builder| -> Result<(Arc<AmazonS3>, Arc<dyn ObjectStore>)> {
            let s3 = Arc::new(
                b.clone()
                    .build()
                    .map_err(|e| HubError::internal(format!("cannot open the store {url}: {e}")))?,
            );
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                s3.clone()
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(AmazonS3::clone(&s3), prefix))
            };
            Ok((s3, store))
        };
        let (s3, inner) = build(&b)?;
        Ok(Store {
            inner,
            long: build(&long)?.1,
            url: url.to_string(),
            grace: GRACE,
            backend: Backend::S3(Arc::new(s3::Uploads::new(&b, s3, prefix)?)),
            writing: Arc::default(),
        })
    }

    /// Streams `body` into the store under its sha256: into a temporary
    /// object (in parts, with at most [`PARTS_IN_FLIGHT`] in memory) while
    /// it is hashed, then, once it matched `expect`, to
    /// `blobs/sha256/<hex>`. A failed or mismatched upload leaves nothing.
    pub async fn put<S, E>(&self, body: S, expect: Expect<'_>) -> Result<Stored>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        Ok(self.put_checked(body, expect, async { Ok(()) }).await?.0)
    }

    /// [`Store::put`], with `check` awaited once the whole upload is in the
    /// temporary object and matched `expect`, before it is published: when
    /// it fails, the temporary object is deleted and its error returned.
    pub async fn put_checked<S, E, T>(
        &self,
        mut body: S,
        expect: Expect<'_>,
        check: impl Future<Output = Result<T>>,
    ) -> Result<(Stored, T)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let name = format!("{TMP}{}", hex::encode(nonce));
        let _writing = Writing::new(&self.writing, &name);
        let tmp = ObjPath::from(name.as_str());
        let upload = self.inner.put_multipart(&tmp).await.map_err(io("starting an upload"))?;
        let mut w = WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::new();
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => {
                    size += b.len() as u64;
                    if let Some(max) = expect.size
                        && size > max
                    {
                        failure = Some(HubError::bad_request(format!(
                            "upload is larger than the declared {max} bytes"
                        )));
                        break;
                    }
                    if head.len() < 4096 {
                        head.extend_from_slice(&b[..b.len().min(4096 - head.len())]);
                    }
                    hasher.update(&b);
                    // Back pressure: a client faster than the store waits
                    // rather than filling the hub's memory with parts.
                    if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        failure = Some(io("uploading a part")(e));
                        break;
                    }
                    w.put(b);
                }
                Err(e) => {
                    failure = Some(HubError::bad_request(format!("upload interrupted: {e}")));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let _ = w.abort().await;
            return Err(e);
        }
        // (A part that fails here leaves an unfinished multipart upload on
        // S3, which lists no object: WriteMultipart::finish aborts only when
        // the completion itself fails. remove_orphans aborts it later.)
        w.finish().await.map_err(io("finishing an upload"))?;
        let sha256 = hex::encode(hasher.finalize());
        let mismatch = match (expect.sha256, expect.size) {
            (Some(want), _) if !want.eq_ignore_ascii_case(&sha256) => {
                Some(format!("sha256 mismatch: declared {want}, received {sha256}"))
            }
            (_, Some(want)) if want != size => Some(format!("size mismatch: declared {want} bytes, received {size}")),
            _ => None,
        };
        if let Some(m) = mismatch {
            let _ = self.inner.delete(&tmp).await;
            return Err(HubError::bad_request(m));
        }
        let checked = match check.await {
            Ok(t) => t,
            Err(e) => {
                let _ = self.inner.delete(&tmp).await;
                return Err(e);
            }
        };
        let key = format!("blobs/sha256/{sha256}");
        let dest = ObjPath::from(key.as_str());
        // A plain rename, one path for both backends: a file rename, or a
        // server-side copy then a delete on S3 (which has no
        // rename-if-absent without extra setup). The address is the
        // content's, so an object already there is replaced by the same
        // bytes, and "already exists" is success.
        if let Err(e) = self.long.rename(&tmp, &dest).await {
            // The copy may have gone through and only the delete failed,
            // or the blob was there already: either way it is in place.
            let in_place =
                matches!(e, object_store::Error::AlreadyExists { .. }) || self.inner.head(&dest).await.is_ok();
            let _ = self.inner.delete(&tmp).await;
            if !in_place {
                return Err(io("storing an upload")(e));
            }
        }
        Ok((
            Stored {
                key,
                sha256,
                size,
                head,
            },
            checked,
        ))
    }

    /// The object's bytes as a stream, and its size.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<(
        u64,
        impl Stream<Item = std::result::Result<Bytes, object_store::Error>> + use<>,
    )> {
        let r = self.long.get(&ObjPath::from(key)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => HubError::not_found(format!("{key} is missing from the store")),
            e => io("reading")(e),
        })?;
        let size = r.meta.size;
        Ok((size, r.into_stream()))
    }

    /// Every key under `prefix` (e.g. `blobs/`; whole path segments, so
    /// `blob` matches nothing of `blobs/…`; `""` is everything), sorted,
    /// relative to the store URL's own prefix. Unfinished uploads are not
    /// keys: S3 lists no multipart upload before it completes.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let p = ObjPath::from(prefix);
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(io("listing"))?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes `key`; a missing key is no error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io("deleting")(e)),
        }
    }

    /// The keys under `prefix` last modified before `cutoff`, sorted.
    pub async fn keys_older_than(&self, prefix: &str, cutoff: SystemTime) -> Result<Vec<String>> {
        let p = ObjPath::from(prefix);
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&p))
            .try_filter(|m| std::future::ready(SystemTime::from(m.last_modified) < cutoff))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(io("listing"))?;
        keys.sort();
        Ok(keys)
    }

    /// When `key` was last written; `None` if it is missing.
    pub async fn modified(&self, key: &str) -> Result<Option<SystemTime>> {
        match self.inner.head(&ObjPath::from(key)).await {
            Ok(m) => Ok(Some(SystemTime::from(m.last_modified))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io("reading the metadata of")(e)),
        }
    }

    /// Removes what uploads that will never finish left behind — a hub
    /// killed mid-upload: temporary objects and (on S3) unfinished multipart
    /// uploads under `tmp/` last touched before `cutoff` (a sweep passes now
    /// minus [`Store::grace`]), by the store's own times: when a temporary
    /// object was last written, when a multipart upload started and when it
    /// last received a part. An upload in progress in another hub sharing
    /// the store thus stays as long as it moves; one in progress in this
    /// process always stays.
    pub async fn remove_orphans(&self, cutoff: SystemTime) -> Result<Orphans> {
        match &self.backend {
            Backend::Local(root) => {
                let (root, writing) = (root.join("tmp"), self.writing.clone());
                let objects = tokio::task::spawn_blocking(move || remove_local_orphans(&root, &writing, cutoff))
                    .await
                    .map_err(|e| HubError::internal(format!("store: removing orphans: {e}")))??;
                Ok(Orphans { objects, uploads: 0 })
            }
            Backend::S3(uploads) => {
                let objects = self.remove_listed_orphans(cutoff).await?;
                let mut aborted = 0;
                for u in uploads.list(TMP).await? {
                    if self.is_writing(&u.key) || u.initiated.is_some_and(|t| t >= cutoff) {
                        continue;
                    }
                    if uploads.last_part(&u).await?.is_some_and(|t| t >= cutoff) || self.is_writing(&u.key) {
                        continue;
                    }
                    uploads.abort(&u).await?;
                    aborted += 1;
                }
                Ok(Orphans {
                    objects,
                    uploads: aborted,
                })
            }
        }
    }

    /// The temporary objects object_store lists (finished uploads that were
    /// never moved to their address) that are orphans.
    async fn remove_listed_orphans(&self, cutoff: SystemTime) -> Result<usize> {
        let listed: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&ObjPath::from(TMP)))
            .try_collect()
            .await
            .map_err(io("listing temporary objects"))?;
        let mut n = 0;
        for m in listed {
            let key = m.location.to_string();
            if self.is_writing(&key) || SystemTime::from(m.last_modified) >= cutoff {
                continue;
            }
            self.delete(&key).await?;
            n += 1;
        }
        Ok(n)
    }

    fn is_writing(&self, key: &str) -> bool {
        is_writing(&self.writing, key)
    }
}

/// Whether `key` (`tmp/NAME`, or a local staging file `tmp/NAME#N`) is an
/// upload in progress in this process.
fn is_writing(writing: &Mutex<HashSet<String>>, key: &str) -> bool {
    let name = key.split_once('#').map_or(key, |(name, _)| name);
    writing.lock().unwrap_or_else(|p| p.into_inner()).contains(name)
}

/// [`Store::remove_orphans`] on a local store's `tmp` directory: its files
/// are finished uploads never moved (`NAME`) and unfinished ones
/// (`NAME#N`), both older than `cutoff` by their modification time.
fn remove_local_orphans(dir: &std::path::Path, writing: &Mutex<HashSet<String>>, cutoff: SystemTime) -> Result<usize> {
    let fail = |what: &str, e: std::io::Error| HubError::internal(format!("store: {what} {}: {e}", dir.display()));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(fail("listing", e)),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| fail("listing", e))?;
        let key = format!("{TMP}{}", entry.file_name().to_string_lossy());
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail("reading", e)),
        };
        if !meta.is_file() {
            continue;
        }
        if is_writing(writing, &key) || meta.modified().is_ok_and(|t| t >= cutoff) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("removing an orphan in", e)),
        }
    }
    Ok(n)
}

/// Marks a temporary object as this process's upload in progress for as
/// long as it lives.
struct Writing {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Writing {
    fn new(set: &Arc<Mutex<HashSet<String>>>, name: &str) -> Writing {
        set.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string());
        Writing {
            set: set.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
    }
}
