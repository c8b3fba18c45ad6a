//! Reading ISO 9660 source images (docs/iso.md) without mounting them: the
//! primary volume descriptor checked here, the tree listed by xorriso.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_core::iso::{Layout, MediumFile, layout, parse_lsdl};

/// Where the primary volume descriptor starts (sector 16).
pub const PVD: u64 = 16 * 2048;

/// How long xorriso may take to list a medium.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// Listing output kiln reads at most (the directories listed hold a few
/// dozen files on real media).
const LIST_LIMIT: u64 = 4 << 20;

/// The directories whose files [`list`] reports: where the layouts keep
/// their squashfs images, kernels, initrds and checksum files.
pub const LISTED_DIRS: &[&str] = &["/", "/live", "/boot", "/syslinux/alt0"];

/// Checks the primary volume descriptor of an ISO file of `len` bytes: its
/// identifier and version, a 2,048-byte logical block and a volume that
/// fits in the file. Returns the volume identifier.
pub fn check_pvd(f: &File, len: u64) -> Result<String, String> {
    let mut pvd = [0u8; 2048];
    if len < PVD + 2048 {
        return Err(format!("{len} bytes is too short for an ISO 9660 volume descriptor"));
    }
    f.read_exact_at(&mut pvd, PVD)
        .map_err(|e| format!("reading the volume descriptor: {e}"))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" || pvd[6] != 1 {
        return Err("sector 16 is not a primary volume descriptor".into());
    }
    let block = u16::from_le_bytes([pvd[128], pvd[129]]);
    if block != 2048 {
        return Err(format!("the logical block size is {block}, not 2048"));
    }
    let blocks = u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]);
    let need = u64::from(blocks) * 2048;
    if need > len {
        return Err(format!(
            "the volume claims {blocks} blocks ({need} bytes) but the file has {len}: truncated?"
        ));
    }
    Ok(String::from_utf8_lossy(&pvd[40..72]).trim().to_string())
}

/// The regular files of the directories in [`LISTED_DIRS`], read by
/// xorriso (killed after [`LIST_TIMEOUT`]).
pub fn list(iso: &Path) -> Result<Vec<MediumFile>, String> {
    let mut cmd = Command::new("xorriso");
    cmd.args(["-abort_on", "FATAL", "-return_with", "FATAL", "32", "-indev"])
        .arg(iso)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C");
    for d in LISTED_DIRS {
        cmd.args(["-find", d, "-maxdepth", "1", "-type", "f", "-exec", "lsdl", "--"]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run xorriso (install xorriso, or run `kiln doctor --fix`): {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > LIST_TIMEOUT {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    };
    let mut out = String::new();
    let mut err = String::new();
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr {
            let _ = e.take(LIST_LIMIT).read_to_string(&mut s);
        }
        s
    });
    if let Some(o) = child.stdout.take() {
        let _ = o.take(LIST_LIMIT).read_to_string(&mut out);
    }
    let status = child.wait();
    done.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    if let Ok(e) = err_reader.join() {
        err = e;
    }
    if killed {
        return Err(format!(
            "xorriso did not list the medium within {}s",
            LIST_TIMEOUT.as_secs()
        ));
    }
    match status {
        Ok(s) if s.success() => Ok(parse_lsdl(&out)),
        Ok(s) => {
            let tail: Vec<&str> = err
                .lines()
                .filter(|l| l.contains("FAILURE") || l.contains("FATAL"))
                .collect();
            Err(format!("xorriso cannot read the medium ({s}): {}", tail.join("; ")))
        }
        Err(e) => Err(format!("xorriso: {e}")),
    }
}

/// Checks an ISO source image: its volume descriptor, then its layout.
/// Returns the layout and a summary for people.
pub fn check(f: &File, path: &Path, len: u64) -> Result<(Layout, String), String> {
    let volume = check_pvd(f, len)?;
    let files = list(path)?;
    let l = layout(&files)?;
    if l.root.size == 0 || l.root.size > len {
        return Err(format!(
            "/{} has an impossible size of {} bytes",
            l.root.path, l.root.size
        ));
    }
    let summary = format!(
        "volume `{volume}`, {} layout: /{} ({} bytes), {} kernel(s), {} initrd(s)",
        l.kind.as_str(),
        l.root.path,
        l.root.size,
        l.kernels.len(),
        l.initrds.len()
    );
    Ok((l, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvd(blocks: u32, block_size: u16) -> Vec<u8> {
        let mut f = vec![0u8; PVD as usize + 2048];
        let d = &mut f[PVD as usize..];
        d[0] = 1;
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        d[40..49].copy_from_slice(b"KILN LIVE");
        d[40 + 9..72].fill(b' ');
        d[80..84].copy_from_slice(&blocks.to_le_bytes());
        d[128..130].copy_from_slice(&block_size.to_le_bytes());
        f
    }

    fn check_bytes(bytes: &[u8]) -> Result<String, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.iso");
        std::fs::write(&p, bytes).expect("write");
        let f = File::open(&p).expect("open");
        check_pvd(&f, bytes.len() as u64)
    }

    #[test]
    fn the_volume_descriptor_is_checked() {
        assert_eq!(check_bytes(&pvd(17, 2048)), Ok("KILN LIVE".to_string()));
        let too_big = check_bytes(&pvd(18, 2048)).expect_err("past the end");
        assert!(
            too_big.contains("claims 18 blocks") && too_big.contains("truncated?"),
            "{too_big}"
        );
        let block = check_bytes(&pvd(17, 512)).expect_err("block size");
        assert!(block.contains("logical block size is 512"), "{block}");
        let mut not = pvd(17, 2048);
        not[PVD as usize + 1] = b'X';
        assert!(
            check_bytes(&not)
                .expect_err("id")
                .contains("not a primary volume descriptor")
        );
        assert!(check_bytes(&[0u8; 4096]).expect_err("short").contains("too short"));
        // A huge block count does not overflow.
        assert!(check_bytes(&pvd(u32::MAX, 2048)).is_err());
    }
}
