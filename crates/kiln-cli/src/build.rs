//! `kiln build`: resolve, then run the build engine with a progress display.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use kiln_core::stagekey::RebuildFrom;
use kiln_engine::log::{BuildLog, Reporter};
use kiln_engine::run::Ended;
use kiln_engine::{Inside, InsideRun, Request};

use crate::{Printer, ResolveArgs};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The image, e.g. `ve/minimal`.
    image: String,

    #[command(flatten)]
    resolve: ResolveArgs,

    /// Where the image files, SHA256SUMS, manifest and log go.
    #[arg(short = 'o', long, value_name = "OUTDIR", default_value = "out")]
    outdir: PathBuf,

    /// Where the work tree is made (default: /var/tmp/kiln).
    #[arg(long, value_name = "DIR", env = "KILN_WORKDIR", default_value = crate::DEFAULT_WORKDIR)]
    workdir: PathBuf,

    /// Keep the work tree after the build, for inspection.
    #[arg(long)]
    keep_workdir: bool,

    /// Open an interactive shell in the sandbox where a script failed.
    #[arg(long)]
    shell_on_failure: bool,

    /// Use SOURCE_DATE_EPOCH 0 when neither the environment nor the repository's git history sets it.
    #[arg(long)]
    reproducible: bool,

    #[command(flatten)]
    sandbox: SandboxArg,

    /// Only errors.
    #[arg(short, long)]
    quiet: bool,

    /// Show every line of the build's output.
    #[arg(short, long)]
    verbose: bool,

    /// Compressor threads for the outputs (default: every CPU). The images
    /// do not depend on it.
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<u32>,

    /// Build every stage, using and storing nothing in the stage cache.
    #[arg(long)]
    no_cache: bool,

    /// Build this stage (`base`, `packages`, `files`, `image-scripts`,
    /// `scripts`, `cleanup`, `outputs`) or script, and every later one, even
    /// when cached.
    #[arg(long, value_name = "STAGE")]
    rebuild_from: Option<String>,

    #[command(flatten)]
    cache: crate::cache::CacheDirArg,

    /// Progress as text (a display on a terminal, timestamped lines
    /// otherwise) or as JSON lines on stderr, one event per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--insecure-sandbox`, shared by the commands that run profile or
/// update scripts.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct SandboxArg {
    /// Run scripts even where the kernel cannot confine them as documented
    /// (no user namespaces, no idmapped mounts on the work directory's
    /// filesystem, no seccomp): then with what it can give. Only for trusted
    /// profiles on machines that cannot do better.
    #[arg(long, env = "KILN_INSECURE_SANDBOX")]
    pub insecure_sandbox: bool,
}

/// The sandbox as the engine's way to run commands inside an image.
struct Sandboxed {
    sandbox: kiln_sandbox::Sandbox,
    insecure: bool,
}

