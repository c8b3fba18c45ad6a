//! `kiln builds`: list, inspect, import and download builds.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::*;

#[derive(Subcommand, Debug)]
pub enum BuildsCommand {
    /// List builds.
    Ls {
        /// Only builds in this state (BUILDING, COMPLETE, FAILED, CANCELED, DELETED).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// A build with its artifacts.
    Info {
        nvr: String,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Publish the output directory of a local `kiln build` or `kiln update` as a COMPLETE build.
    Import {
        outdir: PathBuf,
        /// Name-version-release (default: the manifest's; for an update, the target's name parsed as N-V-R).
        #[arg(long)]
        nvr: Option<String>,
    },
    /// Download a build's artifacts, verified against their sha256.
    Download {
        nvr: String,
        /// Directory to write to.
        #[arg(short = 'o', long, default_value = ".")]
        outdir: PathBuf,
    },
}

pub fn builds(hub: &HubOpts, cmd: &BuildsCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        BuildsCommand::Ls { state, json } => {
            let all = c.builds(state.as_deref())?;
            if json.json {
                print_json(&all)?;
            } else {
                table(
                    &["BUILD", "STATE", "OWNER"],
                    all.into_iter().map(|b| vec![b.nvr, b.state, b.owner]).collect(),
                );
            }
        }
        BuildsCommand::Info { nvr, json } => {
            let b = c.build(nvr)?;
            if json.json {
                return print_json(&b).map(|()| ExitCode::SUCCESS);
            }
            println!("BUILD: {} [{}]", b.nvr, b.id);
            println!("State: {}", b.state);
            println!("Built by: {}", b.owner);
            for a in &b.artifacts {
                println!(
                    "  {}  {} bytes  sha256 {}{}",
                    a.file,
                    a.size,
                    a.sha256,
                    if a.stored { "" } else { "  (not uploaded)" }
                );
            }
        }
        BuildsCommand::Import { outdir, nvr } => {
            let (nb, files) = kiln_builder::outdir::read(outdir, nvr.as_deref())?;
            let b = c.create_build(&nb)?;
            let upload = || -> Result<()> {
                for (a, path) in nb.artifacts.iter().zip(&files) {
                    c.upload_artifact(&b.nvr, &a.file, path, &a.sha256)?;
                    eprintln!("uploaded {} ({} bytes)", a.file, a.size);
                }
                Ok(())
            };
            if let Err(e) = upload() {
                // The import's error is the one to report.
                let _ = c.set_build_state(&b.nvr, "FAILED");
                return Err(e.context(format!("importing {} failed; the build is marked FAILED", b.nvr)));
            }
            let b = c.set_build_state(&b.nvr, "COMPLETE")?;
            println!("imported {} ({} files, {})", b.nvr, b.artifacts.len(), b.state);
        }
        BuildsCommand::Download { nvr, outdir } => {
            let b = c.build(nvr)?;
            std::fs::create_dir_all(outdir).with_context(|| format!("creating {}", outdir.display()))?;
            for a in b.artifacts.iter().filter(|a| a.stored) {
                let sha = c.download_artifact(nvr, &a.file, &outdir.join(&a.file))?;
                if sha != a.sha256 {
                    bail!("{} does not match the build's record", a.file);
                }
                println!("{}  {}", a.sha256, a.file);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
