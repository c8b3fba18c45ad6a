//! minisign signatures (ed25519), byte-compatible with the `minisign` tool:
//! the hub signs its channel indexes with [`sign`], devices check them with
//! [`verify`], and `minisign -V -p KEY.pub -m FILE` accepts the same files.
//!
//! # Format
//!
//! A public key is the base64 of 42 bytes: the algorithm `Ed`, an 8-byte key
//! id and the 32-byte ed25519 public key. Its file (`.pub`) puts the line
//! `untrusted comment: minisign public key <ID>` above that base64 line.
//!
//! A signature file (`.minisig`) has exactly four lines:
//!
//! 1. `untrusted comment: <text>`, which anyone can change;
//! 2. the base64 of 74 bytes: the algorithm, the signer's key id and the
//!    64-byte ed25519 signature. The algorithm `ED` signs the BLAKE2b-512 hash
//!    of the message (what [`sign`] writes and `minisign -S` writes by default);
//!    the legacy `Ed` signs the message itself (`minisign -S -l`);
//! 3. `trusted comment: <text>`;
//! 4. the base64 of the 64-byte "global" signature: ed25519 over the 64
//!    signature bytes followed by the trusted comment's bytes, so the trusted
//!    comment cannot be changed without the secret key.
//!
//! Key ids are shown as minisign shows them: the 8 bytes read as a
//! little-endian integer, in 16 upper-case hex digits ([`KeyId`]'s `Display`).
//!
//! # What the parsers accept
//!
//! The same files as `minisign`, and nothing looser:
//! - every line may end with `\n` or `\r\n`, the last one also with nothing;
//!   a carriage return anywhere else is refused;
//! - a signature has exactly four lines: nothing (not even an empty line) may
//!   follow the fourth;
//! - base64 is the standard alphabet with its `=` padding, without spaces,
//!   and must decode to exactly the expected number of bytes;
//! - comments are UTF-8 without control characters, except the tab (which
//!   `minisign`'s own default trusted comment contains). A trusted comment has
//!   at most [`TRUSTED_COMMENT_MAX`] bytes and an untrusted one at most
//!   [`UNTRUSTED_COMMENT_MAX`]: the longest lines `minisign` reads back;
//! - [`PublicKey::parse`] ignores whitespace around the key and takes either
//!   the base64 line alone or the comment line and the base64 line.
//!
//! Signatures are checked with ed25519-dalek's `verify_strict` (constant time,
//! refusing non-canonical and small-order values), the signature over the
//! message first, then the one over the trusted comment.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use blake2::{Blake2b512, Digest as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// The most bytes a trusted comment may have (`minisign` refuses longer ones).
pub const TRUSTED_COMMENT_MAX: usize = 8173;
/// The most bytes an untrusted comment may have (`minisign` cannot read longer ones back).
pub const UNTRUSTED_COMMENT_MAX: usize = 1003;

const ALG_LEGACY: [u8; 2] = *b"Ed";
const ALG_PREHASHED: [u8; 2] = *b"ED";
const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";
const PUBLIC_KEY_BYTES: usize = 2 + 8 + 32;
const SIGNATURE_BYTES: usize = 2 + 8 + 64;

/// What the public-key parser names in its errors.
const PUBLIC_KEY: &str = "public key";
const SIG_LINE_1: &str = "signature file, line 1 (untrusted comment)";
const SIG_LINE_2: &str = "signature file, line 2 (signature)";
const SIG_LINE_3: &str = "signature file, line 3 (trusted comment)";
const SIG_LINE_4: &str = "signature file, line 4 (comment signature)";

/// A key id: 8 bytes that name a key pair in its public key and in every
/// signature it makes. Displayed as `minisign` prints it: the bytes as a
/// little-endian integer, in 16 upper-case hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As minisign prints it: upper-case hex without leading zeros.
        write!(f, "{:X}", u64::from_le_bytes(self.0))
    }
}

/// A signing key: an ed25519 secret key and its key id. Its `Debug` shows
/// the id only.
pub struct SecretKey {
    signing: SigningKey,
    id: KeyId,
}

