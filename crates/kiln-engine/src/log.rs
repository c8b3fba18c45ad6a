//! The build log: every line of every step, to `<nvr>.build.log`, with the
//! last lines kept for error reports and forwarded to the progress display.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many lines a failure report shows (README.md).
pub const TAIL_LINES: usize = 40;

/// Receives what the build does, for a progress display.
pub trait Reporter: Send + Sync {
    /// A stage starts (`base`, `files`, …).
    fn stage(&self, name: &str);
    /// A stage ends.
    fn stage_done(&self, name: &str, status: &str, seconds: f64);
    /// A step inside a stage (a script, an output).
    fn step(&self, name: &str);
    /// A line of output of the current step.
    fn line(&self, line: &str);
}

/// A reporter that shows nothing (tests, `--quiet`).
pub struct Silent;

impl Reporter for Silent {
    fn stage(&self, _: &str) {}
    fn stage_done(&self, _: &str, _: &str, _: f64) {}
    fn step(&self, _: &str) {}
    fn line(&self, _: &str) {}
}

struct Inner {
    file: File,
    tail: VecDeque<String>,
    partial: Vec<u8>,
}

#[derive(Clone)]
pub struct BuildLog {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
    reporter: Arc<dyn Reporter>,
}

impl BuildLog {
    pub fn create(path: &Path, reporter: Arc<dyn Reporter>) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(BuildLog {
            inner: Arc::new(Mutex::new(Inner {
                file,
                tail: VecDeque::new(),
                partial: Vec::new(),
            })),
            start: Instant::now(),
            reporter,
        })
    }

    pub fn reporter(&self) -> &dyn Reporter {
        &*self.reporter
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// A line written by kiln itself (`==> stage base`).
    pub fn note(&self, text: &str) {
        let stamp = self.start.elapsed().as_secs_f64();
        self.with(|i| {
            let _ = writeln!(i.file, "[{stamp:8.2}] {text}");
        });
    }

    /// Output of a command; split into lines, kept for the tail.
    pub fn output(&self, bytes: &[u8]) {
        let lines = self.with(|i| {
            let _ = i.file.write_all(bytes);
            i.partial.extend_from_slice(bytes);
            let mut lines = Vec::new();
            while let Some(pos) = i.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = i.partial.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                i.tail.push_back(text.clone());
                if i.tail.len() > TAIL_LINES {
                    i.tail.pop_front();
                }
                lines.push(text);
            }
            lines
        });
        for l in lines {
            self.reporter.line(&l);
        }
    }

    /// The last lines of output (for a failure report).
    pub fn tail(&self) -> Vec<String> {
        self.with(|i| {
            let mut t: Vec<String> = i.tail.iter().cloned().collect();
            if !i.partial.is_empty() {
                t.push(String::from_utf8_lossy(&i.partial).into_owned());
            }
            t
        })
    }

    /// Forgets the tail (a new step starts).
    pub fn reset_tail(&self) {
        self.with(|i| {
            i.tail.clear();
            i.partial.clear();
        });
    }
}
