//! `kiln image` (the local catalog of source images) and `kiln update` (the
//! image-update method, docs/update.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use kiln_store::catalog::Catalog;

use crate::cache::CacheDirArg;

/// `--hub [URL]`: work on the hub's catalog instead of the local one
/// (without a URL: KILN_HUB or client.toml).
#[derive(Args, Debug, Clone, Default)]
pub struct ImageHubArg {
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "URL")]
    hub: Option<String>,
    /// API token for the hub (default: KILN_TOKEN, else client.toml).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
}

impl ImageHubArg {
    fn opts(&self) -> Option<crate::hub::HubOpts> {
        let hub = self.hub.as_ref()?;
        let hub = if hub.is_empty() {
            std::env::var("KILN_HUB").ok()
        } else {
            Some(hub.clone())
        };
        Some(crate::hub::HubOpts {
            hub,
            token: self.token.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Register a source image: a squashfs, erofs, ISO, tar[.zst|.xz|.gz] file or a directory.
    Import {
        name: String,
        #[arg(value_name = "VERSION")]
        image_version: String,
        file: PathBuf,
        /// Replace NAME@VERSION when it is already registered.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: CacheDirArg,
        #[command(flatten)]
        hub: ImageHubArg,
    },
    /// List source images (of NAME), versions in order.
    Ls {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: CacheDirArg,
        #[command(flatten)]
        hub: ImageHubArg,
    },
    /// Show one source image's record.
    Show {
        /// NAME@VERSION
        reference: String,
        #[command(flatten)]
        dir: CacheDirArg,
    },
    /// Remove NAME@VERSION (its content goes when no other version uses it).
    Rm {
        /// NAME@VERSION
        reference: String,
        #[command(flatten)]
        dir: CacheDirArg,
        #[command(flatten)]
        hub: ImageHubArg,
    },
    /// Download NAME@VERSION from the hub (verified) into the local catalog.
    Pull {
        /// NAME@VERSION
        reference: String,
        #[command(flatten)]
        dir: CacheDirArg,
        #[command(flatten)]
        hub: ImageHubArg,
    },
}

fn catalog(dir: &CacheDirArg) -> Result<Catalog> {
    Ok(Catalog::open(&dir.open()?)?)
}

pub fn run_image(cmd: &ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Import {
            name,
            image_version: version,
            file,
            force,
            dir,
            hub,
        } => {
            if let Some(h) = hub.opts() {
                // The hub checks it too; checking here first spares the upload.
                kiln_store::image_check::check(file)
                    .map_err(|e| anyhow::anyhow!("{} is refused: {e}; nothing was uploaded", file.display()))?;
                return crate::hub::image_import(&h, name, version, file);
            }
            let (img, new) = catalog(dir)?.import(name, version, file, *force)?;
            println!(
                "{} {} ({}, {} bytes, sha256 {}){}",
                if new { "imported" } else { "registered" },
                img.reference(),
                img.format.ext(),
                img.size,
                img.sha256,
                if new {
                    ""
                } else {
                    "; the same content was already stored"
                }
            );
        }
        ImageCommand::Ls { name, json, dir, hub } => {
            if let Some(h) = hub.opts() {
                return crate::hub::image_ls(&h, name.as_deref(), *json);
            }
            let list = catalog(dir)?.list(name.as_deref())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24}  {:<14}  {:<9}  {:>12}  SHA256",
                    "NAME", "VERSION", "FORMAT", "SIZE"
                );
                for i in &list {
                    println!(
                        "{:<24}  {:<14}  {:<9}  {:>12}  {}",
                        i.name,
                        i.version,
                        i.format.ext(),
                        i.size,
                        &i.sha256[..16]
                    );
                }
            }
        }
        ImageCommand::Show { reference, dir } => {
            let img = catalog(dir)?.get(reference)?;
            println!("{}", serde_json::to_string_pretty(&img)?);
        }
        ImageCommand::Rm { reference, dir, hub } => {
            if let Some(h) = hub.opts() {
                let (n, v) = kiln_store::catalog::parse_reference(reference)?;
                return crate::hub::image_rm(&h, n, v);
            }
            let img = catalog(dir)?.remove(reference)?;
            println!("removed {}", img.reference());
        }
        ImageCommand::Pull { reference, dir, hub } => {
            let (n, v) = kiln_store::catalog::parse_reference(reference)?;
            let h = hub.opts().unwrap_or(crate::hub::HubOpts {
                hub: std::env::var("KILN_HUB").ok(),
                token: hub.token.clone(),
            });
            let tmp = tempfile::tempdir().context("cannot make a temporary directory")?;
            let file = tmp.path().join("image");
            let sha = crate::hub::image_download(&h, n, v, &file)?;
            let (img, _) = catalog(dir)?.import(n, v, &file, true)?;
            println!("pulled {} ({}, sha256 {sha})", img.reference(), img.format.ext());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The source image, NAME@VERSION from the catalog (`kiln image ls`).
    #[arg(long, value_name = "NAME@VERSION")]
    from: String,
    /// The update script: a local path or git+URL@REF:PATH.
    #[arg(long, value_name = "SCRIPT")]
    script: String,
    /// The target's name: the file is NAME.<format>.
    #[arg(long, value_name = "TARGET")]
    name: String,
    /// squashfs, erofs, tar, tar.zst, tar.xz, tar.gz or (from an ISO) iso (default: the source's).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// A macro for the script, as KILN_MACRO_<NAME>; repeatable.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
    defines: Vec<String>,
    /// Give the script the host's network.
    #[arg(long)]
    network: bool,
    #[command(flatten)]
    sandbox: crate::build::SandboxArg,
    #[arg(short = 'o', long, value_name = "OUTDIR", default_value = "out")]
    outdir: PathBuf,
    #[arg(long, value_name = "DIR", env = "KILN_WORKDIR", default_value = crate::DEFAULT_WORKDIR)]
    workdir: PathBuf,
    /// Replace an existing target file.
    #[arg(long)]
    force: bool,
    /// The script's time limit in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    timeout: u64,
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<u32>,
    #[command(flatten)]
    dir: CacheDirArg,
    #[arg(short, long)]
    quiet: bool,
}

pub fn run_update(args: &UpdateArgs) -> Result<ExitCode> {
    kiln_store::overlay::enter_private_mount_namespace()
        .context("cannot make a private mount namespace (kiln update runs as root)")?;
    let cache = args.dir.open()?;
    let cat = Catalog::open(&cache)?;
    let source = cat.get(&args.from)?;
    let blob = cat.blob(&source);
    let mut macros = BTreeMap::new();
    for d in &args.defines {
        let (k, v) = d
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .with_context(|| format!("--define {d}: expected NAME=VALUE"))?;
        macros.insert(k.to_string(), v.to_string());
    }
    let fetch_dir = tempfile::Builder::new()
        .prefix("kiln-script-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let (script_path, commit) = if args.script.starts_with("git+") {
        let r = kiln_core::resolve::parse_git_ref(&args.script)
            .map_err(|e| anyhow::anyhow!("--script {}: {e}", args.script))?;
        let f = kiln_engine::gitfetch::fetch(&r, &cache.dir().join("git"), fetch_dir.path())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        (f.path, Some(f.commit))
    } else {
        let p = PathBuf::from(&args.script);
        if !p.is_file() {
            bail!("--script {}: no such file", args.script);
        }
        (p.canonicalize()?, None)
    };
    let sha256 = kiln_engine::fsutil::sha256_file(&script_path).context("cannot read the script")?;
    let jobs = args.jobs.unwrap_or_else(kiln_engine::default_jobs);
    ctrlc::set_handler(|| kiln_engine::run::INTERRUPTED.store(true, Ordering::SeqCst))
        .context("cannot install the interrupt handler")?;
    let reporter: Arc<dyn kiln_engine::log::Reporter> = Arc::new(crate::build::Plain::new(args.quiet, false));
    let req = kiln_engine::update::UpdateRequest {
        source,
        blob,
        script_path,
        script: kiln_engine::update::ScriptOrigin {
            origin: args.script.clone(),
            commit,
            sha256,
        },
        name: args.name.clone(),
        format: args.format.clone(),
        macros,
        network: args.network,
        outdir: args.outdir.clone(),
        workdir: args.workdir.clone(),
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        jobs,
        force: args.force,
        timeout: Duration::from_secs(args.timeout),
        reporter,
    };
    let sandbox = crate::build::sandbox(args.sandbox)?;
    match kiln_engine::update::update(&req, &sandbox) {
        Ok(u) => {
            println!("{}  {}", u.manifest.target.sha256, u.target.display());
            if !args.quiet {
                eprintln!(
                    "updated {} with {} into {}",
                    u.manifest.source.reference(),
                    args.script,
                    u.target.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(crate::build::report_failure(&format!("update of `{}`", args.from), &e)),
    }
}