impl SecretKey {
    /// A key from 32 bytes of seed and a key id (the hub derives both from its own secret).
    pub fn from_seed(seed: [u8; 32], id: KeyId) -> SecretKey {
        SecretKey {
            signing: SigningKey::from_bytes(&seed),
            id,
        }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.signing.verifying_key(),
            id: self.id,
        }
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A verifying key: an ed25519 public key and its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// Reads a public key: a whole `.pub` file (comment line + base64 line) or the base64 line alone,
    /// surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<PublicKey, Error> {
        let lines = split_lines(text.trim(), PUBLIC_KEY)?;
        let encoded = match lines.as_slice() {
            [encoded] => encoded,
            [comment, encoded] => {
                if !comment.starts_with(UNTRUSTED_PREFIX) {
                    return Err(malformed(
                        PUBLIC_KEY,
                        format!("its first line must start with {UNTRUSTED_PREFIX:?}"),
                    ));
                }
                encoded
            }
            _ => {
                return Err(malformed(
                    PUBLIC_KEY,
                    format!(
                        "{} lines, where a key is one base64 line, or a comment line and that line",
                        lines.len()
                    ),
                ));
            }
        };
        let bytes: [u8; PUBLIC_KEY_BYTES] = decode_exact(encoded, PUBLIC_KEY)?;
        let (alg, id, key) = split_public_key(&bytes);
        if alg != ALG_LEGACY {
            return Err(Error::UnknownAlgorithm {
                what: PUBLIC_KEY,
                found: show_algorithm(alg),
            });
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| malformed(PUBLIC_KEY, "its 32 key bytes are not an ed25519 public key".to_owned()))?;
        Ok(PublicKey { key, id })
    }

    /// The base64 line.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::with_capacity(PUBLIC_KEY_BYTES);
        bytes.extend_from_slice(&ALG_LEGACY);
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(self.key.as_bytes());
        BASE64.encode(bytes)
    }

    /// The `.pub` file minisign writes: `untrusted comment: minisign public key <ID>\n<base64>\n`.
    pub fn to_file(&self) -> String {
        format!(
            "{UNTRUSTED_PREFIX}minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// What [`verify`] vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The trusted comment, covered by the signature.
    pub trusted_comment: String,
    /// Whether the signature is over the message's BLAKE2b-512 hash (`ED`)
    /// rather than over the message itself (legacy `Ed`).
    pub prehashed: bool,
}

/// Which comment of a signature file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comment {
    /// The signed comment (line 3).
    Trusted,
    /// The free comment (line 1).
    Untrusted,
}

impl fmt::Display for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comment::Trusted => "trusted",
            Comment::Untrusted => "untrusted",
        })
    }
}

/// Why a key or signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a minisign key or signature file.
    #[error("malformed minisign {what}: {reason}; expected the text `minisign` writes, unchanged")]
    Malformed {
        /// The key, or the line of the signature file.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The algorithm bytes are neither `Ed` nor `ED`.
    #[error(
        "unknown minisign algorithm {found} in the {what}: only ed25519 (\"Ed\" keys, \"Ed\" and \"ED\" signatures) \
         is supported"
    )]
    UnknownAlgorithm {
        /// The public key or the signature.
        what: &'static str,
        /// The two algorithm bytes, escaped.
        found: String,
    },
    /// The signature names another key than the one it is checked against.
    #[error(
        "the signature was made by key {signature}, but the public key is {key}: check it against the signer's \
         public key"
    )]
    KeyIdMismatch {
        /// The key id in the signature.
        signature: KeyId,
        /// The key id of the public key.
        key: KeyId,
    },
    /// The signature does not match the message.
    #[error("signature verification failed: the file was altered, or signed by another key with the same id")]
    BadSignature,
    /// The signature over the trusted comment does not match.
    #[error("comment signature verification failed: the trusted comment (or its signature) was altered")]
    BadGlobalSignature,
    /// A comment is not one line of printable text, or too long.
    #[error("bad {which} comment: {reason}")]
    BadComment {
        /// Which comment.
        which: Comment,
        /// What is wrong with it.
        reason: String,
    },
}

