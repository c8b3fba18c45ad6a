//! kiln's minisign module against the real `minisign` tool (Debian package
//! `minisign`): each accepts what the other signs. These tests fail, rather
//! than skip, when the tool is missing.

use std::path::Path;
use std::process::{Command, Output};

use kiln_hub_api::minisign::{self, Error, KeyId, PublicKey, SecretKey};

const INDEX: &[u8] = b"{\"channel\":\"stable\",\"images\":[{\"name\":\"base\",\"sha256\":\"00ff\"}]}\n";

/// Runs `minisign` with `args` in `dir`, without a terminal or standard input.
fn minisign(dir: &Path, args: &[&str]) -> Output {
    match Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `minisign` tool is not installed: install the Debian package with `apt-get install -y minisign`"
        ),
        Err(error) => panic!("cannot run minisign {args:?}: {error}"),
    }
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// A fresh key pair made by `minisign -G -W` (no password) in `dir`.
fn tool_key(dir: &Path) -> PublicKey {
    check(
        &minisign(dir, &["-G", "-W", "-p", "tool.pub", "-s", "tool.key"]),
        "minisign -G",
    );
    let file = read(&dir.join("tool.pub"));
    let key = PublicKey::parse(&file).expect("kiln reads the .pub file minisign wrote");
    assert_eq!(
        file.lines().next(),
        Some(format!("untrusted comment: minisign public key {}", key.id()).as_str()),
        "kiln shows the key id as minisign does"
    );
    assert_eq!(key.to_file(), file, "kiln writes the same .pub file");
    key
}

#[test]
fn minisign_accepts_what_kiln_signs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.path();
    let secret = SecretKey::from_seed([0x5a; 32], KeyId(*b"kiln-hub"));
    write(&dir.join("kiln.pub"), secret.public().to_file());
    write(&dir.join("stable.json"), INDEX);
    let trusted = "timestamp:1700000000\tfile:stable.json\tchannel:stable";
    let signature = minisign::sign(&secret, INDEX, trusted, "signed by the kiln hub").expect("sign");
    write(&dir.join("stable.json.minisig"), &signature);

    let accepted = minisign(dir, &["-V", "-p", "kiln.pub", "-m", "stable.json"]);
    check(&accepted, "minisign -V of kiln's signature");
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(stdout.contains(&format!("Trusted comment: {trusted}")), "{stdout}");
    check(
        &minisign(dir, &["-V", "-H", "-p", "kiln.pub", "-m", "stable.json"]),
        "minisign -V -H (prehashed only)",
    );
    let inline = secret.public().to_base64();
    check(
        &minisign(dir, &["-V", "-P", &inline, "-m", "stable.json"]),
        "minisign -V -P of kiln's base64 line",
    );

    // One byte of the file changed: refused.
    let mut changed = INDEX.to_vec();
    changed[13] ^= 0x20;
    write(&dir.join("stable.json"), &changed);
    let refused = minisign(dir, &["-V", "-p", "kiln.pub", "-m", "stable.json"]);
    assert!(!refused.status.success(), "minisign accepted a changed file");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Signature verification failed"),
        "{refused:?}"
    );

    // The trusted comment changed: refused too.
    write(&dir.join("stable.json"), INDEX);
    write(
        &dir.join("stable.json.minisig"),
        signature.replace("channel:stable", "channel:beta"),
    );
    let refused = minisign(dir, &["-V", "-p", "kiln.pub", "-m", "stable.json"]);
    assert!(!refused.status.success(), "minisign accepted a changed trusted comment");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Comment signature verification failed"),
        "{refused:?}"
    );
}

#[test]
fn kiln_accepts_what_minisign_signs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.path();
    let key = tool_key(dir);
    write(&dir.join("stable.json"), INDEX);

    // The default trusted comment (timestamp, file name, tabs).
    check(
        &minisign(dir, &["-S", "-s", "tool.key", "-m", "stable.json"]),
        "minisign -S",
    );
    let signature = read(&dir.join("stable.json.minisig"));
    let verified = minisign::verify(&key, INDEX, &signature).expect("kiln verifies minisign's signature");
    assert!(verified.prehashed);
    assert!(verified.trusted_comment.starts_with("timestamp:"), "{verified:?}");
    assert!(verified.trusted_comment.contains("\tfile:stable.json"), "{verified:?}");

    // A given trusted comment comes back as given.
    let trusted = "trusted comment with spaces, UTF-8 (é) and a version: 42";
    let args = [
        "-S",
        "-s",
        "tool.key",
        "-m",
        "stable.json",
        "-t",
        trusted,
        "-c",
        "free text",
    ];
    check(&minisign(dir, &args), "minisign -S -t");
    let signature = read(&dir.join("stable.json.minisig"));
    let verified = minisign::verify(&key, INDEX, &signature).expect("kiln verifies minisign's signature");
    assert_eq!(verified.trusted_comment, trusted);
    assert!(verified.prehashed);

    let mut changed = INDEX.to_vec();
    changed[0] = b'[';
    assert_eq!(minisign::verify(&key, &changed, &signature), Err(Error::BadSignature));
    let other = SecretKey::from_seed([7; 32], KeyId([7; 8])).public();
    assert_eq!(
        minisign::verify(&other, INDEX, &signature),
        Err(Error::KeyIdMismatch {
            signature: key.id(),
            key: other.id()
        })
    );
}

#[test]
fn kiln_accepts_minisign_legacy_signatures() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.path();
    let key = tool_key(dir);
    write(&dir.join("stable.json"), INDEX);
    let args = ["-S", "-l", "-s", "tool.key", "-m", "stable.json", "-t", "legacy format"];
    check(&minisign(dir, &args), "minisign -S -l");
    let signature = read(&dir.join("stable.json.minisig"));
    assert!(
        signature.lines().nth(1).is_some_and(|line| line.starts_with("RW")),
        "an \"Ed\" signature: {signature}"
    );
    let verified = minisign::verify(&key, INDEX, &signature).expect("kiln verifies a legacy signature");
    assert_eq!(verified.trusted_comment, "legacy format");
    assert!(!verified.prehashed);
    assert_eq!(
        minisign::verify(&key, &INDEX[1..], &signature),
        Err(Error::BadSignature)
    );
}
