//! The inputs of the stage keys that need I/O: the content of the
//! repository files the plan reads, the host tool versions, and the digest
//! of the mirror's release file for the suite (docs/cache.md).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_core::plan::Base;
use kiln_core::stagekey::{KeyInputs, StageKey, key_files, stage_keys};

use crate::Request;
use crate::host::Host;
use crate::log::BuildLog;

/// The content hash of a repository file as keys see it: BLAKE3 of the
/// bytes (a symlink's target) and whether it is executable.
pub fn file_hash(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
            format!("link:{target}")
        }
        Ok(m) => match fs::read(path) {
            Ok(bytes) => format!(
                "{}{}",
                blake3::hash(&bytes).to_hex(),
                if m.permissions().mode() & 0o111 != 0 { "+x" } else { "" }
            ),
            Err(_) => "unreadable".into(),
        },
        Err(_) => "missing".into(),
    }
}

/// The mirror the bootstrap uses: the plan's, else the first Debian archive
/// the host's apt configuration names (not a security archive).
pub fn mirror_url(base: &Base) -> Option<String> {
    if let Base::Bootstrap { mirror: Some(m), .. } = base {
        return Some(m.value.trim_end_matches('/').to_string());
    }
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    texts.iter().find_map(|t| apt_uri(t))
}

/// The first archive URI of a sources.list or deb822 `.sources` text.
fn apt_uri(text: &str) -> Option<String> {
    let usable = |u: &str| (u.starts_with("http://") || u.starts_with("https://")) && !u.contains("security");
    for line in text.lines() {
        let line = line.trim();
        let uri = if let Some(rest) = line.strip_prefix("deb ") {
            rest.split_whitespace().find(|w| !w.starts_with('['))
        } else if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().next()
        } else {
            None
        };
        if let Some(u) = uri.filter(|u| usable(u)) {
            return Some(u.trim_end_matches('/').to_string());
        }
    }
    None
}

/// BLAKE3 of the suite's `InRelease` (else `Release`), fetched with apt's
/// own downloader ([`Host::download`]) so the host's proxy settings apply. When the mirror cannot
/// be reached, the digest seen last for it (kept in the cache) is used.
fn mirror_digest(req: &Request, host: &dyn Host, log: &BuildLog) -> Option<String> {
    let Base::Bootstrap { suite, .. } = &req.plan.base else {
        return None;
    };
    let url = mirror_url(&req.plan.base)?;
    let memo = req.cache.as_ref().map(|c| {
        c.dir().join("mirrors").join(
            blake3::hash(format!("{url} {}", suite.value).as_bytes())
                .to_hex()
                .to_string(),
        )
    });
    let tmp = tempfile_in(&req.workdir);
    for name in ["InRelease", "Release"] {
        let full = format!("{url}/dists/{}/{name}", suite.value);
        let ok = host.download(&full, &tmp);
        if ok && let Ok(bytes) = fs::read(&tmp) {
            let _ = fs::remove_file(&tmp);
            let digest = format!("{name}:{}", blake3::hash(&bytes).to_hex());
            log.note(&format!("mirror {url} {}: {digest}", suite.value));
            if let Some(m) = &memo {
                let _ = m.parent().map(fs::create_dir_all);
                let _ = fs::write(m, &digest);
            }
            return Some(digest);
        }
    }
    let _ = fs::remove_file(&tmp);
    let last = memo.and_then(|m| fs::read_to_string(m).ok());
    log.note(&format!(
        "cannot fetch the release file of {url} {}; {}",
        suite.value,
        if last.is_some() {
            "using the digest seen last"
        } else {
            "the base stage will not be reused"
        }
    ));
    last
}

fn tempfile_in(dir: &Path) -> std::path::PathBuf {
    let _ = fs::create_dir_all(dir);
    dir.join(format!(".kiln-release-{}", std::process::id()))
}

/// Every stage key of the request's plan. `extra` holds content hashes
/// computed elsewhere (fetched remote scripts); `source_digest` is the
/// source image's sha256 for a `[base] from` image.
pub fn compute(
    req: &Request,
    host: &dyn Host,
    tools: BTreeMap<String, String>,
    log: &BuildLog,
    extra: BTreeMap<String, String>,
    source_digest: Option<String>,
) -> Vec<StageKey> {
    let mut files: BTreeMap<String, String> = key_files(&req.plan)
        .into_iter()
        .map(|p| {
            let h = file_hash(&req.repo.join(&p));
            (p, h)
        })
        .collect();
    files.extend(extra);
    let inputs = KeyInputs {
        files,
        tools,
        mirror_digest: if source_digest.is_some() {
            source_digest
        } else if req.cache.is_some() {
            mirror_digest(req, host, log)
        } else {
            None
        },
        epoch: req.source_date_epoch,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    stage_keys(&req.plan, &inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_sources_of_both_forms() {
        assert_eq!(
            apt_uri("# c\ndeb [arch=amd64] http://m.invalid/debian/ bookworm main\n").as_deref(),
            Some("http://m.invalid/debian")
        );
        assert_eq!(
            apt_uri(
                "Types: deb\nURIs: http://s.invalid/debian-security\n\nTypes: deb\nURIs: https://m.invalid/debian\n"
            )
            .as_deref(),
            Some("https://m.invalid/debian")
        );
        assert_eq!(apt_uri("deb cdrom:[x]/ bookworm main\n"), None);
    }
}
