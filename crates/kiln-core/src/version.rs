//! Version ordering for source images (`kiln image ls`, docs/update.md): versions
//! sort the way people read them — `2.3.10` after `2.3.9`, `1.0~rc1` before
//! `1.0` — in Debian's manner: runs of digits compare as numbers, other runs
//! character by character with `~` before everything (even the end) and
//! letters before other characters.

use std::cmp::Ordering;

fn char_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // Non-digit run.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let o = char_order(ca).cmp(&char_order(cb));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit run, as a number (any length: leading zeros dropped).
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if o != Ordering::Equal {
            return o;
        }
        a = &a[da..];
        b = &b[db..];
        if a.is_empty() && b.is_empty() {
            return Ordering::Equal;
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|c| **c == b'0').count();
    &d[z..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_people_read() {
        let mut v = vec![
            "2.3.10", "2.3.9", "1.0", "1.0~rc1", "1.0a", "10", "2.3.1", "1.0.0", "01.0",
        ];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(
            v,
            [
                "1.0~rc1", "1.0", "01.0", "1.0a", "1.0.0", "2.3.1", "2.3.9", "2.3.10", "10"
            ]
        );
        assert_eq!(compare("1.2", "1.2"), Ordering::Equal);
        assert_eq!(compare("99999999999999999999999", "1"), Ordering::Greater);
    }
}