impl Inside for Sandboxed {
    fn run(&self, req: &InsideRun, log: &BuildLog) -> Result<Ended, String> {
        let spec = kiln_sandbox::Spec {
            root: req.root.clone(),
            argv: req.argv.clone(),
            env: req.env.clone(),
            cwd: req.cwd.clone(),
            hostname: "kiln".into(),
            network: req.network,
            binds: req
                .binds
                .iter()
                .map(|(source, target, ro)| kiln_sandbox::Bind {
                    source: source.clone(),
                    target: target.clone(),
                    read_only: *ro,
                })
                .collect(),
            timeout: req.timeout,
            view: match req.view {
                kiln_engine::View::Image => kiln_sandbox::View::Tree,
                kiln_engine::View::Host => kiln_sandbox::View::Host,
            },
            copies: req
                .copies
                .iter()
                .map(|(source, target, mode)| kiln_sandbox::CopyIn {
                    source: source.clone(),
                    target: target.clone(),
                    mode: *mode,
                })
                .collect(),
            nested_mounts: req.nested_mounts,
            insecure: self.insecure,
        };
        let io = if req.interactive {
            kiln_sandbox::Io::Inherit
        } else {
            let log = log.clone();
            kiln_sandbox::Io::Capture(Box::new(move |bytes: &[u8]| log.output(bytes)))
        };
        // The sandbox ignores Ctrl-C (an interactive shell must survive it);
        // an interrupt of kiln cancels the running command instead.
        let cancel = kiln_sandbox::Cancel::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (cancel, done) = (cancel.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if kiln_engine::run::interrupted() {
                        cancel.cancel();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let result = self.sandbox.run_with_cancel(&spec, io, &cancel);
        done.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        match result {
            Ok(kiln_sandbox::Outcome::Exited(c)) => Ok(Ended::Exited(c)),
            Ok(kiln_sandbox::Outcome::Signaled(s)) => Ok(Ended::Signaled(s)),
            Ok(kiln_sandbox::Outcome::TimedOut) => Ok(Ended::TimedOut),
            Err(kiln_sandbox::SandboxError::Cancelled) => Ok(Ended::Interrupted),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Progress on a terminal: a spinner per stage with elapsed time.
struct Fancy {
    bar: indicatif::ProgressBar,
    verbose: bool,
}

impl Reporter for Fancy {
    fn stage(&self, name: &str) {
        self.bar.reset_elapsed();
        self.bar.set_prefix(name.to_string());
        self.bar.set_message("");
    }
    fn stage_done(&self, name: &str, status: &str, seconds: f64) {
        self.bar.println(format!("  {status:>6}  {name:<14} {seconds:7.1}s"));
    }
    fn step(&self, name: &str) {
        self.bar.set_message(name.to_string());
    }
    fn line(&self, line: &str) {
        if self.verbose {
            self.bar.println(format!("          {line}"));
        }
    }
}

/// Progress without a terminal: timestamped plain lines.
pub(crate) struct Plain {
    start: Instant,
    quiet: bool,
    verbose: bool,
}

impl Plain {
    pub(crate) fn new(quiet: bool, verbose: bool) -> Self {
        Plain {
            start: Instant::now(),
            quiet,
            verbose,
        }
    }

    fn say(&self, text: &str) {
        if !self.quiet {
            eprintln!("[{:7.1}s] {text}", self.start.elapsed().as_secs_f64());
        }
    }
}

impl Reporter for Plain {
    fn stage(&self, name: &str) {
        self.say(&format!("stage {name}"));
    }
    fn stage_done(&self, name: &str, status: &str, seconds: f64) {
        self.say(&format!("stage {name} {status} in {seconds:.1}s"));
    }
    fn step(&self, name: &str) {
        self.say(&format!("  {name}"));
    }
    fn line(&self, line: &str) {
        if self.verbose {
            self.say(&format!("    {line}"));
        }
    }
}

/// Progress as JSON lines (`--log-format json`): one object per event with
/// `event`, `elapsed` (seconds) and the event's fields.
struct Json {
    start: Instant,
    verbose: bool,
}

impl Json {
    fn emit(&self, event: &str, fields: serde_json::Value) {
        let mut obj = serde_json::json!({
            "event": event,
            "elapsed": (self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
            o.extend(f);
        }
        eprintln!("{obj}");
    }
}

impl Reporter for Json {
    fn stage(&self, name: &str) {
        self.emit("stage", serde_json::json!({ "stage": name }));
    }
    fn stage_done(&self, name: &str, status: &str, seconds: f64) {
        self.emit(
            "stage_done",
            serde_json::json!({ "stage": name, "status": status, "seconds": seconds }),
        );
    }
    fn step(&self, name: &str) {
        self.emit("step", serde_json::json!({ "step": name }));
    }
    fn line(&self, line: &str) {
        if self.verbose {
            self.emit("output", serde_json::json!({ "line": line }));
        }
    }
}

pub fn run(args: &BuildArgs, printer: Printer) -> Result<ExitCode> {
    // Before any thread starts: every mount of this build (overlays of
    // cached layers, subprofile trees) lives in a namespace of its own and
    // ends with the build's last process, however it ends.
    kiln_store::overlay::enter_private_mount_namespace()
        .context("cannot make a private mount namespace for the build (kiln build runs as root)")?;
    let session = args.resolve.load()?;
    crate::report_outside(&session, printer)?;
    let res = kiln_core::resolve(&session.repo, &args.image, &session.opts);
    printer.print(&res.diagnostics, &session.repo.snapshot, crate::MessageFormat::Human);
    let Some(plan) = res.plan else {
        eprintln!("error: cannot resolve `{}`", args.image);
        return Ok(ExitCode::from(1));
    };
    let epoch = kiln_engine::default_source_date_epoch(&args.resolve.repo, args.reproducible);
    let jobs = match args.jobs {
        Some(0) => anyhow::bail!("--jobs must be at least 1"),
        Some(n) => n,
        None => kiln_engine::default_jobs(),
    };
    let json = args.log_format == LogFormat::Json;
    let store = args.cache.open()?;
    let catalog = kiln_store::catalog::Catalog::open(&store)?;
    let git_mirrors = store.dir().join("git");
    let cache = (!args.no_cache).then_some(store);
    let rebuild_from = match &args.rebuild_from {
        Some(r) => Some(RebuildFrom::parse(r, &plan).map_err(|e| anyhow::anyhow!("--rebuild-from {r}: {e}"))?),
        None => None,
    };
    // Ctrl-C: the engine kills the running step, removes partial outputs and
    // the work tree, and returns.
    ctrlc::set_handler(|| kiln_engine::run::INTERRUPTED.store(true, Ordering::SeqCst))
        .context("cannot install the interrupt handler")?;
    let fancy = std::io::stderr().is_terminal() && !args.quiet && !json;
    let bar = fancy.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:>14.bold} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let reporter: Arc<dyn Reporter> = match &bar {
        Some(bar) => Arc::new(Fancy {
            bar: bar.clone(),
            verbose: args.verbose,
        }),
        None if json => Arc::new(Json {
            start: Instant::now(),
            verbose: args.verbose,
        }),
        None => Arc::new(Plain {
            start: Instant::now(),
            quiet: args.quiet,
            verbose: args.verbose,
        }),
    };
    let repo = args
        .resolve
        .repo
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", args.resolve.repo.display()))?;
    let req = Request {
        plan,
        repo,
        outdir: args.outdir.clone(),
        workdir: args.workdir.clone(),
        source_date_epoch: epoch,
        jobs,
        cache,
        rebuild_from,
        catalog: Some(catalog),
        git_mirrors,
        keep_workdir: args.keep_workdir,
        shell_on_failure: args.shell_on_failure,
        reporter,
    };
    let sandbox = sandbox(args.sandbox)?;
    let result = kiln_engine::build(&req, &sandbox);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if json {
        return Ok(json_result(&result, args));
    }
    match result {
        Ok(built) => {
            if !args.quiet {
                for o in &built.manifest.outputs {
                    println!("{}  {}", o.sha256, args.outdir.join(&o.file).display());
                }
                eprintln!(
                    "built {} ({}) in {}",
                    built.manifest.nvr,
                    built.manifest.arch,
                    args.outdir.display()
                );
                if let Some(w) = &built.workdir {
                    eprintln!("work tree kept at {}", w.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_failure(&format!("build of `{}`", args.image), &e)),
    }
}

/// Prints a failed build or update: stage, step, command, the log's tail,
/// hints; returns the exit code (130 when interrupted).
pub(crate) fn report_failure(what: &str, e: &kiln_engine::BuildError) -> ExitCode {
    eprintln!(
        "error: {what} failed in stage `{}`{}",
        e.stage,
        e.step.as_ref().map(|s| format!(", step `{s}`")).unwrap_or_default()
    );
    eprintln!("  {}", e.message);
    if let Some(c) = &e.command {
        eprintln!("  command: {c}");
    }
    if !e.log_tail.is_empty() {
        eprintln!("  last {} lines of output:", e.log_tail.len());
        for l in &e.log_tail {
            eprintln!("  | {l}");
        }
    }
    if !e.missing_packages.is_empty() {
        eprintln!(
            "hint: apt-get install {}   (or: kiln doctor --fix)",
            e.missing_packages.join(" ")
        );
    }
    if let Some(p) = &e.log_path {
        eprintln!("  full log: {}", p.display());
    }
    if let Some(w) = &e.workdir {
        eprintln!("  work tree kept at {}", w.display());
    }
    ExitCode::from(if e.interrupted { 130 } else { 1 })
}

/// The sandbox, through the re-executed kiln binary.
pub(crate) fn sandbox(arg: SandboxArg) -> Result<impl Inside> {
    Ok(Sandboxed {
        sandbox: kiln_sandbox::Sandbox::current_exe().context("cannot locate the kiln binary for the sandbox")?,
        insecure: arg.insecure_sandbox,
    })
}

/// The end of a `--log-format json` build: one `built` or `failed` event.
fn json_result(result: &Result<kiln_engine::Built, kiln_engine::BuildError>, args: &BuildArgs) -> ExitCode {
    let event = match result {
        Ok(built) => serde_json::json!({
            "event": "built",
            "nvr": built.manifest.nvr,
            "arch": built.manifest.arch,
            "manifest": built.manifest_path,
            "log": built.log_path,
            "workdir": built.workdir,
            "outputs": built.manifest.outputs.iter().map(|o| serde_json::json!({
                "file": args.outdir.join(&o.file),
                "format": o.format,
                "size": o.size,
                "sha256": o.sha256,
            })).collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({
            "event": "failed",
            "image": args.image,
            "stage": e.stage,
            "step": e.step,
            "command": e.command,
            "message": e.message,
            "log_tail": e.log_tail,
            "log": e.log_path,
            "missing_packages": e.missing_packages,
            "interrupted": e.interrupted,
            "workdir": e.workdir,
        }),
    };
    eprintln!("{event}");
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.interrupted => ExitCode::from(130),
        Err(_) => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use clap::Args;
    use kiln_core::stagekey::Stage;

    #[test]
    fn rebuild_from_help_names_every_stage_in_order() {
        let cmd = super::BuildArgs::augment_args(clap::Command::new("build"));
        let help = cmd
            .get_arguments()
            .find(|a| a.get_id() == "rebuild_from")
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let listed: Vec<&str> = help.split('`').skip(1).step_by(2).collect();
        let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(listed, stages, "--rebuild-from's help: {help}");
    }
}
