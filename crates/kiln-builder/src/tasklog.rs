//! A task's log on its way to the hub: lines gathered from the builder and
//! its child processes, sent in chunks about once a second (so `kiln task
//! watch` follows a build live), with the last lines kept for the report
//! of a failure.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_hub_api::Client;

/// Lines kept for a failure's report.
const TAIL: usize = 40;
/// A chunk is sent at least this often while lines come in…
const EVERY: Duration = Duration::from_secs(1);
/// …or once it is this large (the hub takes bodies up to 1 MiB).
const CHUNK: usize = 256 * 1024;

#[derive(Default)]
struct Shared {
    pending: String,
    tail: VecDeque<String>,
}

pub struct TaskLog<'a> {
    client: &'a Client,
    id: i64,
    shared: Arc<Mutex<Shared>>,
    last: Mutex<Instant>,
}

fn push(shared: &Mutex<Shared>, line: &str) {
    if let Ok(mut s) = shared.lock() {
        s.pending.push_str(line);
        s.pending.push('\n');
        if s.tail.len() == TAIL {
            s.tail.pop_front();
        }
        s.tail.push_back(line.to_string());
    }
}

impl<'a> TaskLog<'a> {
    pub fn new(client: &'a Client, id: i64) -> TaskLog<'a> {
        TaskLog {
            client,
            id,
            shared: Arc::default(),
            last: Mutex::new(Instant::now()),
        }
    }

    /// A line of the builder's own.
    pub fn line(&self, text: &str) {
        push(&self.shared, &format!("[kiln builder] {text}"));
        self.flush_if_due();
    }

    /// Gathers a child's output, line by line, until it closes.
    pub fn reader(&self, r: Box<dyn Read + Send>) -> JoinHandle<()> {
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        for l in text.trim_end_matches(['\n', '\r']).split('\r') {
                            push(&shared, l);
                        }
                    }
                }
            }
        })
    }

    pub fn flush_if_due(&self) {
        let due = self.last.lock().is_ok_and(|l| l.elapsed() >= EVERY)
            || self.shared.lock().is_ok_and(|s| s.pending.len() >= CHUNK);
        if due {
            self.flush();
        }
    }

    /// Sends what is pending. A log the hub cannot take is not worth
    /// failing the build for: it is kept on stderr instead.
    pub fn flush(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
        let text = match self.shared.lock() {
            Ok(mut s) => std::mem::take(&mut s.pending),
            Err(_) => return,
        };
        if text.is_empty() {
            return;
        }
        // Chunks below the hub's body limit, cut at line ends.
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut < rest.len()
                && let Some(nl) = rest[..cut].rfind('\n')
            {
                cut = nl + 1;
            }
            let (chunk, more) = rest.split_at(cut);
            if let Err(e) = self.client.append_log(self.id, chunk.to_string()) {
                eprintln!("task {}: cannot send its log: {e}", self.id);
                eprint!("{chunk}");
            }
            rest = more;
        }
    }

    /// The last lines, for a failure's report.
    pub fn tail(&self) -> String {
        self.shared
            .lock()
            .map(|s| s.tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}
