//! The local catalog of source images (docs/update.md): root file system images
//! registered as NAME@VERSION, stored once per content (by sha256).
//!
//! ```text
//! v1/images/blobs/<sha256>             the image file, read-only
//! v1/images/index/<name>/<version>.json  its record
//! ```
//!
//! Directories are imported as an uncompressed tar written by kiln's tar
//! writer. Blobs are written to a temporary file, hashed while copied, and
//! renamed into place; a record is written the same way.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Cache, Result, StoreError, ctx, now, sha256_copy, unique};

/// A source image's format, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Squashfs,
    Erofs,
    Tar,
    #[serde(rename = "tar.zst")]
    TarZst,
    #[serde(rename = "tar.xz")]
    TarXz,
    #[serde(rename = "tar.gz")]
    TarGz,
    /// A bootable ISO 9660 medium with a live squashfs (docs/iso.md).
    Iso,
}

impl Format {
    /// The file extension (and output format name).
    pub fn ext(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Tar => "tar",
            Format::TarZst => "tar.zst",
            Format::TarXz => "tar.xz",
            Format::TarGz => "tar.gz",
            Format::Iso => "iso",
        }
    }

    pub fn is_tar(self) -> bool {
        !matches!(self, Format::Squashfs | Format::Erofs | Format::Iso)
    }

    /// Recognises a format from the first 32,774 bytes of a file (the one
    /// sniffer of the local catalog and the hub; `image_check` then checks
    /// the whole image). A compressed stream is taken for a compressed tar.
    pub fn detect(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"hsqs") {
            return Some(Format::Squashfs);
        }
        if head.get(1024..1028) == Some(&[0xe2, 0xe1, 0xf5, 0xe0]) {
            return Some(Format::Erofs);
        }
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Some(Format::TarZst);
        }
        if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            return Some(Format::TarXz);
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            return Some(Format::TarGz);
        }
        // After the magic numbers at the start: a hybrid ISO begins with
        // boot code, and its volume descriptor sits at sector 16.
        if head.get(32769..32774) == Some(b"CD001") {
            return Some(Format::Iso);
        }
        if head.get(257..262) == Some(b"ustar") {
            return Some(Format::Tar);
        }
        None
    }
}

/// A catalog record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub format: Format,
    pub size: u64,
    /// Unix seconds.
    pub imported: u64,
    /// What was imported (a path), for people.
    pub origin: String,
}

impl Image {
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Why a reference did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("`{0}` is not NAME@VERSION")]
    BadReference(String),
    #[error("no source image named `{name}` in the catalog{}", if .names.is_empty() { String::new() } else { format!("; it has {}", .names.join(", ")) })]
    UnknownName { name: String, names: Vec<String> },
    #[error("`{name}` has no version {version}; available: {}", .available.join(", "))]
    UnknownVersion {
        name: String,
        version: String,
        available: Vec<String>,
    },
    #[error("`{0}` is not a valid image name or version (letters, digits, `.`, `_`, `+`, `~`, `-`)")]
    BadName(String),
    /// The file is not a usable source image (docs/update.md); nothing was stored.
    #[error("{path} is refused: {reason}; nothing was stored")]
    Invalid {
        path: String,
        reason: crate::image_check::InvalidImage,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Splits `NAME@VERSION`.
pub fn parse_reference(r: &str) -> std::result::Result<(&str, &str), CatalogError> {
    r.rsplit_once('@')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| CatalogError::BadReference(r.to_string()))
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-'))
}

/// The catalog in a cache.
#[derive(Clone, Debug)]
pub struct Catalog {
    dir: PathBuf,
}

impl Catalog {
    pub fn open(cache: &Cache) -> Result<Catalog> {
        let dir = cache.dir().join("images");
        for d in ["blobs", "index", "tmp"] {
            fs::create_dir_all(dir.join(d)).map_err(ctx(format!("cannot create {}", dir.join(d).display())))?;
        }
        Ok(Catalog { dir })
    }

    /// The stored file of an image.
    pub fn blob(&self, img: &Image) -> PathBuf {
        self.dir.join("blobs").join(&img.sha256)
    }

    fn record_path(&self, name: &str, version: &str) -> PathBuf {
        self.dir.join("index").join(name).join(format!("{version}.json"))
    }

