//! Reading this process's mount table.

use std::path::Path;

/// The mount points at or below `path` in this process's mount table
/// (`/proc/self/mountinfo`), in table order. Both `path` as given and its
/// canonical form are matched. An unreadable table gives an empty list.
///
/// The sandbox's mounts live in its own mount namespace, so after (and even
/// during) [`crate::Sandbox::run`] this is empty for the root of a sandbox,
/// unless someone else mounted something there.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut bases = vec![path.to_path_buf()];
    if let Ok(canonical) = std::fs::canonicalize(path)
        && canonical != path
    {
        bases.push(canonical);
    }
    mount_points(&table)
        .into_iter()
        .filter(|mp| bases.iter().any(|base| Path::new(mp).starts_with(base)))
        .collect()
}

/// The mount point column (the fifth) of every line of a mountinfo table.
fn mount_points(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`,
/// `\134`).
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes_mount_points() {
        let table = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                     90 27 0:50 / /tmp/a\\040b/root rw - tmpfs tmpfs rw\n\
                     91 90 0:51 / /tmp/a\\040b/root/proc rw - proc proc rw\n";
        assert_eq!(mount_points(table), ["/proc", "/tmp/a b/root", "/tmp/a b/root/proc"]);
    }

    #[test]
    fn unescape_keeps_other_backslashes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\x"), "a\\x");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_directory() {
        let dir = std::env::temp_dir();
        let fresh = dir.join("kiln-sandbox-mountinfo-test-does-not-exist");
        assert!(mounts_under(&fresh).is_empty());
        assert!(!mounts_under(Path::new("/")).is_empty());
    }
}
