//! The options of each output format: which keys it takes and what their
//! values may be (docs/profiles.md, docs/iso.md).

use super::{is_ident, parse_size};

pub(super) fn compression_choices(format: &str) -> &'static [&'static str] {
    if format == "squashfs" {
        &["zstd", "xz", "gzip", "lz4", "lzo"]
    } else {
        &["lz4", "lz4hc", "lzma", "deflate", "zstd"]
    }
}

/// Checks a string output option's value (after macro expansion).
pub fn check_output_option(format: &str, key: &str, value: &str) -> Result<(), String> {
    let full = format!("output.{format}.{key}");
    match key {
        "compression" => {
            let choices = compression_choices(format);
            if choices.contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "`{full}` cannot be `{value}` (expected one of: {})",
                    choices.join(", ")
                ))
            }
        }
        "block_size" => match parse_size(value) {
            Some(n) if n.is_power_of_two() && (4096..=1 << 20).contains(&n) => Ok(()),
            _ => Err(format!("`{full}` must be a power of two from 4K to 1M, not `{value}`")),
        },
        "size" if parse_size(value).is_none() => Err(format!(
            "`{full}` must be a size such as \"2G\" or \"512M\", not `{value}`"
        )),
        "volume_id" if !valid_volume_id(value) => Err(format!(
            "`{full}` must be 1 to 32 characters of A-Z, a-z, 0-9, space, `_`, `-`, `.` or `+`, not `{value}`"
        )),
        "cmdline" if !valid_cmdline(value) => Err(format!(
            "`{full}` must be printable ASCII without quotes or any of \\ $ ; {{ }} # ` | & < >, not `{value}`"
        )),
        "root" if !is_ident(value) => Err(format!("`{full}` must name a subprofile or `image`, not `{value}`")),
        _ => Ok(()),
    }
}

/// Boot methods an `iso` output can carry.
pub const ISO_BOOT: &[&str] = &["bios", "uefi"];

/// Longest boot menu timeout, in seconds.
pub const ISO_MAX_TIMEOUT: i64 = 600;

/// Checks one item of a list-valued output option.
pub fn check_output_item(key: &str, value: &str) -> Result<(), String> {
    match key {
        "boot" if !ISO_BOOT.contains(&value) => Err(format!(
            "`output.iso.boot` cannot hold `{value}` (expected: {})",
            ISO_BOOT.join(", ")
        )),
        "extra" if !is_ident(value) => Err(format!("`output.iso.extra` must name subprofiles, not `{value}`")),
        _ => Ok(()),
    }
}

/// An ISO 9660 volume identifier kiln writes: at most 32 characters, ones
/// every reader shows the same.
pub fn valid_volume_id(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b" _-.+".contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// A kernel command-line addition that is safe inside a GRUB menu entry:
/// nothing GRUB's script language would expand, quote or end.
pub fn valid_cmdline(s: &str) -> bool {
    s.len() <= 1024
        && s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !b"\"'\\$;{}#`|&<>".contains(&b))
}

/// Option keys each output format accepts (None: unknown format).
pub fn output_option_keys(format: &str) -> Option<&'static [&'static str]> {
    Some(match format {
        "squashfs" => &["compression", "level", "block_size"],
        "erofs" => &["compression", "level"],
        "tar" | "dir" => &[],
        "tar.zst" | "tar.xz" | "tar.gz" => &["level"],
        "ext4" => &["size", "label"],
        "qcow2" => &["size", "label", "compress"],
        "iso" => &["boot", "root", "extra", "volume_id", "cmdline", "timeout"],
        _ => return None,
    })
}

pub(super) fn level_range(format: &str) -> (i64, i64) {
    match format {
        "squashfs" | "tar.zst" => (1, 22),
        "erofs" => (0, 12),
        _ => (0, 9),
    }
}
