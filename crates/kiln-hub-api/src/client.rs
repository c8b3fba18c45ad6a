//! The client's transport (blocking): JSON calls, plain-text posts, and
//! streamed, verified uploads and downloads. The endpoints themselves are
//! the typed methods of `endpoints.rs`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// HTTP status, if the hub answered.
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

fn local(code: &str, message: impl Into<String>) -> ClientError {
    ClientError {
        status: None,
        code: code.into(),
        message: message.into(),
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A hub's API at `/api/v1`, with an optional bearer token.
pub struct Client {
    base: url::Url,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Client {
    pub fn new(hub: &str, token: Option<String>) -> Result<Client> {
        let mut base = url::Url::parse(hub).map_err(|e| local("bad_url", format!("bad hub URL `{hub}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(local(
                "bad_url",
                format!("bad hub URL `{hub}`: use http:// or https://"),
            ));
        }
        base.path_segments_mut()
            .map_err(|()| local("bad_url", format!("bad hub URL `{hub}`")))?
            .pop_if_empty()
            .extend(["api", "v1"]);
        let http = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .map_err(|e| local("client", format!("HTTP client: {e}")))?;
        Ok(Client { base, token, http })
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        u
    }

    fn request(&self, m: Method, url: url::Url) -> reqwest::blocking::RequestBuilder {
        let r = match m {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Put => self.http.put(url),
            Method::Patch => self.http.patch(url),
            Method::Delete => self.http.delete(url),
        };
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn send(&self, r: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let resp = r.send().map_err(|e| {
            local(
                "unreachable",
                format!("cannot reach the hub at {}: {}", self.base, root_cause(&e)),
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Err(ClientError {
            status: Some(status),
            code: v["error"]["code"].as_str().unwrap_or("http").to_string(),
            message: v["error"]["message"]
                .as_str()
                .map_or_else(|| format!("the hub answered {status}: {}", text.trim()), str::to_string),
        })
    }

    /// One JSON call. An empty answer (204) reads as JSON null.
    pub(crate) fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        m: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T> {
        let mut r = self.request(m, self.url(segments, query));
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = self.send(r)?;
        let text = resp
            .text()
            .map_err(|e| local("read", format!("reading the hub's answer: {e}")))?;
        let text = if text.trim().is_empty() { "null" } else { text.as_str() };
        serde_json::from_str(text).map_err(|e| local("decode", format!("unexpected answer from the hub: {e}")))
    }

    /// POSTs plain text (a task's log chunk); the answer is ignored.
    pub(crate) fn post_text(&self, segments: &[&str], text: String) -> Result<()> {
        let r = self
            .request(Method::Post, self.url(segments, &[]))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(text);
        self.send(r).map(drop)
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, segments: &[&str], query: &[(&str, String)]) -> Result<T> {
        self.call::<(), T>(Method::Get, segments, query, None)
    }

    /// Streams `file` as the body of a PUT, with its sha256 for the hub to check.
    pub(crate) fn upload<T: DeserializeOwned>(&self, segments: &[&str], file: &Path, sha256: &str) -> Result<T> {
        let f = File::open(file).map_err(|e| local("io", format!("cannot open {}: {e}", file.display())))?;
        let len = f
            .metadata()
            .map_err(|e| local("io", format!("cannot stat {}: {e}", file.display())))?
            .len();
        let r = self
            .request(Method::Put, self.url(segments, &[]))
            .header("x-kiln-sha256", sha256)
            .body(reqwest::blocking::Body::sized(f, len));
        let resp = self.send(r)?;
        resp.json()
            .map_err(|e| local("decode", format!("unexpected answer from the hub: {e}")))
    }

    /// Streams a download into `dest` through a temporary file, verified
    /// against the hub's sha256 before it is renamed into place. Returns
    /// the sha256.
    pub(crate) fn download(&self, segments: &[&str], dest: &Path) -> Result<String> {
        let mut resp = self.send(self.request(Method::Get, self.url(segments, &[])))?;
        let want = resp
            .headers()
            .get("x-kiln-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| local("io", format!("cannot write in {}: {e}", dir.display())))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = resp
                .read(&mut buf)
                .map_err(|e| local("io", format!("download interrupted: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| local("io", format!("writing {}: {e}", dest.display())))?;
        }
        let got = hex::encode(h.finalize());
        if let Some(w) = want
            && !w.eq_ignore_ascii_case(&got)
        {
            return Err(local(
                "checksum",
                format!("download of {} is damaged: sha256 {got}, expected {w}", dest.display()),
            ));
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| local("io", format!("syncing {}: {e}", dest.display())))?;
        tmp.persist(dest)
            .map_err(|e| local("io", format!("cannot move {} into place: {e}", dest.display())))?;
        Ok(got)
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