    /// Registers `path` (an image file or a directory) as NAME@VERSION.
    /// Returns the record and whether the content was new to the catalog.
    pub fn import(
        &self,
        name: &str,
        version: &str,
        path: &Path,
        force: bool,
    ) -> std::result::Result<(Image, bool), CatalogError> {
        for s in [name, version] {
            if !valid(s) {
                return Err(CatalogError::BadName(s.to_string()));
            }
        }
        let record = self.record_path(name, version);
        if record.exists() && !force {
            return Err(StoreError::Io {
                what: format!("{name}@{version} is already in the catalog (remove it first, or import with --force)"),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            }
            .into());
        }
        let tmp = self.dir.join("tmp").join(unique("import"));
        let stored = self.copy_in(path, &tmp);
        let checked = stored.and_then(|(sha256, size)| {
            let checked = crate::image_check::check(&tmp).map_err(|reason| CatalogError::Invalid {
                path: path.display().to_string(),
                reason,
            })?;
            Ok((sha256, size, checked.format))
        });
        let (sha256, size, format) = match checked {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let blob = self.dir.join("blobs").join(&sha256);
        let new = !blob.exists();
        if new {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444)).map_err(ctx("cannot store the image"))?;
            fs::rename(&tmp, &blob).map_err(ctx("cannot store the image"))?;
        } else {
            let _ = fs::remove_file(&tmp);
        }
        let img = Image {
            name: name.to_string(),
            version: version.to_string(),
            sha256,
            format,
            size,
            imported: now(),
            origin: path.display().to_string(),
        };
        self.write_record(&img)?;
        Ok((img, new))
    }

    /// Copies `path` (a file, or a directory as a tar) to `tmp`; returns
    /// its sha256 and size.
    fn copy_in(&self, path: &Path, tmp: &Path) -> std::result::Result<(String, u64), CatalogError> {
        let meta = fs::metadata(path).map_err(ctx(format!("cannot read {}", path.display())))?;
        if meta.is_dir() {
            let opts = kiln_tar::Options {
                mtime_clamp: None,
                compression: kiln_tar::Compression::None,
                xattrs: true,
                threads: 0,
            };
            kiln_tar::write_tree_to_file(path, tmp, &opts)
                .map_err(|e| ctx(format!("cannot archive {}", path.display()))(io::Error::other(e)))?;
            let f = File::open(tmp).map_err(ctx("cannot read the archive"))?;
            return Ok(sha256_copy(f, None).map_err(ctx("cannot hash the archive"))?);
        }
        let f = File::open(path).map_err(ctx(format!("cannot read {}", path.display())))?;
        Ok(sha256_copy(f, Some(tmp)).map_err(ctx(format!("cannot copy {}", path.display())))?)
    }

    fn write_record(&self, img: &Image) -> Result<()> {
        let path = self.record_path(&img.name, &img.version);
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(ctx(format!("cannot create {}", d.display())))?;
        }
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(img).map_err(|e| ctx("cannot encode a record")(e.into()))?;
        fs::write(&tmp, json).map_err(ctx("cannot write a record"))?;
        fs::rename(&tmp, &path).map_err(ctx("cannot write a record"))
    }

    /// Every image, or those named `name`, by name then version order.
    pub fn list(&self, name: Option<&str>) -> Result<Vec<Image>> {
        let index = self.dir.join("index");
        let mut out = Vec::new();
        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => fs::read_dir(&index)
                .map_err(ctx(format!("cannot read {}", index.display())))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        };
        for n in names {
            let Ok(rd) = fs::read_dir(index.join(&n)) else { continue };
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "json")
                    && let Some(img) = fs::read(e.path())
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Image>(&b).ok())
                {
                    out.push(img);
                }
            }
        }
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| kiln_core::version::compare(&a.version, &b.version))
        });
        Ok(out)
    }

    /// Resolves NAME@VERSION, with the available versions in the error.
    pub fn get(&self, reference: &str) -> std::result::Result<Image, CatalogError> {
        let (name, version) = parse_reference(reference)?;
        let all = self.list(Some(name))?;
        if all.is_empty() {
            let names: Vec<String> = self
                .list(None)?
                .iter()
                .map(|i| i.name.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(CatalogError::UnknownName {
                name: name.to_string(),
                names,
            });
        }
        all.iter()
            .find(|i| i.version == version)
            .cloned()
            .ok_or_else(|| CatalogError::UnknownVersion {
                name: name.to_string(),
                version: version.to_string(),
                available: all.iter().map(|i| i.version.clone()).collect(),
            })
    }

    /// Removes NAME@VERSION; its blob goes when no other record uses it.
    pub fn remove(&self, reference: &str) -> std::result::Result<Image, CatalogError> {
        let img = self.get(reference)?;
        fs::remove_file(self.record_path(&img.name, &img.version)).map_err(ctx("cannot remove the record"))?;
        let _ = fs::remove_dir(self.dir.join("index").join(&img.name));
        if !self.list(None)?.iter().any(|i| i.sha256 == img.sha256) {
            let _ = fs::remove_file(self.blob(&img));
        }
        Ok(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_magic() {
        let mut erofs = vec![0u8; 1028];
        erofs[1024..].copy_from_slice(&[0xe2, 0xe1, 0xf5, 0xe0]);
        assert_eq!(Format::detect(&erofs), Some(Format::Erofs));
        assert_eq!(Format::detect(b"hsqs...."), Some(Format::Squashfs));
        assert_eq!(Format::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Format::TarZst));
        assert_eq!(Format::detect(&[0x1f, 0x8b, 8]), Some(Format::TarGz));
        let mut tar = vec![0u8; 300];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(Format::detect(&tar), Some(Format::Tar));
        assert_eq!(Format::detect(b"hello"), None);
        let mut iso = vec![0u8; 32774];
        iso[32768..32774].copy_from_slice(b"\x01CD001");
        assert_eq!(Format::detect(&iso), Some(Format::Iso));
        assert_eq!(Format::detect(&iso[..32773]), None);
    }

    #[test]
    fn broken_images_are_refused_and_nothing_is_stored() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("cache");
        let cat = Catalog::open(&cache).expect("catalog");
        let mut tiny = b"hsqs".to_vec();
        tiny.resize(200, 0);
        // A tar whose only entry climbs out: `../x`.
        let mut tar = vec![0u8; 512];
        tar[..4].copy_from_slice(b"../x");
        for (at, v) in [(100, "0000644\0"), (108, "0000000\0"), (116, "0000000\0")] {
            tar[at..at + 8].copy_from_slice(v.as_bytes());
        }
        tar[124..136].copy_from_slice(b"00000000000\0");
        tar[136..148].copy_from_slice(b"00000000000\0");
        tar[156] = b'0';
        tar[257..263].copy_from_slice(b"ustar\0");
        tar[263..265].copy_from_slice(b"00");
        tar[148..156].fill(b' ');
        let sum: u32 = tar.iter().map(|b| u32::from(*b)).sum();
        tar[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar.resize(512 * 3, 0);
        for (file, bytes, why) in [
            ("tiny.squashfs", tiny, "not a valid squashfs: "),
            ("evil.tar", tar, "entry `../x` has a `..` component"),
            ("junk", b"hello".to_vec(), "not a squashfs, erofs, ISO 9660 or tar"),
        ] {
            let p = d.path().join(file);
            fs::write(&p, bytes).expect("write");
            let e = cat.import("bad", "1", &p, false).expect_err(file).to_string();
            assert!(e.contains(why) && e.ends_with("nothing was stored"), "{e}");
            for sub in ["blobs", "index", "tmp"] {
                let left: Vec<_> = fs::read_dir(d.path().join("v1/images").join(sub))
                    .expect("read_dir")
                    .flatten()
                    .collect();
                assert!(left.is_empty(), "{file}: {sub} holds {left:?}");
            }
        }
    }

    #[test]
    fn import_dedupes_sorts_versions_and_explains_misses() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("cache");
        let cat = Catalog::open(&cache).expect("catalog");
        let tree = d.path().join("tree");
        fs::create_dir_all(tree.join("etc")).expect("mkdir");
        fs::write(tree.join("etc/os-release"), "ID=test\n").expect("write");
        let (a, new_a) = cat.import("edge", "2.3.10", &tree, false).expect("import");
        let (b, new_b) = cat.import("edge", "2.3.9", &tree, false).expect("import");
        assert!(new_a && !new_b, "the same content is stored once");
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.format, Format::Tar);
        let versions: Vec<String> = cat
            .list(Some("edge"))
            .expect("list")
            .into_iter()
            .map(|i| i.version)
            .collect();
        assert_eq!(versions, ["2.3.9", "2.3.10"]);
        let e = cat.get("edge@9").expect_err("no such version").to_string();
        assert_eq!(e, "`edge` has no version 9; available: 2.3.9, 2.3.10");
        let e = cat.get("other@1").expect_err("no such name").to_string();
        assert_eq!(e, "no source image named `other` in the catalog; it has edge");
        assert!(
            cat.import("edge", "2.3.9", &tree, false).is_err(),
            "no silent overwrite"
        );
        assert!(cat.import("../x", "1", &tree, false).is_err());
        cat.remove("edge@2.3.9").expect("rm");
        assert!(cat.blob(&a).exists(), "still used by 2.3.10");
        cat.remove("edge@2.3.10").expect("rm");
        assert!(!cat.blob(&a).exists());
        assert!(cat.list(None).expect("list").is_empty());
    }
}
