//! The digest of a directory tree: what a cache entry must still be when it
//! is used. Covers every entry's relative path, type, mode, owner, mtime,
//! device number, symlink target, extended attributes and, for regular
//! files, the BLAKE3 hash of the content. Files are hashed in parallel.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// overlayfs's own bookkeeping on upper directories changes when a layer is
/// mounted (`uuid`, `origin`, `impure`, …); only the attributes that carry
/// meaning for a lower layer are part of the digest.
fn keep_xattr(name: &[u8]) -> bool {
    match name.strip_prefix(b"trusted.overlay.") {
        Some(rest) => matches!(rest, b"opaque" | b"redirect" | b"whiteout" | b"whiteouts" | b"metacopy"),
        None => true,
    }
}

struct Item {
    rel: PathBuf,
    meta: fs::Metadata,
    link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Item>) -> io::Result<()> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path)?;
    let link = if meta.file_type().is_symlink() {
        Some(fs::read_link(&path)?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    let mut xattrs = Vec::new();
    if let Ok(names) = xattr::list(&path) {
        for n in names {
            let nb = n.as_bytes().to_vec();
            if keep_xattr(&nb) {
                let v = xattr::get(&path, &n).ok().flatten().unwrap_or_default();
                xattrs.push((nb, v));
            }
        }
    }
    xattrs.sort();
    let is_dir = meta.is_dir();
    out.push(Item {
        rel: rel.to_path_buf(),
        meta,
        link,
        xattrs,
    });
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            walk(root, &rel.join(n), out)?;
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// The digest (hex) of the tree at `root` and the bytes its regular files
/// hold.
pub fn tree_digest(root: &Path) -> io::Result<(String, u64)> {
    let mut items = Vec::new();
    walk(root, Path::new(""), &mut items)?;
    let files: Vec<usize> = (0..items.len()).filter(|&i| items[i].meta.is_file()).collect();
    let hashes: Mutex<Vec<Option<io::Result<[u8; 32]>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = files.get(at) else { break };
                    let r = hash_file(&root.join(&items[i].rel));
                    if let Ok(mut g) = hashes.lock() {
                        g[i] = Some(r);
                    }
                }
            });
        }
    });
    let hashes = hashes
        .into_inner()
        .map_err(|_| io::Error::other("a hashing thread panicked"))?;
    let mut h = blake3::Hasher::new();
    let mut size = 0u64;
    let put = |h: &mut blake3::Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for (item, hash) in items.iter().zip(hashes) {
        let m = &item.meta;
        put(&mut h, item.rel.as_os_str().as_bytes());
        put(
            &mut h,
            format!(
                "{:o} {} {} {} {} {} {}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec(),
                m.rdev(),
                if m.is_file() { m.len() } else { 0 }
            )
            .as_bytes(),
        );
        if let Some(l) = &item.link {
            put(&mut h, l);
        }
        for (n, v) in &item.xattrs {
            put(&mut h, n);
            put(&mut h, v);
        }
        if let Some(r) = hash {
            h.update(&r?);
            size += m.len();
        }
    }
    Ok((h.finalize().to_hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_and_metadata_change_the_digest() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        fs::create_dir_all(d.path().join("a/b"))?;
        fs::write(d.path().join("a/b/f"), "one")?;
        std::os::unix::fs::symlink("b/f", d.path().join("a/l"))?;
        let (first, size) = tree_digest(d.path())?;
        assert_eq!(size, 3);
        assert_eq!(tree_digest(d.path())?.0, first);
        // Same size, other content (mtime restored): detected.
        let t = fs::metadata(d.path().join("a/b/f"))?.modified()?;
        fs::write(d.path().join("a/b/f"), "two")?;
        let f = fs::File::options().write(true).open(d.path().join("a/b/f"))?;
        f.set_modified(t)?;
        let (second, _) = tree_digest(d.path())?;
        assert_ne!(first, second);
        // A mode change: detected.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("a/b/f"), fs::Permissions::from_mode(0o600))?;
        assert_ne!(tree_digest(d.path())?.0, second);
        Ok(())
    }

    #[test]
    fn overlay_bookkeeping_is_not_part_of_the_digest() {
        assert!(!keep_xattr(b"trusted.overlay.origin"));
        assert!(!keep_xattr(b"trusted.overlay.uuid"));
        assert!(keep_xattr(b"trusted.overlay.opaque"));
        assert!(keep_xattr(b"security.capability"));
    }
}
