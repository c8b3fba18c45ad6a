//! `kiln builder` (docs/hub.md): a process that heartbeats to the hub,
//! claims tasks that match it, runs them and reports.
//!
//! A `build` task checks out the profile repository at its ref, fetches the
//! target's macro layers from the hub and runs `kiln build`; an `update`
//! task pulls its source image from the hub and runs `kiln update`. Both run
//! as child processes of this one (each in its own sandbox), with their
//! output streamed to the task's log on the hub. The outputs are uploaded
//! file by file (streamed, sha256-verified by the hub), then one report
//! makes the hub record the build and tag it in a single transaction: a
//! builder that dies half way leaves an attempt the hub retries and sweeps,
//! never a half-recorded build.
//!
//! Cancellation arrives with heartbeats and interrupts the child, which
//! stops its sandbox and undoes its mounts. A child also gets SIGINT when
//! its builder dies (`KILN_DIE_WITH_PARENT`). Shutdown is graceful: the
//! first request stops claiming and lets running tasks finish, the second
//! interrupts them and hands them back to the hub.

pub mod outdir;
mod tasklog;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln_hub_api::Client;
use kiln_hub_api::model::{BuildRequest, NewBuild, Task, TaskReport, TaskRequest, UpdateRequest};
use serde_json::{Value, json};

use crate::tasklog::TaskLog;

/// The environment variable a child reads to die with its builder: the
/// builder's pid (the child checks it is still its parent).
pub const DIE_WITH_PARENT: &str = "KILN_DIE_WITH_PARENT";

/// How a builder runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Its name, as registered with `kiln host add`.
    pub name: String,
    pub hub: String,
    /// Its host token.
    pub token: Option<String>,
    /// Tasks run at once.
    pub capacity: usize,
    /// Pause between claims when there is no work.
    pub poll: Duration,
    /// Exit after this long without work.
    pub exit_when_idle: Option<Duration>,
    /// Where task directories (checkouts, outputs) and git mirrors go.
    pub workdir: PathBuf,
    /// The builder config (`[macros]` is macro layer 3); re-read per task.
    pub config_file: Option<PathBuf>,
    /// The `kiln` executable the tasks run.
    pub kiln: PathBuf,
}

/// Shutdown requests: 0 runs, 1 drains (no new claims; running tasks
/// finish), 2 releases (running tasks are interrupted and handed back).
#[derive(Debug, Default)]
pub struct Shutdown(AtomicU8);

impl Shutdown {
    /// One more request (Ctrl-C, SIGTERM); returns the new level.
    pub fn request(&self) -> u8 {
        let l = self.0.load(Ordering::SeqCst).saturating_add(1).min(2);
        self.0.store(l, Ordering::SeqCst);
        l
    }

    pub fn level(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a builder did, for `--stats`.
#[derive(Debug, Default)]
pub struct Summary {
    pub tasks: u64,
    /// Every claim call's latency, in milliseconds.
    pub claim_ms: Vec<f64>,
}

struct Ctx {
    cfg: Config,
    client: Client,
    shutdown: Arc<Shutdown>,
    /// Tasks the hub says were cancelled.
    cancelled: Mutex<HashSet<i64>>,
}

impl Ctx {
    fn is_cancelled(&self, id: i64) -> bool {
        self.cancelled.lock().is_ok_and(|c| c.contains(&id))
    }
}

/// How a task ended on this builder.
enum Outcome {
    Built(NewBuild, Value),
    Done(Value),
    Failed(String),
    Cancelled,
    Released,
}

/// Runs the builder until it is idle long enough (`exit_when_idle`) or
/// shut down.
pub fn run(cfg: Config, shutdown: Arc<Shutdown>) -> Result<Summary> {
    let client = Client::new(&cfg.hub, cfg.token.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hb = client.heartbeat().map_err(hub_err)?;
    let lease = hb.lease_seconds as f64;
    std::fs::create_dir_all(&cfg.workdir)
        .with_context(|| format!("cannot create the work directory {}", cfg.workdir.display()))?;
    eprintln!("builder {} connected; {} slot(s)", cfg.name, cfg.capacity);
    let ctx = Arc::new(Ctx {
        cfg,
        client,
        shutdown,
        cancelled: Mutex::new(HashSet::new()),
    });
    let finished = Arc::new(AtomicBool::new(false));
    // Heartbeats renew the leases of running tasks (three per lease) and
    // bring the ids of cancelled ones.
    let beats = {
        let (ctx, finished) = (ctx.clone(), finished.clone());
        let every = Duration::from_secs_f64((lease / 3.0).clamp(0.5, 20.0));
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                match ctx.client.heartbeat() {
                    Ok(hb) => {
                        if let Ok(mut c) = ctx.cancelled.lock() {
                            c.extend(hb.cancel);
                        }
                    }
                    Err(e) => eprintln!("heartbeat: {e}"),
                }
            }
        })
    };
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..ctx.cfg.capacity.max(1) {
        let (ctx, latencies, done) = (ctx.clone(), latencies.clone(), done.clone());
        workers.push(std::thread::spawn(move || worker(&ctx, &latencies, &done)));
    }
    let mut failure = None;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("a builder worker panicked")),
        }
    }
    finished.store(true, Ordering::SeqCst);
    let _ = beats.join();
    if let Some(e) = failure {
        return Err(e);
    }
    let claim_ms = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Summary {
        tasks: done.load(Ordering::SeqCst),
        claim_ms,
    })
}

