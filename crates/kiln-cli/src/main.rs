//! `kiln`: builds operating-system images from profile repositories and runs
//! the service that tracks them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use kiln_core::diag::{Diagnostic, sort_dedup};
use kiln_core::external::{builder_macros, parse_define};
use kiln_core::macros::MacroDef;
use kiln_core::snapshot::Snapshot;
use kiln_core::{Repo, ResolveOptions};

mod build;
mod cache;
mod commands;
mod doctor;
mod image;

use commands::hub;

// Resolution allocates many small strings and maps; mimalloc is measurably
// faster than glibc's allocator here (bench/check.sh, ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// kiln builds operating-system images from profile repositories
/// (images, features, subprofiles, tagged package lists) and tracks them.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// When to use colors on stderr.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, env = "KILN_COLOR")]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build an image: bootstrap, features, scripts in a sandbox, outputs, manifest.
    Build(build::BuildArgs),
    /// Print the fully resolved plan of an image, with the provenance of every value.
    Show(ShowArgs),
    /// Resolve every image of a profile repository and report every problem.
    Check(CheckArgs),
    /// List the host tools kiln uses, found or missing, and install the missing ones.
    Doctor(doctor::DoctorArgs),
    /// The stage cache: list entries, prune to a size, clear.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// The local catalog of source images: import, ls, show, rm.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Run an update script inside a source image and write the result as a named target image.
    Update(image::UpdateArgs),
    /// Run the hub: the database of builds, tags, targets and users, with its REST API.
    Serve(hub::ServeArgs),
    /// Log in to a hub; the token is kept in ~/.config/kiln/client.toml.
    Login(hub::LoginArgs),
    /// Users, permissions and API tokens on the hub.
    User {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::UserCommand,
    },
    /// Tags: create, edit, info, ls, rm, history, inherit, config, pkg.
    Tag {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::TagCommand,
    },
    /// Tag builds into a tag (koji tag-build).
    TagBuild(hub::TagBuildArgs),
    /// Remove builds from a tag (koji untag-build).
    UntagBuild(hub::TagBuildArgs),
    /// Builds in a tag (koji list-tagged).
    ListTagged(hub::ListTaggedArgs),
    /// Builds on the hub: ls, info, import, download.
    Builds {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::BuildsCommand,
    },
    /// Build targets with their macros: create, edit, show, apply, ls, rm, macros.
    Target {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::TargetCommand,
    },
    /// Builders registered on the hub: add, ls.
    Host {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::HostCommand,
    },
    /// Tasks on the hub: ls, info, cancel, watch.
    Task {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::TaskCommand,
    },
    /// Pipelines: builds and updates configured once, run by CI hooks,
    /// new source versions or by hand: create, edit, show, apply, ls, rm,
    /// history, run, runs, hook.
    Pipeline {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: Box<hub::PipelineCommand>,
    },
    /// Device channels: keygen, key, publish, ls, show, verify.
    Channel {
        #[command(flatten)]
        hub: hub::HubOpts,
        #[command(subcommand)]
        cmd: hub::ChannelCommand,
    },
    /// Run a builder: claim tasks from the hub and run them.
    Builder(hub::BuilderArgs),
    /// Submit a build (or `submit update`) to the hub's builders.
    Submit(Box<hub::SubmitArgs>),
}

