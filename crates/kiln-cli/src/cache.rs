//! `kiln cache`: the stage cache's entries, pruning and clearing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use kiln_store::Cache;

/// Where the stage cache is.
#[derive(Args, Debug)]
pub struct CacheDirArg {
    /// The stage cache (default: /var/cache/kiln as root, else
    /// $XDG_CACHE_HOME/kiln).
    #[arg(long, value_name = "DIR", env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

impl CacheDirArg {
    pub fn open(&self) -> Result<Cache> {
        let root = self.cache_dir.clone().unwrap_or_else(kiln_store::default_root);
        Cache::open(&root).with_context(|| format!("cannot open the stage cache in {}", root.display()))
    }
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the entries: key, stage, image, size, last use.
    Ls {
        #[command(flatten)]
        dir: CacheDirArg,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used entries until the cache fits in SIZE
    /// (e.g. 20G); entries in use by a build are kept.
    Prune {
        #[command(flatten)]
        dir: CacheDirArg,
        #[arg(long, value_name = "SIZE")]
        max_size: String,
    },
    /// Remove every entry not in use.
    Clear {
        #[command(flatten)]
        dir: CacheDirArg,
    },
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn ago(t: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = now.saturating_sub(t);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

pub fn run(cmd: &CacheCommand) -> Result<ExitCode> {
    match cmd {
        CacheCommand::Ls { dir, json } => {
            let cache = dir.open()?;
            let list = cache.list()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<16}  {:<14}  {:<28}  {:<20}  {:>10}  {:<10}",
                "KEY", "STAGE", "STEP", "IMAGE", "SIZE", "LAST USE"
            );
            let mut total = 0;
            for l in &list {
                total += l.meta.size;
                println!(
                    "{:<16}  {:<14}  {:<28}  {:<20}  {:>10}  {:<10}{}",
                    &l.meta.key[..16.min(l.meta.key.len())],
                    l.meta.stage,
                    l.meta.step.as_deref().unwrap_or("-"),
                    l.meta.image,
                    human(l.meta.size),
                    ago(l.last_used),
                    if l.in_use { "  (in use)" } else { "" }
                );
            }
            println!("{} entries, {} in {}", list.len(), human(total), cache.dir().display());
        }
        CacheCommand::Prune { dir, max_size } => {
            let max = kiln_store::parse_size(max_size)
                .with_context(|| format!("--max-size {max_size}: expected a size such as 20G, 512M or bytes"))?;
            let r = dir.open()?.prune(max)?;
            println!(
                "removed {} entries ({}); {} left{}",
                r.removed.len(),
                human(r.freed),
                human(r.remaining),
                if r.kept_in_use > 0 {
                    format!("; {} in use kept", r.kept_in_use)
                } else {
                    String::new()
                }
            );
        }
        CacheCommand::Clear { dir } => {
            let r = dir.open()?.prune(0)?;
            println!(
                "removed {} entries ({}){}",
                r.removed.len(),
                human(r.freed),
                if r.kept_in_use > 0 {
                    format!("; {} in use kept", r.kept_in_use)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
