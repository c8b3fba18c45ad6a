//! Unfinished multipart uploads on S3, which object_store can start, fill
//! and abort but not list: the listings (`ListMultipartUploads`,
//! `ListParts`) are signed GET requests made with object_store's own signer
//! and HTTP client, and their XML answers are read here. The sweep uses them
//! to abort what a hub that died left under `tmp/` (docs/hub.md, "Crashes
//! and the store").

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{ClientConfigKey, ClientOptions};

use crate::error::{HubError, Result};

/// The client settings of the store that the listings keep too.
const CLIENT_KEYS: [ClientConfigKey; 7] = [
    ClientConfigKey::AllowHttp,
    ClientConfigKey::AllowInvalidCertificates,
    ClientConfigKey::ConnectTimeout,
    ClientConfigKey::ProxyUrl,
    ClientConfigKey::ProxyCaCertificate,
    ClientConfigKey::ProxyExcludes,
    ClientConfigKey::Timeout,
];

/// Listing pages followed at most, against a server whose markers never end.
const MAX_PAGES: usize = 10_000;

/// The multipart uploads of one bucket, under the store's key prefix.
pub(super) struct Uploads {
    s3: Arc<AmazonS3>,
    http: HttpClient,
    /// `https://HOST/BUCKET` (path-style) or `https://BUCKET.HOST`.
    bucket_url: String,
    region: String,
    sign: bool,
    /// The store's key prefix in the bucket: `""` or `"some/prefix/"`.
    prefix: String,
}

/// An unfinished multipart upload.
pub(super) struct Upload {
    /// The object's key relative to the store (`tmp/…`).
    pub key: String,
    /// The key in the bucket.
    bucket_key: String,
    id: String,
    pub initiated: Option<SystemTime>,
}

fn err(what: &str) -> impl Fn(String) -> HubError + '_ {
    move |e| HubError::internal(format!("store: {what}: {e}"))
}