/// Options shared by the commands that resolve profiles.
#[derive(Args, Debug)]
pub(crate) struct ResolveArgs {
    /// The profile repository.
    #[arg(
        short = 'C',
        long = "repo",
        value_name = "REPO",
        default_value = ".",
        env = "KILN_REPO"
    )]
    pub(crate) repo: PathBuf,

    /// Define a macro (highest precedence); repeatable.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
    defines: Vec<String>,

    /// Debian architecture to resolve for (default: the host's).
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,

    /// Builder config whose [macros] form macro layer 3 (default:
    /// /etc/kiln/builder.toml when it exists).
    #[arg(long, value_name = "FILE", env = "KILN_BUILDER_CONFIG")]
    builder_config: Option<PathBuf>,

    /// Macro layers 2 (the target's) and 4 (the build tag's) from the hub:
    /// the JSON `kiln target macros TARGET --json` prints. Builders pass it.
    #[arg(long, value_name = "FILE")]
    target_macros: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// The image, e.g. `ve/server`.
    image: String,

    #[command(flatten)]
    resolve: ResolveArgs,

    /// Output format: commented TOML for people, JSON for tools (docs/plan-json.md).
    #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
    format: ShowFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ShowFormat {
    Toml,
    Json,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    resolve: ResolveArgs,

    /// How to print diagnostics: with source excerpts, one line each, or JSON on stdout.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum MessageFormat {
    Human,
    Short,
    Json,
}

pub(crate) const DEFAULT_BUILDER_CONFIG: &str = "/etc/kiln/builder.toml";
/// Where builds and updates make their work trees unless told otherwise
/// (`--workdir`, `KILN_WORKDIR`).
pub(crate) const DEFAULT_WORKDIR: &str = "/var/tmp/kiln";

/// How diagnostics are written to stderr.
#[derive(Clone, Copy)]
pub(crate) struct Printer {
    color: bool,
    width: usize,
}

impl Printer {
    fn new(choice: ColorChoice) -> Self {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
            }
        };
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100);
        Printer { color, width }
    }

    pub(crate) fn print(&self, diags: &[Diagnostic], snapshot: &Snapshot, format: MessageFormat) {
        let mut err = std::io::stderr().lock();
        for d in diags {
            let text = match format {
                MessageFormat::Short => d.short(snapshot) + "\n",
                _ => d.render(snapshot, self.color, self.width) + "\n",
            };
            let _ = err.write_all(text.as_bytes());
        }
    }
}

/// A loaded repository and the options to resolve it with.
pub(crate) struct Session {
    pub(crate) repo: Repo,
    pub(crate) opts: ResolveOptions,
    /// Problems in inputs outside the repository (the builder config).
    outside: Vec<(Diagnostic, Snapshot)>,
}

impl ResolveArgs {
    pub(crate) fn load(&self) -> Result<Session> {
        let snapshot = kiln_repo::load(&self.repo)
            .with_context(|| format!("cannot load the profile repository `{}`", self.repo.display()))?;
        let repo = Repo::load(snapshot);
        let mut external: Vec<MacroDef> = Vec::new();
        let mut outside = Vec::new();
        for d in &self.defines {
            external.push(parse_define(d).map_err(anyhow::Error::msg)?);
        }
        let builder = match &self.builder_config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(DEFAULT_BUILDER_CONFIG)).filter(|p| p.is_file()),
        };
        if let Some(path) = builder {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the builder config `{}`", path.display()))?;
            let name = path.display().to_string();
            let (defs, diags) = builder_macros(&name, &text);
            external.extend(defs);
            if !diags.is_empty() {
                let mut snap = Snapshot::new();
                snap.add_file(&name, &text);
                outside.extend(diags.into_iter().map(|d| (d, snap.clone())));
            }
        }
        if let Some(path) = &self.target_macros {
            external.extend(hub_macro_layers(path)?);
        }
        let arch = self.arch.clone().unwrap_or_else(kiln_host::debian_arch);
        Ok(Session {
            repo,
            opts: ResolveOptions {
                arch,
                external_macros: external,
            },
            outside,
        })
    }
}

/// Layers 2 and 4 from a saved `GET /targets/T/macros` answer.
fn hub_macro_layers(path: &std::path::Path) -> Result<Vec<MacroDef>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the target macros `{}`", path.display()))?;
    let l: kiln_hub_api::model::MacroLayers = serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is not the JSON of `kiln target macros TARGET --json`",
            path.display()
        )
    })?;
    l.defs().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub(crate) fn report_outside(session: &Session, printer: Printer) -> Result<()> {
    for (d, snap) in &session.outside {
        printer.print(std::slice::from_ref(d), snap, MessageFormat::Human);
    }
    if session.outside.iter().any(|(d, _)| d.is_error()) {
        bail!("the builder config has errors");
    }
    Ok(())
}

