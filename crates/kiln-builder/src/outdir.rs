//! Reading the output directory of `kiln build` or `kiln update` as a
//! build to record: its manifest, and every file its SHA256SUMS lists, each
//! verified against the list.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_hub_api::model::{NewArtifact, NewBuild};
use serde_json::Value;

/// NAME-VERSION-RELEASE split on its last two dashes
/// (`kiln_core::pipeline::split_nvr`), owned.
pub fn split_nvr(nvr: &str) -> Option<(String, String, String)> {
    kiln_core::pipeline::split_nvr(nvr).map(|(n, v, r)| (n.to_string(), v.to_string(), r.to_string()))
}

/// The build an output directory holds, and the paths of its files (in the
/// order of the build's artifacts). `nvr` overrides the manifest's.
pub fn read(dir: &Path, nvr: Option<&str>) -> Result<(NewBuild, Vec<PathBuf>)> {
    let mut manifests = Vec::new();
    let mut sums = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if n.ends_with("manifest.json") {
            manifests.push(p);
        } else if n.ends_with("SHA256SUMS") {
            sums.push((p, n));
        }
    }
    let (Some(mpath), Some((spath, sname))) = (manifests.first(), sums.first()) else {
        bail!(
            "{} has no manifest and SHA256SUMS: is it the output directory of kiln build or kiln update?",
            dir.display()
        );
    };
    if manifests.len() > 1 || sums.len() > 1 {
        bail!(
            "{} holds more than one result; import one output directory per build",
            dir.display()
        );
    }
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(mpath)?)
        .with_context(|| format!("reading {}", mpath.display()))?;
    let (name, version, release) = match nvr {
        Some(n) => split_nvr(n).with_context(|| format!("--nvr {n}: expected NAME-VERSION-RELEASE"))?,
        // `kiln update` names its files TARGET.<format>, TARGET.SHA256SUMS.
        None if manifest["kind"] == "update" => {
            let stem = sname.strip_suffix(".SHA256SUMS").unwrap_or(sname);
            split_nvr(stem)
                .with_context(|| format!("the update's target `{stem}` is not NAME-VERSION-RELEASE; pass --nvr"))?
        }
        None => {
            let field = |k: &str| {
                manifest[k]
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("the manifest has no {k}"))
            };
            (field("name")?, field("version")?, field("release")?)
        }
    };
    let mut artifacts = Vec::new();
    let mut files = Vec::new();
    for line in std::fs::read_to_string(spath)?.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, file) = line
            .split_once("  ")
            .with_context(|| format!("{}: bad line `{line}`", spath.display()))?;
        let path = dir.join(file);
        let got = kiln_engine::fsutil::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if got != sum {
            bail!("{file} does not match SHA256SUMS (sha256 {got}, listed {sum}); nothing was imported");
        }
        let size = std::fs::metadata(&path)?.len() as i64;
        let format = if file.ends_with("manifest.json") {
            "manifest".to_string()
        } else {
            file.split_once('.').map_or("file".into(), |(_, ext)| {
                ext.rsplit('.').next().unwrap_or(ext).to_string()
            })
        };
        artifacts.push(NewArtifact {
            file: file.to_string(),
            format,
            size,
            sha256: sum.to_string(),
        });
        files.push(path);
    }
    Ok((
        NewBuild {
            name,
            version,
            release,
            manifest: Some(manifest),
            extra: None,
            artifacts,
        },
        files,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvr_splits_on_the_last_two_dashes() {
        assert_eq!(
            split_nvr("cam-fw-2.3.11-1"),
            Some(("cam-fw".into(), "2.3.11".into(), "1".into()))
        );
        assert_eq!(split_nvr("a-b"), None);
        assert_eq!(split_nvr("-1-2"), None);
    }

    #[test]
    fn an_update_is_named_by_its_sums_file() {
        let d = tempfile_dir();
        std::fs::write(d.join("cam-fw-2.3.11-1.squashfs"), b"img").expect("write");
        std::fs::write(d.join("cam-fw-2.3.11-1.manifest.json"), br#"{"kind": "update"}"#).expect("write");
        let sum = |p: &str| kiln_engine::fsutil::sha256_file(&d.join(p)).expect("sum");
        std::fs::write(
            d.join("cam-fw-2.3.11-1.SHA256SUMS"),
            format!(
                "{}  cam-fw-2.3.11-1.squashfs\n{}  cam-fw-2.3.11-1.manifest.json\n",
                sum("cam-fw-2.3.11-1.squashfs"),
                sum("cam-fw-2.3.11-1.manifest.json")
            ),
        )
        .expect("write");
        let (b, files) = read(&d, None).expect("read");
        assert_eq!(
            (b.name.as_str(), b.version.as_str(), b.release.as_str()),
            ("cam-fw", "2.3.11", "1")
        );
        assert_eq!(files.len(), 2);
        assert_eq!(b.artifacts[0].format, "squashfs");
        std::fs::write(d.join("cam-fw-2.3.11-1.squashfs"), b"tampered").expect("write");
        let e = read(&d, None).expect_err("damaged");
        assert!(e.to_string().contains("does not match SHA256SUMS"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