/// A `.minisig` file's text for `message`, prehashed (`ED`), with the given comments
/// (each one line: refuse control characters, including newlines, with an Error).
///
/// Tabs are allowed, as in `minisign`'s own trusted comments; see
/// [`TRUSTED_COMMENT_MAX`] and [`UNTRUSTED_COMMENT_MAX`] for the lengths.
pub fn sign(key: &SecretKey, message: &[u8], trusted_comment: &str, untrusted_comment: &str) -> Result<String, Error> {
    sign_with(key, message, trusted_comment, untrusted_comment, true)
}

/// [`sign`], with the legacy algorithm (`Ed`, over the message itself) when
/// `prehashed` is false.
fn sign_with(
    key: &SecretKey,
    message: &[u8],
    trusted_comment: &str,
    untrusted_comment: &str,
    prehashed: bool,
) -> Result<String, Error> {
    check_comment(untrusted_comment, Comment::Untrusted)?;
    check_comment(trusted_comment, Comment::Trusted)?;
    let (alg, signature) = if prehashed {
        (ALG_PREHASHED, key.signing.sign(&Blake2b512::digest(message)))
    } else {
        (ALG_LEGACY, key.signing.sign(message))
    };
    let signature = signature.to_bytes();
    let global = key
        .signing
        .sign(&global_message(&signature, trusted_comment))
        .to_bytes();
    let mut sig_struct = Vec::with_capacity(SIGNATURE_BYTES);
    sig_struct.extend_from_slice(&alg);
    sig_struct.extend_from_slice(&key.id.0);
    sig_struct.extend_from_slice(&signature);
    Ok(format!(
        "{UNTRUSTED_PREFIX}{untrusted_comment}\n{}\n{TRUSTED_PREFIX}{trusted_comment}\n{}\n",
        BASE64.encode(sig_struct),
        BASE64.encode(global)
    ))
}

/// Checks a `.minisig` text against `message`; both `Ed` and `ED` signatures.
/// Returns the trusted comment (signed, so a verifier may trust it).
pub fn verify(key: &PublicKey, message: &[u8], signature: &str) -> Result<Verified, Error> {
    let parsed = ParsedSignature::parse(signature)?;
    if parsed.key_id != key.id {
        return Err(Error::KeyIdMismatch {
            signature: parsed.key_id,
            key: key.id,
        });
    }
    let signature = Signature::from_bytes(&parsed.signature);
    let checked = if parsed.prehashed {
        key.key.verify_strict(&Blake2b512::digest(message), &signature)
    } else {
        key.key.verify_strict(message, &signature)
    };
    checked.map_err(|_| Error::BadSignature)?;
    key.key
        .verify_strict(
            &global_message(&parsed.signature, parsed.trusted_comment),
            &Signature::from_bytes(&parsed.global_signature),
        )
        .map_err(|_| Error::BadGlobalSignature)?;
    Ok(Verified {
        trusted_comment: parsed.trusted_comment.to_owned(),
        prehashed: parsed.prehashed,
    })
}

/// The fields of a signature file, not yet checked against a key.
struct ParsedSignature<'a> {
    prehashed: bool,
    key_id: KeyId,
    signature: [u8; 64],
    trusted_comment: &'a str,
    global_signature: [u8; 64],
}

impl<'a> ParsedSignature<'a> {
    fn parse(text: &'a str) -> Result<ParsedSignature<'a>, Error> {
        let lines = split_lines(text, "signature file")?;
        let line = |index: usize, what: &'static str| {
            lines
                .get(index)
                .copied()
                .ok_or_else(|| malformed(what, "the line is missing".to_owned()))
        };
        if lines.len() > 4 {
            return Err(malformed(
                "signature file",
                format!("{} lines where there are 4", lines.len()),
            ));
        }
        let untrusted = line(0, SIG_LINE_1)?
            .strip_prefix(UNTRUSTED_PREFIX)
            .ok_or_else(|| malformed(SIG_LINE_1, format!("it must start with {UNTRUSTED_PREFIX:?}")))?;
        check_comment(untrusted, Comment::Untrusted)?;
        let sig_struct: [u8; SIGNATURE_BYTES] = decode_exact(line(1, SIG_LINE_2)?, SIG_LINE_2)?;
        let (alg, key_id, signature) = split_signature(&sig_struct);
        let prehashed = match alg {
            ALG_PREHASHED => true,
            ALG_LEGACY => false,
            other => {
                return Err(Error::UnknownAlgorithm {
                    what: "signature",
                    found: show_algorithm(other),
                });
            }
        };
        let trusted_comment = line(2, SIG_LINE_3)?
            .strip_prefix(TRUSTED_PREFIX)
            .ok_or_else(|| malformed(SIG_LINE_3, format!("it must start with {TRUSTED_PREFIX:?}")))?;
        check_comment(trusted_comment, Comment::Trusted)?;
        let global_signature: [u8; 64] = decode_exact(line(3, SIG_LINE_4)?, SIG_LINE_4)?;
        Ok(ParsedSignature {
            prehashed,
            key_id,
            signature,
            trusted_comment,
            global_signature,
        })
    }
}

