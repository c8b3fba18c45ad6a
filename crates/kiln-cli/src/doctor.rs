//! `kiln doctor`: the host tools kiln uses, found or missing, and `--fix`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use kiln_host::ToolStatus;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Install the Debian packages of missing tools with apt-get (as root).
    #[arg(long)]
    fix: bool,

    /// With --fix: do not ask before installing.
    #[arg(short = 'y', long)]
    yes: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn table(statuses: &[ToolStatus]) -> String {
    let rows: Vec<[String; 4]> = statuses
        .iter()
        .map(|s| {
            [
                s.tool.name.to_string(),
                if s.is_found() { "found".into() } else { "MISSING".into() },
                s.version
                    .clone()
                    .or_else(|| s.path.as_ref().map(|p| p.display().to_string()))
                    .unwrap_or_default(),
                s.tool.package.to_string(),
            ]
        })
        .collect();
    let head = ["TOOL", "STATUS", "VERSION", "PACKAGE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The sandbox's checks (docs/sandbox.md): user namespaces, seccomp, the
/// id range, and a confined run on the filesystems trees live on.
fn sandbox_checks() -> Vec<kiln_sandbox::Check> {
    let cache = std::env::var_os("KILN_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(kiln_store::default_root);
    let work = std::env::var_os("KILN_WORKDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(crate::DEFAULT_WORKDIR));
    match kiln_sandbox::Sandbox::current_exe() {
        Ok(sandbox) => kiln_sandbox::probe(&sandbox, &[&cache, &work]),
        Err(e) => vec![kiln_sandbox::Check {
            name: "sandbox".into(),
            ok: false,
            detail: e.to_string(),
        }],
    }
}

fn sandbox_table(checks: &[kiln_sandbox::Check]) -> String {
    let w = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).max(7);
    let mut out = format!("\n{:<w$}  {:<6}  DETAIL\n", "SANDBOX", "STATUS");
    for c in checks {
        let status = if c.ok { "ok" } else { "NO" };
        out.push_str(&format!("{:<w$}  {status:<6}  {}\n", c.name, c.detail));
    }
    out
}

fn report(statuses: &[ToolStatus], checks: &[kiln_sandbox::Check], json: bool) -> Result<()> {
    if json {
        let items: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({
                    "tool": s.tool.name,
                    "found": s.is_found(),
                    "path": s.path.as_ref().map(|p| p.display().to_string()),
                    "version": s.version,
                    "package": s.tool.package,
                    "purpose": s.tool.purpose,
                })
            })
            .collect();
        let doc = serde_json::json!({ "tools": items, "sandbox": checks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(statuses));
        print!("{}", sandbox_table(checks));
    }
    Ok(())
}

fn confirm(packages: &[&str]) -> Result<bool> {
    eprint!("install {} with apt-get? [y/N] ", packages.join(" "));
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

pub fn run(args: &DoctorArgs) -> Result<ExitCode> {
    let mut statuses = kiln_host::probe(None);
    let mut missing = kiln_host::missing_packages(&statuses);
    if args.fix && !missing.is_empty() {
        if !args.json {
            print!("{}", table(&statuses));
        }
        // Ask only when someone can answer (README.md).
        let ask = !args.yes && std::io::stdin().is_terminal();
        if ask && !confirm(&missing)? {
            eprintln!("nothing installed");
            return Ok(ExitCode::from(1));
        }
        eprintln!("installing: {}", missing.join(" "));
        kiln_host::install_packages(&missing).context("cannot install the missing host packages")?;
        statuses = kiln_host::probe(None);
        missing = kiln_host::missing_packages(&statuses);
        if !args.json {
            eprintln!();
        }
    }
    let checks = sandbox_checks();
    report(&statuses, &checks, args.json)?;
    let weak: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    if !weak.is_empty() {
        eprintln!(
            "the sandbox cannot confine scripts as documented here ({}); kiln build and kiln update refuse \
             to run scripts unless given --insecure-sandbox (see docs/sandbox.md)",
            weak.join(", ")
        );
    }
    if missing.is_empty() {
        if !args.json {
            eprintln!("all {} host tools are present", statuses.len());
        }
        Ok(if weak.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    } else {
        eprintln!(
            "missing packages: {}\nhint: run `kiln doctor --fix` as root, or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
        Ok(ExitCode::from(1))
    }
}
