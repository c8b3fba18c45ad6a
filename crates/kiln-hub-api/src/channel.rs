//! A device's side of a channel (docs/channels.md): fetch an index and its
//! signature, check the signature with the hub's public key, refuse an
//! index older than one accepted before (a rollback), and download the
//! files it lists, each checked against its size and sha256.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::minisign::{self, PublicKey};
use crate::model::{ChannelFile, ChannelIndex};

/// Why an index is refused.
#[derive(Debug)]
pub enum ChannelError {
    /// The signature does not verify (tampered index or signature, another key).
    Signature(minisign::Error),
    /// The index verified but is not a channel index kiln reads.
    Malformed(String),
    /// The index is older than one accepted before.
    Rollback { sequence: i64, accepted: i64 },
    /// The index is another channel's (signed, but not the one asked for).
    WrongChannel { expected: String, got: String },
    /// Fetching failed.
    Fetch(String),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Signature(e) => write!(f, "the index's signature does not verify: {e}"),
            ChannelError::Malformed(m) => write!(f, "the index is signed but malformed: {m}"),
            ChannelError::Rollback { sequence, accepted } => write!(
                f,
                "rollback: the index has sequence {sequence}, older than sequence {accepted} accepted before"
            ),
            ChannelError::WrongChannel { expected, got } => {
                write!(f, "the index is channel {got}'s, not channel {expected}'s")
            }
            ChannelError::Fetch(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ChannelError {}

/// An index that verified.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub index: ChannelIndex,
    /// The signature's trusted comment (signed too).
    pub trusted_comment: String,
}

/// Checks `body` against `signature` with `key`, reads it, checks that the
/// signed comment names the same channel and sequence, that the channel is
/// `channel` (the one the device follows: a signed index of another
/// channel is no answer), and that the sequence is not below `accepted`
/// (the last one this device accepted).
pub fn check_index(
    body: &[u8],
    signature: &str,
    key: &PublicKey,
    channel: &str,
    accepted: Option<i64>,
) -> Result<Accepted, ChannelError> {
    let v = minisign::verify(key, body, signature).map_err(ChannelError::Signature)?;
    let index: ChannelIndex = serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    if index.schema != 1 {
        return Err(ChannelError::Malformed(format!("unknown schema {}", index.schema)));
    }
    let expect = format!("kiln channel {} sequence {} ", index.channel, index.sequence);
    if !v.trusted_comment.starts_with(&expect) {
        return Err(ChannelError::Malformed(format!(
            "the signed comment `{}` does not name channel {} sequence {}",
            v.trusted_comment, index.channel, index.sequence
        )));
    }
    if index.channel != channel {
        return Err(ChannelError::WrongChannel {
            expected: channel.to_string(),
            got: index.channel,
        });
    }
    if let Some(a) = accepted
        && index.sequence < a
    {
        return Err(ChannelError::Rollback {
            sequence: index.sequence,
            accepted: a,
        });
    }
    Ok(Accepted {
        index,
        trusted_comment: v.trusted_comment,
    })
}

fn http() -> Result<reqwest::blocking::Client, ChannelError> {
    reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| ChannelError::Fetch(format!("HTTP client: {e}")))
}

fn get(
    client: &reqwest::blocking::Client,
    url: &url::Url,
    token: Option<&str>,
) -> Result<reqwest::blocking::Response, ChannelError> {
    let mut r = client.get(url.clone());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r
        .send()
        .map_err(|e| ChannelError::Fetch(format!("cannot fetch {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ChannelError::Fetch(format!("{url} answered {}", resp.status())));
    }
    Ok(resp)
}

/// The channel an index URL names: `…/channels/NAME/index.json`.
pub fn channel_of(url: &url::Url) -> Option<String> {
    let segments: Vec<&str> = url.path_segments()?.collect();
    match segments.as_slice() {
        [.., "channels", name, "index.json"] if crate::names::check_name("channel", name).is_ok() => {
            Some((*name).to_string())
        }
        _ => None,
    }
}

/// Largest index or signature read (an index lists one build per image).
const MAX_INDEX: u64 = 16 << 20;

/// Fetches the index at `url` and `url.minisig`: (body, signature).
pub fn fetch(url: &url::Url, token: Option<&str>) -> Result<(Vec<u8>, String), ChannelError> {
    let client = http()?;
    let mut body = Vec::new();
    get(&client, url, token)?
        .take(MAX_INDEX)
        .read_to_end(&mut body)
        .map_err(|e| ChannelError::Fetch(format!("reading {url}: {e}")))?;
    let sig_url = url::Url::parse(&format!("{url}.minisig")).map_err(|e| ChannelError::Fetch(e.to_string()))?;
    let mut sig = String::new();
    get(&client, &sig_url, token)?
        .take(MAX_INDEX)
        .read_to_string(&mut sig)
        .map_err(|e| ChannelError::Fetch(format!("reading {sig_url}: {e}")))?;
    Ok((body, sig))
}

/// Downloads a file an accepted index lists into `dir`, through a
/// temporary file that is renamed into place only once its size and
/// sha256 match the index. The file's URL is resolved against the index's.
pub fn download(
    index_url: &url::Url,
    f: &ChannelFile,
    dir: &Path,
    token: Option<&str>,
) -> Result<PathBuf, ChannelError> {
    crate::names::check_file_name(&f.file).map_err(ChannelError::Malformed)?;
    let url = index_url
        .join(&f.url)
        .map_err(|e| ChannelError::Malformed(format!("file URL `{}`: {e}", f.url)))?;
    let fail = |e: std::io::Error| ChannelError::Fetch(format!("writing {}: {e}", dir.display()));
    let mut resp = get(&http()?, &url, token)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size: u64 = 0;
    let want = u64::try_from(f.size).unwrap_or(0);
    loop {
        let n = resp
            .read(&mut buf)
            .map_err(|e| ChannelError::Fetch(format!("download of {url} interrupted: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > want {
            return Err(ChannelError::Fetch(format!(
                "{url} is larger than the {want} bytes the index lists"
            )));
        }
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(fail)?;
    }
    let got = hex::encode(h.finalize());
    if size != want || got != f.sha256 {
        return Err(ChannelError::Fetch(format!(
            "{url} does not match the index: {size} bytes with sha256 {got}, the index lists {want} bytes with {}",
            f.sha256
        )));
    }
    tmp.as_file().sync_all().map_err(fail)?;
    let dest = dir.join(&f.file);
    tmp.persist(&dest).map_err(|e| fail(e.error))?;
    Ok(dest)
}
