//! `kiln builder`: a builder's main loop (kiln_builder) with its token
//! read safely.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::*;

#[derive(Args, Debug)]
pub struct BuilderArgs {
    #[command(flatten)]
    hub: HubOpts,
    /// This builder's name (as registered with `kiln host add`).
    #[arg(long)]
    name: String,
    /// A file holding the host token (mode 0600 or stricter). Or set
    /// KILN_TOKEN; the builder refuses `--token`, since a command line is
    /// readable by every user of the host.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Tasks run at once (at most the registered capacity).
    #[arg(long, default_value_t = 1)]
    capacity: usize,
    /// Where task checkouts, outputs and git mirrors go.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp/kiln-builder")]
    workdir: PathBuf,
    /// The builder config; its [macros] are macro layer 3 (default:
    /// /etc/kiln/builder.toml when it exists). Read anew for each task.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seconds between polls when there is no work.
    #[arg(long, default_value_t = 1.0)]
    poll: f64,
    /// Exit after this many seconds without work (for benchmarks and tests).
    #[arg(long, value_name = "SECONDS")]
    exit_when_idle: Option<f64>,
    /// Print a JSON summary (tasks run, claim latency) on exit.
    #[arg(long)]
    stats: bool,
}

/// A host token from a file that only its owner can read.
fn read_token_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open the token file {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    if !meta.is_file() {
        bail!("the token file {} is not a regular file", path.display());
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "the token file {} is readable by other users (mode {:04o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!("the token file {} belongs to another user", path.display());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

/// `kiln builder`: heartbeats, claims tasks, runs them, reports. The first
/// Ctrl-C or SIGTERM stops claiming and lets running tasks finish; the
/// second interrupts them and hands them back to the hub.
pub fn builder(a: &BuilderArgs) -> Result<ExitCode> {
    if std::env::args_os().any(|arg| arg == "--token" || arg.to_string_lossy().starts_with("--token=")) {
        bail!(
            "kiln builder does not take --token: every user of this host can read a command line; \
             pass the host token in KILN_TOKEN or in a file readable only by the builder (--token-file FILE)"
        );
    }
    let (hub, token) = a.hub.resolved()?;
    let token = match &a.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => token,
    };
    let config = match &a.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(crate::DEFAULT_BUILDER_CONFIG)).filter(|p| p.is_file()),
    };
    let cfg = kiln_builder::Config {
        name: a.name.clone(),
        hub,
        token,
        capacity: a.capacity,
        poll: std::time::Duration::from_secs_f64(a.poll.max(0.01)),
        exit_when_idle: a.exit_when_idle.map(std::time::Duration::from_secs_f64),
        workdir: a.workdir.clone(),
        config_file: config,
        kiln: std::env::current_exe().context("cannot find the kiln executable")?,
    };
    let shutdown = std::sync::Arc::new(kiln_builder::Shutdown::default());
    {
        let shutdown = shutdown.clone();
        let _ = ctrlc::set_handler(move || match shutdown.request() {
            1 => eprintln!("finishing running tasks, then exiting (again to hand them back now)"),
            _ => eprintln!("interrupting running tasks and handing them back"),
        });
    }
    let summary = kiln_builder::run(cfg, shutdown).map_err(|e| {
        if e.to_string().contains("is not a host") {
            e.context("run the builder with the host token `kiln host add` printed")
        } else {
            e
        }
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if a.stats {
        let mut l = summary.claim_ms;
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "{}",
            serde_json::json!({"builder": a.name, "tasks": summary.tasks, "claims": l.len(),
                "claim_p50_ms": pct(0.5), "claim_p99_ms": pct(0.99), "claim_latencies_ms": l})
        );
    }
    Ok(ExitCode::SUCCESS)
}
