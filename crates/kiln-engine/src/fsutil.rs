//! Filesystem helpers of the build: hashing, copying feature files into the
//! tree, measuring and clamping a tree.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    kiln_store::sha256_copy(fs::File::open(path)?, None).map(|(h, _)| h)
}

/// Copies `from` to `to`, returning the sha256 of what was written.
pub fn copy_hashed(from: &Path, to: &Path) -> io::Result<String> {
    kiln_store::sha256_copy(fs::File::open(from)?, Some(to)).map(|(h, _)| h)
}

/// The digest a checksum file of the medium uses, by its name
/// (`sha512sum.txt`, `md5sum.txt`, otherwise sha256), of `path`.
pub fn digest_file(sums_name: &str, path: &Path) -> io::Result<String> {
    fn stream<D: sha2::Digest>(path: &Path) -> io::Result<String> {
        use std::io::Read as _;
        let mut f = fs::File::open(path)?;
        let mut d = D::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        Ok(hex(&d.finalize()))
    }
    if sums_name.starts_with("sha512") {
        stream::<sha2::Sha512>(path)
    } else if sums_name.starts_with("md5") {
        stream::<md5::Md5>(path)
    } else {
        sha256_file(path)
    }
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Joins an absolute image path onto the tree root, refusing `..` and
/// anything that would leave the root.
pub fn in_root(root: &Path, image_path: &str) -> io::Result<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(image_path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(format!("`{image_path}` leaves the image root")));
            }
        }
    }
    Ok(out)
}

/// Bytes used by a tree (file sizes, directories counted as 4 KiB).
pub fn tree_size(root: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            if m.is_dir() {
                total += 4096;
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// Sets every mtime newer than `epoch` to `epoch` (symlinks included, not
/// followed), so outputs do not depend on when the build ran.
pub fn clamp_mtimes(root: &Path, epoch: u64) -> io::Result<()> {
    let t = TimeSpec::new(i64::try_from(epoch).unwrap_or(i64::MAX), 0);
    keep_hardlinks_while_clamping(root, epoch, &t)?;
    let mut stack = vec![root.to_path_buf()];
    let clamp = |p: &Path, m: &fs::Metadata| -> io::Result<()> {
        if u64::try_from(m.mtime()).unwrap_or(0) > epoch {
            utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)?;
        }
        Ok(())
    };
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let p = e?.path();
            let m = p.symlink_metadata()?;
            if m.is_dir() {
                stack.push(p.clone());
            }
            clamp(&p, &m)?;
        }
        // Directories last: clamping their children does not touch them,
        // but creating entries above did.
        let m = dir.symlink_metadata()?;
        clamp(&dir, &m)?;
    }
    Ok(())
}

/// On an overlay, changing a lower file's times copies it up as a new inode,
/// which splits a hard-link group. Clamp each group once, through its first
/// path, and link the other paths to that inode again (a no-op outside an
/// overlay, where they already share it). Runs before directory times are
/// clamped, since relinking touches directories.
fn keep_hardlinks_while_clamping(root: &Path, epoch: u64, t: &TimeSpec) -> io::Result<()> {
    let mut groups: std::collections::BTreeMap<(u64, u64), Vec<PathBuf>> = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let p = e?.path();
            let m = p.symlink_metadata()?;
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.nlink() > 1 && u64::try_from(m.mtime()).unwrap_or(0) > epoch {
                groups.entry((m.dev(), m.ino())).or_default().push(p);
            }
        }
    }
    for mut paths in groups.into_values() {
        paths.sort();
        let first = &paths[0];
        utimensat(
            nix::fcntl::AT_FDCWD,
            first.as_path(),
            t,
            t,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io::Error::from)?;
        let ino = first.symlink_metadata()?.ino();
        for other in &paths[1..] {
            if other.symlink_metadata()?.ino() == ino {
                continue;
            }
            let tmp = other.with_file_name(format!(
                ".kiln-link-{}",
                other
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            fs::hard_link(first, &tmp)?;
            fs::rename(&tmp, other)?;
        }
    }
    Ok(())
}

/// Resolves `user:group` names to ids through the tree's passwd and group
/// files (read inside the tree's root); numeric parts are taken as is.
pub fn resolve_owner(tree: &crate::tree::Tree, owner: &str) -> Result<(u32, u32), String> {
    let (u, g) = owner.split_once(':').ok_or_else(|| format!("bad owner `{owner}`"))?;
    let lookup = |file: &str, name: &str| -> Result<u32, String> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        let text = tree
            .read_to_string(file)
            .map_err(|e| format!("cannot read /{file} of the image: {e}"))?;
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                Some((f.next()?, f.nth(1)?))
            })
            .find(|(n, _)| *n == name)
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| format!("`{name}` is not in /{file} of the image"))
    };
    Ok((lookup("etc/passwd", u)?, lookup("etc/group", g)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_the_root() {
        let r = Path::new("/w/root");
        assert_eq!(in_root(r, "/etc/motd").ok(), Some(PathBuf::from("/w/root/etc/motd")));
        assert!(in_root(r, "/etc/../../x").is_err());
    }

    #[test]
    fn owners_from_the_tree() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        fs::create_dir(d.path().join("etc"))?;
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nkiln:x:1000:1000::/home/kiln:/bin/sh\n",
        )?;
        fs::write(d.path().join("etc/group"), "root:x:0:\nadm:x:4:\n")?;
        let tree = crate::tree::Tree::open(d.path())?;
        assert_eq!(resolve_owner(&tree, "kiln:adm"), Ok((1000, 4)));
        assert_eq!(resolve_owner(&tree, "0:0"), Ok((0, 0)));
        assert!(resolve_owner(&tree, "nobody:adm").is_err());
        Ok(())
    }

    #[test]
    fn hashes() {
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