fn show(args: &ShowArgs, printer: Printer) -> Result<ExitCode> {
    let session = args.resolve.load()?;
    report_outside(&session, printer)?;
    let res = kiln_core::resolve(&session.repo, &args.image, &session.opts);
    // Parse problems of files this image uses show up through resolution;
    // also report those of its own definition file.
    let mut diags = res.diagnostics;
    diags.extend(session.repo.diagnostics.iter().filter(|d| d.is_error()).cloned());
    sort_dedup(&mut diags);
    printer.print(&diags, &session.repo.snapshot, MessageFormat::Human);
    let Some(plan) = res.plan.filter(|_| !diags.iter().any(Diagnostic::is_error)) else {
        let n = diags.iter().filter(|d| d.is_error()).count();
        eprintln!(
            "error: cannot resolve `{}`: {n} error{}",
            args.image,
            if n == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::from(1));
    };
    let text = match args.format {
        ShowFormat::Toml => kiln_core::render::plan_toml(&plan),
        ShowFormat::Json => plan.to_json() + "\n",
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &CheckArgs, printer: Printer) -> Result<ExitCode> {
    let session = args.resolve.load()?;
    report_outside(&session, printer)?;
    let report = kiln_core::check::check(&session.repo, &session.opts);
    let snapshot = &session.repo.snapshot;
    if args.message_format == MessageFormat::Json {
        let out = serde_json::json!({
            "images": report.images,
            "features": report.features,
            "lists": report.lists,
            "errors": report.errors(),
            "warnings": report.warnings(),
            "diagnostics": report.diagnostics.iter().map(|d| d.to_json(snapshot)).collect::<Vec<_>>(),
        });
        write_stdout(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    } else {
        printer.print(&report.diagnostics, snapshot, args.message_format);
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        eprintln!(
            "checked {}, {}, {} in {}: {}, {}",
            plural(report.images, "image"),
            plural(report.features, "feature"),
            plural(report.lists, "list"),
            args.resolve.repo.display(),
            plural(report.errors(), "error"),
            plural(report.warnings(), "warning"),
        );
    }
    Ok(if report.errors() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes to stdout, treating a closed pipe (`kiln show … | head`) as success.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let printer = Printer::new(cli.color);
    match &cli.command {
        Command::Build(a) => build::run(a, printer),
        Command::Show(a) => show(a, printer),
        Command::Check(a) => check(a, printer),
        Command::Doctor(a) => doctor::run(a),
        Command::Cache(c) => cache::run(c),
        Command::Image(c) => image::run_image(c),
        Command::Update(a) => image::run_update(a),
        Command::Serve(a) => hub::serve(a),
        Command::Login(a) => hub::login(a),
        Command::User { hub: h, cmd } => hub::user(h, cmd),
        Command::Tag { hub: h, cmd } => hub::tag(h, cmd),
        Command::TagBuild(a) => hub::tag_build(a, false),
        Command::UntagBuild(a) => hub::tag_build(a, true),
        Command::ListTagged(a) => hub::list_tagged(a),
        Command::Builds { hub: h, cmd } => hub::builds(h, cmd),
        Command::Target { hub: h, cmd } => hub::target(h, cmd),
        Command::Host { hub: h, cmd } => hub::host(h, cmd),
        Command::Task { hub: h, cmd } => hub::task(h, cmd),
        Command::Pipeline { hub: h, cmd } => hub::pipeline(h, cmd),
        Command::Channel { hub: h, cmd } => hub::channel(h, cmd),
        Command::Builder(a) => hub::builder(a),
        Command::Submit(a) => hub::submit(a),
    }
}

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its helper: that must be
    // decided before anything else runs.
    kiln_sandbox::maybe_run_helper();
    kiln_builder::die_with_parent();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
