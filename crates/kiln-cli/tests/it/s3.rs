//! The hub's artifact store on S3 (docs/hub.md, `--store s3://…`): a real
//! `kiln serve` against an S3-compatible server (`moto_server`, from PyPI)
//! on 127.0.0.1, driven by the `kiln` client commands.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::hub::json;
use crate::support::{kiln, run};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what} did not start on port {port}");
}

/// One plain HTTP request (S3's API without signatures, as moto accepts
/// it): the status code and body.
fn http(port: u16, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).expect("write");
    c.write_all(body).expect("write");
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (
        code,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// The keys in the bucket.
fn keys(port: u16, bucket: &str) -> Vec<String> {
    let (code, xml) = http(port, "GET", &format!("/{bucket}?list-type=2"), b"", &[]);
    assert_eq!(code, 200, "{xml}");
    xml.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

fn moto() -> (Proc, u16) {
    let port = free_port();
    let p = port.to_string();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &p])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &p])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("moto_server is needed for the S3 store tests: pip install 'moto[server]' (tools/test.sh does)");
    let proc = Proc(child);
    wait_for_port(port, "moto_server (pip install 'moto[server]')");
    (proc, port)
}

/// A made-up output directory: a 12 MiB image (several multipart parts),
/// a manifest and SHA256SUMS.
fn outdir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut data = Vec::with_capacity(12 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 12 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(dir.join("s3-probe-1.0-1.amd64.img"), &data).expect("img");
    std::fs::write(
        dir.join("s3-probe-1.0-1.amd64.manifest.json"),
        r#"{"name": "s3-probe", "version": "1.0", "release": "1"}"#,
    )
    .expect("manifest");
    let sum = |f: &str| {
        let o = Command::new("sha256sum").arg(dir.join(f)).output().expect("sha256sum");
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .expect("sum")
            .to_string()
    };
    let img = "s3-probe-1.0-1.amd64.img";
    let man = "s3-probe-1.0-1.amd64.manifest.json";
    std::fs::write(
        dir.join("s3-probe-1.0-1.amd64.SHA256SUMS"),
        format!("{}  {img}\n{}  {man}\n", sum(img), sum(man)),
    )
    .expect("sums");
}

#[test]
fn the_hub_stores_artifacts_and_images_in_s3() {
    let (_moto, s3) = moto();
    let (code, body) = http(s3, "PUT", "/kiln-test", b"", &[]);
    assert_eq!(code, 200, "creating the bucket: {body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("hub.db").display());
    let port = free_port();
    let serve = |store: &str| {
        kiln()
            .args([
                "serve",
                "--db",
                &db,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                store,
            ])
            .arg("--key-file")
            .arg(dir.path().join("hub.key"))
            .env("AWS_ACCESS_KEY_ID", "kiln-test")
            .env("AWS_SECRET_ACCESS_KEY", "kiln-test-secret")
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).expect("log"))
            .spawn()
            .expect("kiln serve")
    };
    // A bad option is refused with its name.
    let r = run(kiln()
        .args([
            "serve",
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--store",
            "s3://kiln-test?endpiont=http://x",
            "--key-file",
        ])
        .arg(dir.path().join("hub.key")));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unknown option `endpiont`"), "{}", r.stderr);

    let store = format!("s3://kiln-test/hub?endpoint=http://127.0.0.1:{s3}");
    let _hub = Proc(serve(&store));
    wait_for_port(port, "kiln serve");
    let url = format!("http://127.0.0.1:{port}");
    let admin = run(kiln().args(["user", "create", "admin", "--admin", "--db", &db]));
    assert_eq!(admin.code, 0, "{}", admin.stderr);
    let token = admin.stdout.trim().to_string();
    let client = |args: &[&str]| {
        let r = run(kiln()
            .args(args)
            .env("KILN_HUB", &url)
            .env("KILN_TOKEN", &token)
            .env("HOME", dir.path()));
        assert_eq!(r.code, 0, "kiln {}: {}{}", args.join(" "), r.stdout, r.stderr);
        r.stdout
    };

    // A build's artifacts: streamed in parts, verified, downloaded back.
    let out = dir.path().join("out");
    outdir(&out);
    client(&["builds", "import", &out.to_string_lossy()]);
    let b = json(&client(&["builds", "info", "s3-probe-1.0-1", "--json"]));
    assert_eq!(b["state"], "COMPLETE", "{b}");
    let dl = dir.path().join("dl");
    client(&["builds", "download", "s3-probe-1.0-1", "-o", &dl.to_string_lossy()]);
    let a = std::fs::read(out.join("s3-probe-1.0-1.amd64.img")).expect("a");
    let d = std::fs::read(dl.join("s3-probe-1.0-1.amd64.img")).expect("d");
    assert!(a == d, "the download is the upload");
    // Everything is under the URL's prefix, at its content address, and no
    // temporary object is left.
    let sha = b["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .find(|x| x["file"] == "s3-probe-1.0-1.amd64.img")
        .and_then(|x| x["sha256"].as_str())
        .expect("sha")
        .to_string();
    let k = keys(s3, "kiln-test");
    assert!(k.contains(&format!("hub/blobs/sha256/{sha}")), "{k:?}");
    assert!(k.iter().all(|k| k.starts_with("hub/blobs/sha256/")), "{k:?}");

    // A wrong declared sha256 is refused and leaves nothing in the bucket.
    let before = keys(s3, "kiln-test");
    let (code, body) = http(
        port,
        "PUT",
        "/api/v1/images/evil/1/upload",
        b"not what was declared",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("x-kiln-sha256", &"0".repeat(64)),
        ],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("sha256 mismatch"), "{body}");
    assert_eq!(keys(s3, "kiln-test"), before);

    // Source images too: import, pull (verified), remove (the object goes).
    let img = dir.path().join("src.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&img)
        .arg("-C")
        .arg(&out)
        .arg("s3-probe-1.0-1.amd64.manifest.json")
        .status()
        .expect("tar");
    assert!(st.success());
    client(&["image", "import", "src", "1", &img.to_string_lossy(), "--hub"]);
    let cache = dir.path().join("cache");
    let r = run(kiln()
        .args(["image", "pull", "src@1", "--hub", &url, "--cache-dir"])
        .arg(&cache)
        .env("KILN_TOKEN", &token));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let n = keys(s3, "kiln-test").len();
    client(&["image", "rm", "src@1", "--hub"]);
    assert_eq!(keys(s3, "kiln-test").len(), n - 1);
}