/// What the global signature covers: the signature, then the trusted comment.
fn global_message(signature: &[u8; 64], trusted_comment: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(signature.len() + trusted_comment.len());
    message.extend_from_slice(signature);
    message.extend_from_slice(trusted_comment.as_bytes());
    message
}

/// The lines of `text`, each without its `\n` or `\r\n`; a final line
/// ending is optional. A carriage return elsewhere is refused.
fn split_lines<'a>(text: &'a str, what: &'static str) -> Result<Vec<&'a str>, Error> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .enumerate()
        .map(|(index, line)| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.contains('\r') {
                Err(malformed(
                    what,
                    format!("line {} has a carriage return before its end", index + 1),
                ))
            } else {
                Ok(line)
            }
        })
        .collect()
}

/// Decodes strict, padded, standard base64 into exactly `N` bytes.
fn decode_exact<const N: usize>(encoded: &str, what: &'static str) -> Result<[u8; N], Error> {
    let bytes = BASE64
        .decode(encoded)
        .map_err(|error| malformed(what, format!("not valid base64 ({error})")))?;
    let length = bytes.len();
    <[u8; N]>::try_from(bytes).map_err(|_| malformed(what, format!("{length} bytes where there must be {N}")))
}

fn split_public_key(bytes: &[u8; PUBLIC_KEY_BYTES]) -> ([u8; 2], KeyId, [u8; 32]) {
    let (mut alg, mut id, mut key) = ([0; 2], [0; 8], [0; 32]);
    alg.copy_from_slice(&bytes[..2]);
    id.copy_from_slice(&bytes[2..10]);
    key.copy_from_slice(&bytes[10..]);
    (alg, KeyId(id), key)
}

fn split_signature(bytes: &[u8; SIGNATURE_BYTES]) -> ([u8; 2], KeyId, [u8; 64]) {
    let (mut alg, mut id, mut signature) = ([0; 2], [0; 8], [0; 64]);
    alg.copy_from_slice(&bytes[..2]);
    id.copy_from_slice(&bytes[2..10]);
    signature.copy_from_slice(&bytes[10..]);
    (alg, KeyId(id), signature)
}

/// The algorithm bytes, quoted and escaped for an error message.
fn show_algorithm(alg: [u8; 2]) -> String {
    format!("\"{}\"", alg.escape_ascii())
}

/// Refuses a comment that `minisign` would not write or read back as one
/// line of text: control characters other than the tab, or too many bytes.
fn check_comment(comment: &str, which: Comment) -> Result<(), Error> {
    let max = match which {
        Comment::Trusted => TRUSTED_COMMENT_MAX,
        Comment::Untrusted => UNTRUSTED_COMMENT_MAX,
    };
    if comment.len() > max {
        return Err(Error::BadComment {
            which,
            reason: format!(
                "{} bytes, more than the {max} minisign reads back; shorten it",
                comment.len()
            ),
        });
    }
    if let Some(control) = comment.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(Error::BadComment {
            which,
            reason: format!("it contains the control character {control:?}; a comment is one line of printable text"),
        });
    }
    Ok(())
}