impl Uploads {
    /// The listings of the store that `b` builds (as `s3`), whose keys live
    /// under `prefix` in the bucket.
    pub(super) fn new(b: &AmazonS3Builder, s3: Arc<AmazonS3>, prefix: &str) -> Result<Uploads> {
        let get = |k: AmazonS3ConfigKey| b.get_config_value(&k);
        let bad = err("multipart listings");
        let bucket = get(AmazonS3ConfigKey::Bucket).ok_or_else(|| bad("no bucket".into()))?;
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let yes = |k: AmazonS3ConfigKey| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        // The bucket's address as object_store itself derives it.
        let virtual_hosted = yes(AmazonS3ConfigKey::VirtualHostedStyleRequest);
        let bucket_url = match get(AmazonS3ConfigKey::Endpoint) {
            Some(e) if virtual_hosted => e.trim_end_matches('/').to_string(),
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None if virtual_hosted => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            None => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let mut options = ClientOptions::new();
        for k in CLIENT_KEYS {
            if let Some(v) = get(AmazonS3ConfigKey::Client(k)) {
                options = options.with_config(k, v);
            }
        }
        let http = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| bad(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        Ok(Uploads {
            s3,
            http,
            bucket_url,
            region,
            sign: !yes(AmazonS3ConfigKey::SkipSignature),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// A signed GET of `url`; the answer's text.
    async fn get(&self, url: url::Url) -> Result<String> {
        let e = err("listing multipart uploads");
        let mut req = axum::http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|x| e(x.to_string()))?;
        if self.sign {
            let cred = self
                .s3
                .credentials()
                .get_credential()
                .await
                .map_err(|x| e(x.to_string()))?;
            AwsAuthorizer::new(&cred, "s3", &self.region).authorize(&mut req, None);
        }
        let resp = self.http.execute(req).await.map_err(|x| e(x.to_string()))?;
        let status = resp.status();
        let body = resp.into_body().bytes().await.map_err(|x| e(x.to_string()))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            let code = element(&text, "Code").unwrap_or_default();
            return Err(e(format!("{url} answered {status} {code}")));
        }
        Ok(text)
    }

    fn url(&self, key: &str, query: &[(&str, &str)]) -> Result<url::Url> {
        let mut s = self.bucket_url.clone();
        if !key.is_empty() {
            s.push('/');
            s.push_str(&key.split('/').map(encode).collect::<Vec<_>>().join("/"));
        }
        let mut u = url::Url::parse(&s).map_err(|e| err("multipart listings")(format!("`{s}`: {e}")))?;
        u.query_pairs_mut().extend_pairs(query);
        Ok(u)
    }

    /// The unfinished uploads whose keys start with `under` (relative to
    /// the store).
    pub(super) async fn list(&self, under: &str) -> Result<Vec<Upload>> {
        let prefix = format!("{}{under}", self.prefix);
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        for _ in 0..MAX_PAGES {
            let mut q = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if !key_marker.is_empty() {
                q.push(("key-marker", &key_marker));
                q.push(("upload-id-marker", &id_marker));
            }
            let xml = self.get(self.url("", &q)?).await?;
            for u in elements(&xml, "Upload") {
                let (Some(bucket_key), Some(id)) = (element(u, "Key"), element(u, "UploadId")) else {
                    continue;
                };
                let Some(key) = bucket_key.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(Upload {
                    key: key.to_string(),
                    id,
                    initiated: element(u, "Initiated").as_deref().and_then(parse_time),
                    bucket_key,
                });
            }
            let next = (element(&xml, "NextKeyMarker"), element(&xml, "NextUploadIdMarker"));
            match next {
                (Some(k), Some(i)) if truncated(&xml) && (k != key_marker || i != id_marker) => {
                    (key_marker, id_marker) = (k, i);
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// When the upload last received a part, if it has any.
    pub(super) async fn last_part(&self, u: &Upload) -> Result<Option<SystemTime>> {
        let mut last = None;
        let mut marker = String::new();
        for _ in 0..MAX_PAGES {
            let mut q = vec![("uploadId", u.id.as_str())];
            if !marker.is_empty() {
                q.push(("part-number-marker", &marker));
            }
            let xml = match self.get(self.url(&u.bucket_key, &q)?).await {
                Ok(x) => x,
                // Finished or aborted since it was listed: nothing to do.
                Err(e) if e.message.contains("NoSuchUpload") => return Ok(None),
                Err(e) => return Err(e),
            };
            for p in elements(&xml, "Part") {
                let t = element(p, "LastModified").as_deref().and_then(parse_time);
                last = last.max(t);
            }
            match element(&xml, "NextPartNumberMarker") {
                Some(m) if truncated(&xml) && m != marker => marker = m,
                _ => break,
            }
        }
        Ok(last)
    }

    /// Aborts the upload, dropping its parts; one already gone is no error.
    pub(super) async fn abort(&self, u: &Upload) -> Result<()> {
        match self
            .s3
            .abort_multipart(&ObjPath::from(u.bucket_key.as_str()), &u.id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err("aborting an unfinished upload")(e.to_string())),
        }
    }
}

fn truncated(xml: &str) -> bool {
    element(xml, "IsTruncated").is_some_and(|v| v.trim() == "true")
}

/// A key's path segment as S3 signs it: everything but the unreserved
/// characters percent-encoded.
fn encode(segment: &str) -> String {
    let mut s = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The bodies of the `<tag>…</tag>` elements of `xml`, in order (elements
/// of that name are not nested in S3's listings).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else {
            break;
        };
        out.push(&body[..j]);
        rest = &body[j + close.len()..];
    }
    out
}

/// The text of the first `<tag>` element of `xml`, unescaped.
fn element(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|t| unescape(t))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else {
            break;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(|n| n.ok())
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An S3 time, `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC).
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (time, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = time.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let valid = (1..=12).contains(&m) && (1..=31).contains(&day) && hh < 24 && mm < 60 && ss <= 60;
    if !valid || hh < 0 || mm < 0 || ss < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let nanos = format!("{frac:0<9}").get(..9)?.parse::<u32>().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let at = |s: &str| parse_time(s).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(at("2010-11-10T20:48:33.000Z"), Some(Duration::from_secs(1_289_422_113)));
        assert_eq!(
            at("2024-02-29T23:59:59.5Z"),
            Some(Duration::new(1_709_251_199, 500_000_000))
        );
        assert_eq!(
            at("2000-03-01T00:00:00.123456Z"),
            Some(Duration::new(951_868_800, 123_456_000))
        );
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-13-01T00:00:00Z",
            "2024-01-01T25:00:00Z",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn listings() {
        let xml = "<?xml version=\"1.0\"?><ListMultipartUploadsResult xmlns=\"x\"><Bucket>b</Bucket>\
                   <KeyMarker></KeyMarker><NextKeyMarker>p/tmp/2</NextKeyMarker><IsTruncated>true</IsTruncated>\
                   <Upload><Key>p/tmp/1</Key><UploadId>a&amp;b</UploadId><Initiator><ID>i</ID></Initiator>\
                   <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>\
                   <Upload><Key>p/tmp/&#x32;</Key><UploadId>c</UploadId></Upload></ListMultipartUploadsResult>";
        let ups = elements(xml, "Upload");
        assert_eq!(ups.len(), 2);
        assert_eq!(element(ups[0], "Key").as_deref(), Some("p/tmp/1"));
        assert_eq!(element(ups[0], "UploadId").as_deref(), Some("a&b"));
        assert_eq!(element(ups[1], "Key").as_deref(), Some("p/tmp/2"));
        assert_eq!(element(ups[1], "Initiated"), None);
        assert_eq!(element(xml, "NextKeyMarker").as_deref(), Some("p/tmp/2"));
        assert!(truncated(xml));
        assert_eq!(unescape("a &unknown; &lt;b&gt; &#65;&"), "a &unknown; <b> A&");
        assert_eq!(encode("a b/c~d"), "a%20b%2Fc~d");
    }
}
