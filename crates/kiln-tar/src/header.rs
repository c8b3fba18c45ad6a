//! Encoding of POSIX.1-2001 (pax) headers: one ustar block per entry,
//! preceded by a `x` extended header when a value does not fit the ustar
//! fields or the entry has extended attributes.

/// The size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// The name of every pax extended header (the same for all entries, so the
/// archive does not depend on process ids or entry names the way GNU tar's
/// default `%d/PaxHeaders.%p/%f` does). Python's `tarfile` uses the same.
pub(crate) const PAX_NAME: &[u8] = b"././@PaxHeader";

/// The pax record prefix GNU tar, star and libarchive use for extended
/// attributes.
pub(crate) const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Largest value of an octal field of `width` bytes (`width - 1` digits and
/// a terminating NUL).
const fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width as u32 - 1))) - 1
}

/// Extended attributes as (name, value) pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The entry types kiln writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything that goes into the header(s) of one entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    /// The path in the archive (directories end in `/`).
    pub path: &'a [u8],
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Size of the data that follows (regular files only).
    pub size: u64,
    /// Whole seconds since the epoch (already clamped).
    pub mtime: i64,
    /// Symlink target or hardlink target path.
    pub link: &'a [u8],
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Encodes the header blocks of `e` (an optional pax header with its padded
/// records, then the ustar block) and appends them to `out`.
pub(crate) fn encode(e: &Entry<'_>, out: &mut Vec<u8>) {
    let mut records = Vec::new();
    if e.path.len() > 100 {
        pax_record(&mut records, b"path", e.path);
    }
    if e.link.len() > 100 {
        pax_record(&mut records, b"linkpath", e.link);
    }
    if e.size > octal_max(12) {
        pax_record(&mut records, b"size", e.size.to_string().as_bytes());
    }
    if e.uid > octal_max(8) {
        pax_record(&mut records, b"uid", e.uid.to_string().as_bytes());
    }
    if e.gid > octal_max(8) {
        pax_record(&mut records, b"gid", e.gid.to_string().as_bytes());
    }
    let mtime_fits = u64::try_from(e.mtime).is_ok_and(|m| m <= octal_max(12));
    if !mtime_fits {
        pax_record(&mut records, b"mtime", e.mtime.to_string().as_bytes());
    }
    // Linux device numbers (12-bit major, 20-bit minor) always fit the
    // 7-digit fields; the SCHILY keywords (star, libarchive) are a fallback.
    if e.dev_major > octal_max(8) {
        pax_record(&mut records, b"SCHILY.devmajor", e.dev_major.to_string().as_bytes());
    }
    if e.dev_minor > octal_max(8) {
        pax_record(&mut records, b"SCHILY.devminor", e.dev_minor.to_string().as_bytes());
    }
    for (name, value) in e.xattrs {
        let mut key = XATTR_PREFIX.to_vec();
        encode_xattr_name(name, &mut key);
        pax_record(&mut records, &key, value);
    }

    if !records.is_empty() {
        let mut block = [0u8; BLOCK];
        fill(
            &mut block,
            &Fields {
                name: PAX_NAME,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: records.len() as u64,
                mtime: 0,
                flag: b'x',
                link: b"",
                dev_major: 0,
                dev_minor: 0,
            },
        );
        out.extend_from_slice(&block);
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }

    let mut block = [0u8; BLOCK];
    fill(
        &mut block,
        &Fields {
            name: e.path,
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            mtime: if mtime_fits { e.mtime.unsigned_abs() } else { 0 },
            flag: e.kind.flag(),
            link: e.link,
            dev_major: e.dev_major,
            dev_minor: e.dev_minor,
        },
    );
    out.extend_from_slice(&block);
}

/// The number of zero bytes that pad `len` bytes of data to a whole block.
pub(crate) fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// Raw values of one ustar block; numbers that do not fit are written as 0
/// (their real value is in the pax header).
struct Fields<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    flag: u8,
    link: &'a [u8],
    dev_major: u64,
    dev_minor: u64,
}