fn malformed(what: &'static str, reason: String) -> Error {
    Error::Malformed { what, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"{\"channel\":\"stable\",\"images\":[]}\n";

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32], KeyId([n, 1, 2, 3, 4, 5, 6, 7]))
    }

    fn signed(message: &[u8], trusted: &str) -> String {
        sign(&key(1), message, trusted, "kiln channel index").expect("valid comments are accepted")
    }

    /// The signature file with its line `index` (0-based) replaced by `line`.
    fn with_line(signature: &str, index: usize, line: &str) -> String {
        let mut lines: Vec<String> = signature.lines().map(str::to_owned).collect();
        lines[index] = line.to_owned();
        lines.join("\n") + "\n"
    }

    /// The signature file with the bytes of its line 2 (0-based `index`) changed by `change`.
    fn with_struct_byte(signature: &str, index: usize, change: impl Fn(&mut u8)) -> String {
        let line = signature.lines().nth(1).expect("line 2");
        let mut bytes = BASE64.decode(line).expect("base64");
        change(&mut bytes[index]);
        with_line(signature, 1, &BASE64.encode(bytes))
    }

    #[test]
    fn round_trip_returns_the_trusted_comment() {
        let text = signed(MESSAGE, "timestamp:1700000000\tfile:stable.json");
        let verified = verify(&key(1).public(), MESSAGE, &text).expect("own signature verifies");
        assert_eq!(
            verified,
            Verified {
                trusted_comment: "timestamp:1700000000\tfile:stable.json".to_owned(),
                prehashed: true
            }
        );
    }

    #[test]
    fn signature_file_has_minisign_layout() {
        let secret = key(3);
        let text = sign(&secret, MESSAGE, "trusted text", "free text").expect("sign");
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 5, "four lines, each ended by a newline: {text:?}");
        assert_eq!(lines[0], "untrusted comment: free text");
        assert_eq!(lines[2], "trusted comment: trusted text");
        assert_eq!(lines[4], "");
        let sig_struct = BASE64.decode(lines[1]).expect("line 2 is base64");
        assert_eq!(sig_struct.len(), 74);
        assert_eq!(&sig_struct[..2], b"ED");
        assert_eq!(sig_struct[2..10], secret.id().0);
        // The signature covers the BLAKE2b-512 hash of the message, the global
        // signature the signature followed by the trusted comment.
        let public = VerifyingKey::from_bytes(&secret.signing.verifying_key().to_bytes()).expect("key");
        let signature: [u8; 64] = sig_struct[10..].try_into().expect("64 bytes");
        public
            .verify_strict(&Blake2b512::digest(MESSAGE), &Signature::from_bytes(&signature))
            .expect("signs the hash");
        let global: [u8; 64] = BASE64
            .decode(lines[3])
            .expect("line 4 is base64")
            .try_into()
            .expect("64 bytes");
        let mut covered = signature.to_vec();
        covered.extend_from_slice(b"trusted text");
        public
            .verify_strict(&covered, &Signature::from_bytes(&global))
            .expect("global signature");
    }

    #[test]
    fn tampered_message_is_a_bad_signature() {
        let text = signed(MESSAGE, "c");
        let mut message = MESSAGE.to_vec();
        message[3] ^= 1;
        assert_eq!(verify(&key(1).public(), &message, &text), Err(Error::BadSignature));
        assert_eq!(verify(&key(1).public(), &MESSAGE[1..], &text), Err(Error::BadSignature));
    }

    #[test]
    fn tampered_trusted_comment_is_a_bad_global_signature() {
        let text = signed(MESSAGE, "version 2");
        let tampered = with_line(&text, 2, "trusted comment: version 1");
        assert_eq!(
            verify(&key(1).public(), MESSAGE, &tampered),
            Err(Error::BadGlobalSignature)
        );
        let appended = with_line(&text, 2, "trusted comment: version 2 ");
        assert_eq!(
            verify(&key(1).public(), MESSAGE, &appended),
            Err(Error::BadGlobalSignature)
        );
    }

    #[test]
    fn tampered_global_signature_is_a_bad_global_signature() {
        let text = signed(MESSAGE, "c");
        let line = text.lines().nth(3).expect("line 4");
        let mut bytes = BASE64.decode(line).expect("base64");
        bytes[5] ^= 0x40;
        let tampered = with_line(&text, 3, &BASE64.encode(bytes));
        assert_eq!(
            verify(&key(1).public(), MESSAGE, &tampered),
            Err(Error::BadGlobalSignature)
        );
    }

    #[test]
    fn tampered_signature_bytes_are_a_bad_signature() {
        let text = signed(MESSAGE, "c");
        for index in [10, 40, 73] {
            let tampered = with_struct_byte(&text, index, |byte| *byte ^= 0x01);
            assert_eq!(
                verify(&key(1).public(), MESSAGE, &tampered),
                Err(Error::BadSignature),
                "byte {index}"
            );
        }
    }

    #[test]
    fn untrusted_comment_is_not_signed() {
        let text = signed(MESSAGE, "c");
        let changed = with_line(&text, 0, "untrusted comment: anything else");
        assert!(verify(&key(1).public(), MESSAGE, &changed).is_ok());
    }

    #[test]
    fn wrong_key_with_another_id_is_a_key_id_mismatch() {
        let text = signed(MESSAGE, "c");
        let error = verify(&key(2).public(), MESSAGE, &text).expect_err("another key");
        assert_eq!(
            error,
            Error::KeyIdMismatch {
                signature: key(1).id(),
                key: key(2).id()
            }
        );
        let shown = error.to_string();
        assert!(
            shown.contains(&key(1).id().to_string()) && shown.contains(&key(2).id().to_string()),
            "{shown}"
        );
    }

    #[test]
    fn wrong_key_with_the_same_id_is_a_bad_signature() {
        let text = signed(MESSAGE, "c");
        let impostor = SecretKey::from_seed([9; 32], key(1).id());
        assert_eq!(verify(&impostor.public(), MESSAGE, &text), Err(Error::BadSignature));
    }

    #[test]
    fn legacy_signature_verifies() {
        let text = sign_with(&key(1), MESSAGE, "legacy", "u", false).expect("sign");
        assert!(
            text.lines().nth(1).expect("line 2").starts_with("RW"),
            "the base64 of \"Ed\": {text}"
        );
        let verified = verify(&key(1).public(), MESSAGE, &text).expect("legacy verifies");
        assert_eq!(
            verified,
            Verified {
                trusted_comment: "legacy".to_owned(),
                prehashed: false
            }
        );
        assert_eq!(verify(&key(1).public(), b"other", &text), Err(Error::BadSignature));
    }

    #[test]
    fn algorithm_is_bound_to_what_was_signed() {
        // A legacy signature relabelled as prehashed (and the reverse) must not verify.
        let legacy = sign_with(&key(1), MESSAGE, "c", "u", false).expect("sign");
        let relabelled = with_struct_byte(&legacy, 1, |byte| *byte = b'D');
        assert_eq!(verify(&key(1).public(), MESSAGE, &relabelled), Err(Error::BadSignature));
        let prehashed = signed(MESSAGE, "c");
        let relabelled = with_struct_byte(&prehashed, 1, |byte| *byte = b'd');
        assert_eq!(verify(&key(1).public(), MESSAGE, &relabelled), Err(Error::BadSignature));
    }

    #[test]
    fn unknown_algorithm_is_named() {
        let text = signed(MESSAGE, "c");
        let other = with_struct_byte(&text, 0, |byte| *byte = b'S');
        assert_eq!(
            verify(&key(1).public(), MESSAGE, &other),
            Err(Error::UnknownAlgorithm {
                what: "signature",
                found: "\"SD\"".to_owned()
            })
        );
        let mut public = BASE64.decode(key(1).public().to_base64()).expect("base64");
        public[1] = 0xff;
        assert_eq!(
            PublicKey::parse(&BASE64.encode(public)),
            Err(Error::UnknownAlgorithm {
                what: "public key",
                found: "\"E\\xff\"".to_owned()
            })
        );
    }

    #[test]
    fn line_endings_follow_minisign() {
        let text = signed(MESSAGE, "c");
        let crlf = text.replace('\n', "\r\n");
        assert!(verify(&key(1).public(), MESSAGE, &crlf).is_ok(), "CRLF line ends");
        let unterminated = text.trim_end_matches('\n');
        assert!(
            verify(&key(1).public(), MESSAGE, unterminated).is_ok(),
            "no newline after line 4"
        );
    }

    #[test]
    fn malformed_signatures_are_refused_with_their_line() {
        let text = signed(MESSAGE, "c");
        let lines: Vec<&str> = text.lines().collect();
        let short_struct = BASE64.encode(&BASE64.decode(lines[1]).expect("base64")[..73]);
        let short_global = BASE64.encode(&BASE64.decode(lines[3]).expect("base64")[..63]);
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), SIG_LINE_1),
            ("one line", format!("{}\n", lines[0]), SIG_LINE_2),
            ("two lines", format!("{}\n{}\n", lines[0], lines[1]), SIG_LINE_3),
            ("three lines", lines[..3].join("\n"), SIG_LINE_4),
            ("an extra empty line", format!("{text}\n"), "signature file"),
            ("an extra line", format!("{text}more\n"), "signature file"),
            ("garbage", "not a signature at all".to_owned(), SIG_LINE_1),
            ("no untrusted prefix", with_line(&text, 0, "comment: x"), SIG_LINE_1),
            ("bad base64", with_line(&text, 1, "RU$$"), SIG_LINE_2),
            (
                "unpadded base64",
                with_line(&text, 1, lines[1].trim_end_matches('=')),
                SIG_LINE_2,
            ),
            (
                "space in base64",
                with_line(&text, 1, &format!(" {}", lines[1])),
                SIG_LINE_2,
            ),
            ("short signature", with_line(&text, 1, &short_struct), SIG_LINE_2),
            ("no trusted prefix", with_line(&text, 2, "trusted: c"), SIG_LINE_3),
            (
                "swapped comments",
                with_line(&text, 2, "untrusted comment: c"),
                SIG_LINE_3,
            ),
            ("short global signature", with_line(&text, 3, &short_global), SIG_LINE_4),
            ("empty global signature", with_line(&text, 3, ""), SIG_LINE_4),
            (
                "carriage return inside",
                text.replacen("\n", "\r\r\n", 1),
                "signature file",
            ),
        ];
        for (name, input, line) in cases {
            match verify(&key(1).public(), MESSAGE, &input) {
                Err(Error::Malformed { what, .. }) => assert_eq!(what, line, "{name}"),
                other => panic!("{name}: expected a malformed {line}, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_comments_are_refused() {
        let secret = key(1);
        let long_trusted = "t".repeat(TRUSTED_COMMENT_MAX + 1);
        let long_untrusted = "u".repeat(UNTRUSTED_COMMENT_MAX + 1);
        let cases = [
            ("two\nlines", "u", Comment::Trusted),
            ("t", "two\nlines", Comment::Untrusted),
            ("carriage\rreturn", "u", Comment::Trusted),
            ("t", "nul\0", Comment::Untrusted),
            ("del\u{7f}", "u", Comment::Trusted),
            ("c1\u{85}control", "u", Comment::Trusted),
            ("escape\u{1b}[0m", "u", Comment::Trusted),
            (long_trusted.as_str(), "u", Comment::Trusted),
            ("t", long_untrusted.as_str(), Comment::Untrusted),
        ];
        for (trusted, untrusted, which) in cases {
            match sign(&secret, MESSAGE, trusted, untrusted) {
                Err(Error::BadComment { which: refused, .. }) => {
                    assert_eq!(refused, which, "{trusted:?} {untrusted:?}")
                }
                other => panic!("{trusted:?} / {untrusted:?}: expected a bad {which} comment, got {other:?}"),
            }
        }
        // The longest comments, tabs and non-ASCII text are fine.
        let longest_trusted = "t".repeat(TRUSTED_COMMENT_MAX);
        let longest_untrusted = "u".repeat(UNTRUSTED_COMMENT_MAX);
        let text = sign(&secret, MESSAGE, &longest_trusted, &longest_untrusted).expect("longest comments");
        assert_eq!(
            verify(&secret.public(), MESSAGE, &text)
                .expect("verifies")
                .trusted_comment,
            longest_trusted
        );
        let text = sign(&secret, MESSAGE, "file:é\tчисло", "").expect("tab and UTF-8");
        assert_eq!(
            verify(&secret.public(), MESSAGE, &text)
                .expect("verifies")
                .trusted_comment,
            "file:é\tчисло"
        );
    }

    #[test]
    fn control_characters_in_a_read_comment_are_refused() {
        let text = signed(MESSAGE, "c");
        let bell = with_line(&text, 2, "trusted comment: c\u{7}");
        assert!(matches!(
            verify(&key(1).public(), MESSAGE, &bell),
            Err(Error::BadComment {
                which: Comment::Trusted,
                ..
            })
        ));
    }

    #[test]
    fn public_key_round_trips_through_its_file_and_line() {
        let public = key(4).public();
        let file = public.to_file();
        assert_eq!(
            file,
            format!(
                "untrusted comment: minisign public key {}\n{}\n",
                public.id(),
                public.to_base64()
            )
        );
        assert_eq!(PublicKey::parse(&file), Ok(public.clone()));
        assert_eq!(PublicKey::parse(&public.to_base64()), Ok(public.clone()));
        assert_eq!(
            PublicKey::parse(&format!("  \n{}\r\n\n", public.to_base64())),
            Ok(public.clone())
        );
        assert_eq!(PublicKey::parse(&file.replace('\n', "\r\n")), Ok(public.clone()));
        assert_eq!(
            PublicKey::parse(&public.to_base64()).map(|key| key.id()),
            Ok(key(4).id())
        );
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let public = key(4).public();
        let bytes = BASE64.decode(public.to_base64()).expect("base64");
        // A y coordinate that is not on the curve, found rather than assumed.
        let off_curve = (0..=u8::MAX)
            .map(|n| [n; 32])
            .find(|candidate| VerifyingKey::from_bytes(candidate).is_err())
            .expect("some 32-byte string is not a curve point");
        let mut not_a_point = bytes[..10].to_vec();
        not_a_point.extend_from_slice(&off_curve);
        let cases = [
            ("empty", "   ".to_owned()),
            ("garbage", "hello world".to_owned()),
            ("short", BASE64.encode(&bytes[..41])),
            ("long", BASE64.encode([bytes.as_slice(), &[0]].concat())),
            ("not a point", BASE64.encode(not_a_point)),
            (
                "no comment prefix",
                format!("minisign public key\n{}", public.to_base64()),
            ),
            ("three lines", format!("{}{}\n", public.to_file(), public.to_base64())),
            (
                "carriage return inside",
                format!("untrusted comment: a\rb\n{}", public.to_base64()),
            ),
        ];
        for (name, input) in cases {
            assert!(
                matches!(
                    PublicKey::parse(&input),
                    Err(Error::Malformed { what: "public key", .. })
                ),
                "{name}: {:?}",
                PublicKey::parse(&input)
            );
        }
    }

    #[test]
    fn key_id_displays_as_minisign_prints_it() {
        assert_eq!(
            KeyId(0x0123_4567_89AB_CDEF_u64.to_le_bytes()).to_string(),
            "123456789ABCDEF"
        );
        assert_eq!(
            KeyId([0xaf, 0xc0, 0x3c, 0x87, 0x81, 0x14, 0xd0, 0xad]).to_string(),
            "ADD01481873CC0AF"
        );
        assert_eq!(KeyId([1, 0, 0, 0, 0, 0, 0, 0]).to_string(), "1");
        assert_eq!(
            format!("{:?}", key(1)),
            format!("SecretKey {{ id: {:?}, .. }}", key(1).id())
        );
    }

    #[test]
    fn no_input_panics() {
        // Every truncation and every single-byte corruption of a valid file is
        // either refused or (for the free comment) accepted, never a panic.
        let text = signed(MESSAGE, "c");
        let public = key(1).public();
        for end in 0..text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = verify(&public, MESSAGE, prefix);
                let _ = PublicKey::parse(prefix);
            }
        }
        for index in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[index] = bytes[index].wrapping_add(1);
            if let Ok(changed) = String::from_utf8(bytes) {
                let result = verify(&public, MESSAGE, &changed);
                assert!(
                    result.is_err() || index < "untrusted comment: kiln channel index".len(),
                    "{index}"
                );
            }
        }
    }
}