fn worker(ctx: &Ctx, latencies: &Mutex<Vec<f64>>, done: &AtomicU64) -> Result<()> {
    let mut idle_since = Instant::now();
    while ctx.shutdown.level() == 0 {
        let start = Instant::now();
        let t: Option<Task> = match ctx.client.claim() {
            Ok(t) => t,
            // A host that was disabled or removed stops; a hub that is
            // away (restarting, unreachable) is waited for.
            Err(e) if matches!(e.status, Some(401 | 403)) => bail!("{e}"),
            Err(e) => {
                eprintln!("claim: {e}; trying again");
                std::thread::sleep(Duration::from_secs(2).max(ctx.cfg.poll));
                continue;
            }
        };
        if let Ok(mut l) = latencies.lock() {
            l.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let Some(t) = t else {
            if ctx.cfg.exit_when_idle.is_some_and(|l| idle_since.elapsed() >= l) {
                return Ok(());
            }
            std::thread::sleep(ctx.cfg.poll);
            continue;
        };
        let outcome = match &t.request {
            TaskRequest::Noop => Outcome::Done(json!({"noop": true})),
            // Closed by the hub as it is made: never claimed.
            TaskRequest::TagBuild(_) => Outcome::Failed("a tagBuild task is not a builder's".into()),
            TaskRequest::Build(_) | TaskRequest::Update(_) => {
                let log = TaskLog::new(&ctx.client, t.id);
                let o = run_image_task(ctx, &t, &log).unwrap_or_else(|e| {
                    log.line(&format!("error: {e:#}"));
                    Outcome::Failed(format!("{e:#}"))
                });
                log.flush();
                if let Outcome::Failed(e) = o {
                    Outcome::Failed(format!("{e}\n--- log tail ---\n{}", log.tail()))
                } else {
                    o
                }
            }
        };
        report(ctx, &t, outcome);
        done.fetch_add(1, Ordering::SeqCst);
        idle_since = Instant::now();
    }
    Ok(())
}

fn report(ctx: &Ctx, t: &Task, outcome: Outcome) {
    let id = t.id;
    // A report is worth waiting for while the hub is away: until the lease
    // would run out anyway (the hub answers 409 then).
    let post = |body: TaskReport| {
        let mut wait = Duration::from_millis(500);
        let start = Instant::now();
        loop {
            match ctx.client.finish_task(id, &body) {
                Err(e) if e.status.is_none_or(|s| s >= 500) && start.elapsed() < Duration::from_secs(600) => {
                    eprintln!("task {id}: reporting: {e}; trying again");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(15));
                }
                r => return r,
            }
        }
    };
    let r = match outcome {
        Outcome::Done(result) => post(TaskReport {
            ok: true,
            result,
            build: None,
        }),
        Outcome::Failed(error) => post(failed(error)),
        Outcome::Built(build, result) => match post(TaskReport {
            ok: true,
            result,
            build: Some(build),
        }) {
            // The hub refused to record it (e.g. the package is not listed
            // in the destination tag): the task fails with that reason.
            Err(e) if e.status.is_some_and(|s| s < 500) => post(failed(e.message)),
            r => r,
        },
        Outcome::Cancelled => {
            eprintln!("task {id}: cancelled; its sandbox is stopped");
            return;
        }
        Outcome::Released => ctx.client.release_task(id),
    };
    match r {
        Ok(t) => eprintln!("task {id} ({}): {}", t.method(), t.state),
        Err(e) => eprintln!("task {id}: reporting failed: {e}"),
    }
}

/// A failure's report.
fn failed(error: String) -> TaskReport {
    TaskReport {
        ok: false,
        result: json!({ "error": error }),
        build: None,
    }
}