fn fill(block: &mut [u8; BLOCK], f: &Fields<'_>) {
    copy_truncated(&mut block[0..100], f.name);
    octal(&mut block[100..108], u64::from(f.mode));
    octal(&mut block[108..116], f.uid);
    octal(&mut block[116..124], f.gid);
    octal(&mut block[124..136], f.size);
    octal(&mut block[136..148], f.mtime);
    block[156] = f.flag;
    copy_truncated(&mut block[157..257], f.link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty: owners are numeric
    // only, so the archive does not depend on the host's passwd/group files.
    octal(&mut block[329..337], f.dev_major);
    octal(&mut block[337..345], f.dev_minor);
    // prefix (345..500) stays empty: long names go into pax `path` records.

    // The checksum is computed with the checksum field itself as spaces and
    // written as six octal digits, NUL, space (like GNU tar).
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let digits = format!("{sum:06o}");
    block[148..154].copy_from_slice(&digits.as_bytes()[digits.len() - 6..]);
    block[154] = 0;
    block[155] = b' ';
}

/// Writes `value` as zero-padded octal digits followed by a NUL; a value
/// too large for the field is written as 0 (callers put it in a pax record).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len();
    let value = if value > octal_max(width) { 0 } else { value };
    let digits = format!("{value:0w$o}", w = width - 1);
    field[..width - 1].copy_from_slice(digits.as_bytes());
    field[width - 1] = 0;
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Appends the pax record `"<len> <key>=<value>\n"`, where `<len>` is the
/// decimal length of the whole record including itself.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + decimal_digits(base);
    while len != base + decimal_digits(len) {
        len = base + decimal_digits(len);
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Escapes an extended attribute name for a pax keyword the way GNU tar
/// does (`xattr_encode_keyword`): `%` becomes `%25` and `=` becomes `%3D`,
/// since a keyword ends at the first `=`.
fn encode_xattr_name(name: &[u8], out: &mut Vec<u8>) {
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'=' => out.extend_from_slice(b"%3D"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a [u8]) -> Entry<'a> {
        Entry {
            path,
            kind: Kind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        }
    }

    fn records(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        assert_eq!(&bytes[0..PAX_NAME.len()], PAX_NAME);
        assert_eq!(bytes[156], b'x');
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[124..135]).expect("ascii"), 8).expect("octal");
        let mut data = &bytes[BLOCK..BLOCK + size];
        let mut out = Vec::new();
        while !data.is_empty() {
            let sp = data.iter().position(|&b| b == b' ').expect("space");
            let len: usize = std::str::from_utf8(&data[..sp]).expect("ascii").parse().expect("len");
            let rec = &data[sp + 1..len - 1];
            assert_eq!(data[len - 1], b'\n');
            let eq = rec.iter().position(|&b| b == b'=').expect("=");
            out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
            data = &data[len..];
        }
        out
    }

    #[test]
    fn record_length_counts_itself() {
        for n in 0..1200 {
            let mut out = Vec::new();
            let value = vec![b'v'; n];
            pax_record(&mut out, b"path", &value);
            let sp = out.iter().position(|&b| b == b' ').expect("space");
            let len: usize = std::str::from_utf8(&out[..sp]).expect("ascii").parse().expect("len");
            assert_eq!(len, out.len(), "value length {n}");
        }
    }

    #[test]
    fn short_entry_is_one_block_with_valid_checksum() {
        let mut out = Vec::new();
        encode(&entry(b"etc/passwd"), &mut out);
        assert_eq!(out.len(), BLOCK);
        let header = tar::Header::from_byte_slice(&out);
        assert_eq!(header.path_bytes().as_ref(), b"etc/passwd");
        assert_eq!(header.cksum().expect("cksum"), {
            let mut b = out.clone();
            b[148..156].fill(b' ');
            b.iter().map(|&x| u32::from(x)).sum::<u32>()
        });
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert!(out[265..329].iter().all(|&b| b == 0), "uname/gname empty");
        assert_eq!(&out[100..108], b"0000644\0");
    }

    #[test]
    fn big_values_go_to_pax() {
        let long = vec![b'a'; 150];
        let link = vec![b'b'; 101];
        let mut e = entry(&long);
        e.kind = Kind::Symlink;
        e.link = &link;
        e.size = 8 * 1024 * 1024 * 1024;
        e.uid = 3_000_000;
        e.gid = 2_097_151; // fits exactly
        e.mtime = -5;
        let mut out = Vec::new();
        encode(&e, &mut out);
        let recs = records(&out);
        let keys: Vec<&[u8]> = recs.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"path"[..], b"linkpath", b"size", b"uid", b"mtime"]);
        assert_eq!(recs[0].1, long);
        assert_eq!(recs[1].1, link);
        assert_eq!(recs[2].1, b"8589934592");
        assert_eq!(recs[3].1, b"3000000");
        assert_eq!(recs[4].1, b"-5");
        let ustar = &out[out.len() - BLOCK..];
        assert_eq!(&ustar[116..124], b"7777777\0");
        assert_eq!(&ustar[124..136], b"00000000000\0");
        // The pax header is the same for every entry apart from its size.
        assert_eq!(&out[136..148], b"00000000000\0");
        assert!(out[265..329].iter().all(|&b| b == 0));
    }

    #[test]
    fn exactly_100_bytes_needs_no_pax() {
        let name = vec![b'n'; 100];
        let mut out = Vec::new();
        encode(&entry(&name), &mut out);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[..100], &name[..]);
    }

    #[test]
    fn xattr_names_are_escaped_and_values_binary() {
        let xattrs = vec![
            (b"security.capability".to_vec(), vec![0, 0, 0, 2, b'\n', 0xff]),
            (b"user.a=b%c".to_vec(), b"x".to_vec()),
        ];
        let mut e = entry(b"bin/ping");
        e.xattrs = &xattrs;
        let mut out = Vec::new();
        encode(&e, &mut out);
        let recs = records(&out);
        assert_eq!(recs[0].0, b"SCHILY.xattr.security.capability");
        assert_eq!(recs[0].1, [0, 0, 0, 2, b'\n', 0xff]);
        assert_eq!(recs[1].0, b"SCHILY.xattr.user.a%3Db%25c");
    }

    #[test]
    fn devices_and_padding() {
        let mut e = entry(b"dev/null");
        e.kind = Kind::Char;
        e.mode = 0o20666;
        e.dev_major = 1;
        e.dev_minor = 3;
        let mut out = Vec::new();
        encode(&e, &mut out);
        assert_eq!(out[156], b'3');
        assert_eq!(&out[100..108], b"0000666\0", "file type bits are not in mode");
        assert_eq!(&out[329..337], b"0000001\0");
        assert_eq!(&out[337..345], b"0000003\0");
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}
