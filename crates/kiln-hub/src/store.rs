//! The hub's blob store (object_store): build artifacts and source images,
//! by sha256. Uploads stream into a temporary object while they are hashed,
//! are checked against what the client declared, and only then move to
//! their content address; a failed or wrong upload leaves nothing behind.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::{HubError, Result};

#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    pub url: String,
}

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
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, …). With
    /// an endpoint (MinIO, Ceph, moto…) requests are path-style.
    pub fn open(url: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path)
                .map_err(|e| HubError::internal(format!("cannot create the store {path}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| HubError::internal(format!("cannot open the store {path}: {e}")))?;
            return Ok(Store {
                inner: Arc::new(fs),
                url: url.to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::open_s3(url, rest);
        }
        Err(HubError::bad_request(format!(
            "unsupported store URL `{url}`: use file://PATH or s3://BUCKET?endpoint=URL"
        )))
    }

    fn open_s3(url: &str, rest: &str) -> Result<Store> {
        use object_store::aws::AmazonS3Builder;
        let bad = |m: String| HubError::bad_request(format!("store URL `{url}`: {m}"));
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            b = match k.as_ref() {
                "endpoint" => {
                    let b = b.with_endpoint(v.as_ref()).with_virtual_hosted_style_request(false);
                    if v.starts_with("http://") {
                        b.with_allow_http(true)
                    } else {
                        b
                    }
                }
                "region" => b.with_region(v.as_ref()),
                "allow_http" => b.with_allow_http(v == "true"),
                other => {
                    return Err(bad(format!(
                        "unknown option `{other}` (known: endpoint, region, allow_http)"
                    )));
                }
            };
        }
        let s3 = b
            .build()
            .map_err(|e| HubError::internal(format!("cannot open the store {url}: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(Store {
            inner,
            url: url.to_string(),
        })
    }

    /// Streams `body` into the store under its sha256.
    pub async fn put<S, E>(&self, mut body: S, expect: Expect<'_>) -> Result<Stored>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let tmp = ObjPath::from(format!("tmp/{}", hex::encode(nonce)));
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
                    w.write(&b);
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
        let key = format!("blobs/sha256/{sha256}");
        let dest = ObjPath::from(key.as_str());
        // A plain rename (S3 has no rename-if-absent without extra setup):
        // the address is the content's, so replacing an object that is
        // already there replaces it with the same bytes.
        if let Err(e) = self.inner.rename(&tmp, &dest).await {
            let _ = self.inner.delete(&tmp).await;
            return Err(io("storing an upload")(e));
        }
        Ok(Stored {
            key,
            sha256,
            size,
            head,
        })
    }

    /// The object's bytes as a stream, and its size.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<(
        u64,
        impl Stream<Item = std::result::Result<Bytes, object_store::Error>> + use<>,
    )> {
        let r = self.inner.get(&ObjPath::from(key)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => HubError::not_found(format!("{key} is missing from the store")),
            e => io("reading")(e),
        })?;
        let size = r.meta.size;
        Ok((size, r.into_stream()))
    }

    /// Every key under `prefix` (e.g. `blobs/`), sorted.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let p = ObjPath::from(prefix);
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&p))
            .map(|m| m.map(|m| m.location.to_string()))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(io("listing"))?;
        keys.sort();
        Ok(keys)
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io("deleting")(e)),
        }
    }
}

/// The image format a blob's first bytes show, if any.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"hsqs") {
        Some("squashfs")
    } else if head.len() >= 1028 && head[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
        Some("erofs")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("tar.zst")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("tar.xz")
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some("tar.gz")
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}