/// A build or update in a task directory of its own, removed afterwards.
fn run_image_task(ctx: &Ctx, t: &Task, log: &TaskLog) -> Result<Outcome> {
    let dir = ctx.cfg.workdir.join(format!("task-{}", t.id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clean {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    log.line(&format!(
        "builder {} runs task {} ({}), attempt {}/{}",
        ctx.cfg.name,
        t.id,
        t.method(),
        t.attempts,
        t.max_attempts
    ));
    let r = match &t.request {
        TaskRequest::Build(req) => build(ctx, t, req, &dir, log),
        TaskRequest::Update(req) => update(ctx, t, req, &dir, log),
        TaskRequest::Noop => Ok(Outcome::Done(json!({"noop": true}))),
        TaskRequest::TagBuild(_) => Ok(Outcome::Failed("a tagBuild task is not a builder's".into())),
    };
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("task {}: cannot remove {}: {e}", t.id, dir.display());
    }
    r
}

fn hub_err(e: kiln_hub_api::ClientError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The builder config's macros (layer 3), read anew for each task.
fn builder_macros(ctx: &Ctx) -> Result<Vec<(String, String)>> {
    let Some(path) = &ctx.cfg.config_file else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the builder config {}", path.display()))?;
    let (defs, diags) = kiln_core::external::builder_macros(&path.display().to_string(), &text);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        bail!("the builder config {} has errors: {}", path.display(), d.message);
    }
    Ok(defs.into_iter().map(|d| (d.name, d.value)).collect())
}

fn build(ctx: &Ctx, t: &Task, req: &BuildRequest, dir: &Path, log: &TaskLog) -> Result<Outcome> {
    let layers = ctx.client.target_macros(&req.target).map_err(hub_err)?;
    let layers_file = dir.join("target-macros.json");
    std::fs::write(&layers_file, serde_json::to_vec_pretty(&layers)?)?;
    let (url, rev) = kiln_core::resolve::parse_git_repo(&req.repo).map_err(|e| anyhow::anyhow!("{}: {e}", req.repo))?;
    let repo = dir.join("repo");
    let commit = kiln_engine::gitfetch::checkout(&url, &rev, &ctx.cfg.workdir.join("git"), &repo)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    log.line(&format!("checked out {url} at {rev} ({commit})"));
    let out = dir.join("out");
    let mut cmd = Command::new(&ctx.cfg.kiln);
    // Every line of the build's output goes to the task's log.
    cmd.args(["build", "--verbose"])
        .arg(&req.image)
        .arg("--repo")
        .arg(&repo)
        .arg("--outdir")
        .arg(&out)
        .arg("--target-macros")
        .arg(&layers_file)
        .arg("--builder-config")
        .arg(ctx.cfg.config_file.as_deref().unwrap_or(Path::new("/dev/null")));
    for (k, v) in &req.defines {
        cmd.arg("--define").arg(format!("{k}={v}"));
    }
    let result = json!({"builder": ctx.cfg.name, "repo": url, "ref": rev, "commit": commit, "target": req.target});
    let nvr = req.nvr.as_deref().map(|n| kiln_core::pipeline::fill_commit(n, &commit));
    finish(ctx, t, cmd, (&out, nvr.as_deref()), log, result)
}

fn update(ctx: &Ctx, t: &Task, req: &UpdateRequest, dir: &Path, log: &TaskLog) -> Result<Outcome> {
    let layers = ctx.client.target_macros(&req.target).map_err(hub_err)?;
    // The source image, from the hub into this builder's catalog.
    let mut pull = Command::new(&ctx.cfg.kiln);
    pull.args(["image", "pull", &req.from, "--hub", &ctx.cfg.hub]);
    match supervise(ctx, t.id, pull, log)? {
        Ended::Exited(0) => {}
        Ended::Exited(c) => bail!("`kiln image pull {}` exited with {c}", req.from),
        Ended::Cancelled => return Ok(Outcome::Cancelled),
        Ended::Released => return Ok(Outcome::Released),
    }
    // The script pinned to the commit its ref has now: the run records it,
    // and a target name may carry it.
    let script = kiln_core::resolve::parse_git_ref(&req.script).map_err(|e| anyhow::anyhow!("{}: {e}", req.script))?;
    let commit = kiln_engine::gitfetch::resolve(&script.url, &script.rev, &ctx.cfg.workdir.join("git"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    log.line(&format!("script {} at {} ({commit})", script.url, script.rev));
    let pinned = format!("git+{}@{commit}:{}", script.url, script.path);
    let name = kiln_core::pipeline::fill_commit(&req.name, &commit);
    // Lowest precedence first: kiln update takes the last definition.
    let mut defines: Vec<(String, String)> = layers
        .build_tag_macros
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    defines.extend(builder_macros(ctx)?);
    defines.extend(layers.target_macros.clone());
    defines.extend(req.defines.iter().cloned());
    let out = dir.join("out");
    let mut cmd = Command::new(&ctx.cfg.kiln);
    cmd.args(["update", "--from", &req.from, "--script", &pinned, "--name", &name])
        .arg("--outdir")
        .arg(&out);
    if let Some(f) = &req.format {
        cmd.args(["--format", f]);
    }
    for (k, v) in &defines {
        cmd.arg("--define").arg(format!("{k}={v}"));
    }
    let result = json!({
        "builder": ctx.cfg.name, "from": req.from, "script": req.script, "ref": script.rev, "commit": commit,
        "target": req.target,
    });
    finish(ctx, t, cmd, (&out, None), log, result)
}

/// Runs the build or update and uploads what it made.
/// `out` is the output directory and the NVR to record instead of the
/// manifest's, if any.
fn finish(
    ctx: &Ctx,
    t: &Task,
    cmd: Command,
    out: (&Path, Option<&str>),
    log: &TaskLog,
    result: Value,
) -> Result<Outcome> {
    let (out, nvr) = out;
    match supervise(ctx, t.id, cmd, log)? {
        Ended::Exited(0) => {}
        Ended::Exited(c) => return Ok(Outcome::Failed(format!("the {} exited with status {c}", t.method()))),
        Ended::Cancelled => return Ok(Outcome::Cancelled),
        Ended::Released => return Ok(Outcome::Released),
    }
    let (build, files) = outdir::read(out, nvr)?;
    for (a, path) in build.artifacts.iter().zip(&files) {
        if ctx.is_cancelled(t.id) {
            return Ok(Outcome::Cancelled);
        }
        ctx.client
            .upload_task_file(t.id, &a.file, path, &a.sha256)
            .map_err(|e| anyhow::anyhow!("uploading {}: {e}", a.file))?;
        log.line(&format!("uploaded {} ({} bytes, sha256 {})", a.file, a.size, a.sha256));
    }
    Ok(Outcome::Built(build, result))
}

enum Ended {
    Exited(i32),
    Cancelled,
    Released,
}

/// Runs a child with its output going to the task's log; interrupts it
/// when the task is cancelled or the builder releases its tasks.
fn supervise(ctx: &Ctx, id: i64, mut cmd: Command, log: &TaskLog) -> Result<Ended> {
    let shown = format!("{cmd:?}");
    log.line(&format!("$ {}", shown.replace('"', "")));
    // A process group of its own: a Ctrl-C at the builder's terminal is
    // the builder's to handle (drain first), not the build's.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.env(DIE_WITH_PARENT, std::process::id().to_string())
        .env("KILN_HUB", &ctx.cfg.hub)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = &ctx.cfg.token {
        cmd.env("KILN_TOKEN", t);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", ctx.cfg.kiln.display()))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| log.reader(r))
    .collect();
    let mut stop: Option<(Ended, Instant)> = None;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if stop.is_none() {
            let why = if ctx.is_cancelled(id) {
                Some(Ended::Cancelled)
            } else if ctx.shutdown.level() >= 2 {
                Some(Ended::Released)
            } else {
                None
            };
            if let Some(why) = why {
                log.line("interrupting: the task was cancelled or the builder is shutting down");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                stop = Some((why, Instant::now()));
            }
        }
        if let Some((_, since)) = &stop
            && since.elapsed() > Duration::from_secs(120)
        {
            let _ = child.kill();
        }
        log.flush_if_due();
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in readers {
        let _ = r.join();
    }
    log.flush();
    if let Some((why, _)) = stop {
        return Ok(why);
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(Ended::Exited(
        status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    ))
}

/// For a child of a builder (`KILN_DIE_WITH_PARENT`): get SIGINT when the
/// builder dies, so a crashed builder leaves no build running; exits at
/// once if it already died.
pub fn die_with_parent() {
    let Some(parent) = std::env::var(DIE_WITH_PARENT).ok().and_then(|p| p.parse::<i32>().ok()) else {
        return;
    };
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGINT);
    if nix::unistd::getppid().as_raw() == parent {
        return;
    }
    // A kiln the child started in turn inherits the variable: its parent
    // is not the builder, which is still alive.
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(parent), None).is_ok() {
        let _ = nix::sys::prctl::set_pdeathsig(None);
        return;
    }
    eprintln!("the builder that started this process is gone");
    std::process::exit(130);
}
