//! A small HTTP load generator for the hub benchmark (`bench/hub.sh`).
//!
//!   cargo run --release -p kiln-hub --example hubload -- \
//!       --base http://127.0.0.1:8700 [--token TOKEN] [--concurrency 32] \
//!       (--requests N | --duration SECS [--warmup SECS]) FILE
//!
//! FILE has one request per line, tab-separated: `LABEL METHOD PATH [BODY]`
//! (PATH is appended to --base; BODY, if any, is sent as JSON). The clients
//! take the lines in turn, cycling through the file. The token (also
//! `KILN_TOKEN`) is sent as `Authorization: Bearer …` on every request.
//!
//! It prints one JSON object: requests, errors (non-2xx or transport
//! failures), seconds, req_s, p50_ms, p99_ms, max_ms, and the same per label.
//! A non-2xx answer counts as an error and the first few are shown on stderr;
//! the exit status is non-zero only when the arguments or FILE are wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Req {
    label: String,
    method: reqwest::Method,
    url: String,
    body: Option<String>,
}

struct Opts {
    base: String,
    token: Option<String>,
    concurrency: usize,
    requests: Option<usize>,
    duration: Option<f64>,
    warmup: f64,
    file: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: hubload --base URL [--token TOKEN] [--concurrency N] (--requests N | --duration SECS [--warmup SECS]) FILE"
    );
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let mut o = Opts {
        base: String::new(),
        token: std::env::var("KILN_TOKEN").ok().filter(|t| !t.is_empty()),
        concurrency: 32,
        requests: None,
        duration: None,
        warmup: 0.0,
        file: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--base" => o.base = val().trim_end_matches('/').to_string(),
            "--token" => o.token = Some(val()),
            "--concurrency" => o.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--requests" => o.requests = Some(val().parse().unwrap_or_else(|_| usage())),
            "--duration" => o.duration = Some(val().parse().unwrap_or_else(|_| usage())),
            "--warmup" => o.warmup = val().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ if a.starts_with('-') => usage(),
            _ if o.file.is_empty() => o.file = a,
            _ => usage(),
        }
    }
    if o.base.is_empty() || o.file.is_empty() || o.concurrency == 0 || o.requests.is_some() == o.duration.is_some() {
        usage();
    }
    o
}

fn load(o: &Opts) -> Vec<Req> {
    let text = std::fs::read_to_string(&o.file).unwrap_or_else(|e| {
        eprintln!("hubload: cannot read {}: {e}", o.file);
        std::process::exit(2)
    });
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let method = f.get(1).and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok());
        match (f.first(), method, f.get(2)) {
            (Some(label), Some(method), Some(path)) => out.push(Req {
                label: label.to_string(),
                method,
                url: format!("{}{}", o.base, path),
                body: f.get(3).map(|b| b.to_string()),
            }),
            _ => {
                eprintln!(
                    "hubload: {}:{}: expected LABEL<TAB>METHOD<TAB>PATH[<TAB>BODY]",
                    o.file,
                    n + 1
                );
                std::process::exit(2)
            }
        }
    }
    if out.is_empty() {
        eprintln!("hubload: {} has no requests", o.file);
        std::process::exit(2)
    }
    out
}

/// One finished request: label index, latency (µs), success.
type Sample = (usize, u64, bool);

async fn send(client: &reqwest::Client, token: Option<&str>, r: &Req) -> Result<(), String> {
    let mut b = client.request(r.method.clone(), &r.url);
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    if let Some(body) = &r.body {
        b = b
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    let resp = b.send().await.map_err(|e| format!("{} {}: {e}", r.method, r.url))?;
    let status = resp.status();
    // Read the whole answer: serialising it is part of the work measured.
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{} {}: reading: {e}", r.method, r.url))?;
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Err(format!("{} {}: {status}: {text}", r.method, r.url))
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn stats(lat: &mut [u64], errors: usize, seconds: f64) -> serde_json::Value {
    lat.sort_unstable();
    let n = lat.len();
    serde_json::json!({
        "requests": n,
        "errors": errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "req_s": if seconds > 0.0 { ((n as f64 / seconds) * 10.0).round() / 10.0 } else { 0.0 },
        "p50_ms": (percentile(lat, 50.0) * 100.0).round() / 100.0,
        "p99_ms": (percentile(lat, 99.0) * 100.0).round() / 100.0,
        "max_ms": (lat.last().copied().unwrap_or(0) as f64 / 10.0).round() / 100.0,
    })
}

// One thread for the clients: on a small machine the load generator must
// not take the cores the hub and its database need.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = parse_args();
    let reqs = Arc::new(load(&o));
    let labels: Vec<String> = {
        let mut l: Vec<String> = reqs.iter().map(|r| r.label.clone()).collect();
        l.sort();
        l.dedup();
        l
    };
    let label_of: Vec<usize> = reqs
        .iter()
        .map(|r| labels.binary_search(&r.label).unwrap_or(0))
        .collect();
    let label_of = Arc::new(label_of);
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(120))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hubload: {e}");
            std::process::exit(1)
        }
    };
    let token: Arc<Option<String>> = Arc::new(o.token.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let shown = Arc::new(AtomicU64::new(0));

    // Warm-up: the same load, not recorded.
    if o.duration.is_some() && o.warmup > 0.0 {
        let until = Instant::now() + Duration::from_secs_f64(o.warmup);
        let mut tasks = Vec::new();
        for _ in 0..o.concurrency {
            let (client, token, reqs, next) = (client.clone(), token.clone(), reqs.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let _ = send(&client, token.as_deref(), &reqs[i % reqs.len()]).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    let start = Instant::now();
    let until = o.duration.map(|d| start + Duration::from_secs_f64(d));
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency {
        let (client, token, reqs, next, label_of, shown, issued) = (
            client.clone(),
            token.clone(),
            reqs.clone(),
            next.clone(),
            label_of.clone(),
            shown.clone(),
            issued.clone(),
        );
        let limit = o.requests;
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<Sample> = Vec::new();
            loop {
                if let Some(n) = limit
                    && issued.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) % reqs.len();
                let t0 = Instant::now();
                let res = send(&client, token.as_deref(), &reqs[i]).await;
                let us = t0.elapsed().as_micros() as u64;
                if let Err(e) = &res
                    && shown.fetch_add(1, Ordering::Relaxed) < 5
                {
                    eprintln!("hubload: {e}");
                }
                out.push((label_of[i], us, res.is_ok()));
            }
            out
        }));
    }
    let mut samples: Vec<Sample> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(s) => samples.extend(s),
            Err(e) => eprintln!("hubload: a client failed: {e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    let mut all: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let errors = samples.iter().filter(|s| !s.2).count();
    let mut out = stats(&mut all, errors, seconds);
    let mut per = BTreeMap::new();
    for (li, name) in labels.iter().enumerate() {
        let mut lat: Vec<u64> = samples.iter().filter(|s| s.0 == li).map(|s| s.1).collect();
        let errors = samples.iter().filter(|s| s.0 == li && !s.2).count();
        per.insert(name.clone(), stats(&mut lat, errors, seconds));
    }
    out["concurrency"] = serde_json::json!(o.concurrency);
    out["labels"] = serde_json::json!(per);
    println!("{out}");
}
