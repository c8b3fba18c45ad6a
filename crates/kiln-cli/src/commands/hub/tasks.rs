//! `kiln task`: list, inspect, submit, cancel, watch and download tasks.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// List tasks.
    Ls {
        /// Only tasks in this state (FREE, OPEN, CLOSED, FAILED, CANCELED).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// A task.
    Info {
        id: i64,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Cancel a task (and its children); its builder stops it.
    Cancel { id: i64 },
    /// Submit a task directly (low level; `noop` tasks exercise the farm).
    Submit {
        method: String,
        /// The request, JSON.
        #[arg(long, default_value = "{}")]
        request: String,
        #[command(flatten)]
        queue: super::submit::QueueOpts,
        /// How many identical tasks.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Follow a task's log until it ends; exits 0 when it CLOSED, 1 otherwise.
    Watch { id: i64 },
    /// Download the files a closed task kept (a scratch build's), verified.
    Download {
        id: i64,
        /// Directory to write to.
        #[arg(short = 'o', long, default_value = ".")]
        outdir: PathBuf,
    },
}

/// Follows a task's log until it ends: on a terminal with a line showing
/// the task's state and latest step under the log. Exits 0 when the task
/// CLOSED, 1 otherwise.
pub(super) fn watch(c: &Client, id: i64) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut after = 0i64;
    let mut last_line = String::new();
    loop {
        let log = c.task_log(id, after)?;
        let text = log.text.as_str();
        for line in text.lines() {
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
            if !line.trim().is_empty() {
                last_line = line.trim().chars().take(100).collect();
            }
        }
        after = log.next;
        let state = log.state.clone();
        if let Some(b) = &bar {
            b.set_message(format!("task {id}: {state} · {last_line}"));
        }
        if matches!(state.as_str(), "CLOSED" | "FAILED" | "CANCELED") && text.is_empty() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let t = c.task(id)?;
            match (&t.result, state.as_str()) {
                (Some(r), "CLOSED") if r["nvr"].is_string() => {
                    let into = r["tag"]
                        .as_str()
                        .map_or(String::from(" (scratch)"), |t| format!(", tagged into {t}"));
                    eprintln!(
                        "task {id}: CLOSED: built {}{into}",
                        r["nvr"].as_str().unwrap_or_default()
                    );
                }
                (Some(r), "FAILED") if r["error"].is_string() => {
                    let e = r["error"].as_str().unwrap_or_default();
                    eprintln!("task {id}: FAILED: {}", e.lines().next().unwrap_or_default());
                }
                _ => eprintln!("task {id}: {state}"),
            }
            return Ok(if state == "CLOSED" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        if text.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

pub fn task(hub: &HubOpts, cmd: &TaskCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        TaskCommand::Ls { state, json } => {
            let all = c.tasks(state.as_deref())?;
            if json.json {
                return print_json(&all).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["ID", "METHOD", "STATE", "PRIORITY", "CHANNEL", "ARCH", "HOST", "OWNER"],
                all.into_iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.method().to_string(),
                            t.state,
                            t.priority.to_string(),
                            t.channel,
                            t.arch,
                            t.host.unwrap_or_else(|| "-".into()),
                            t.owner,
                        ]
                    })
                    .collect(),
            );
        }
        TaskCommand::Info { id, json } => {
            let t = c.task(*id)?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Task: {} ({})", t.id, t.method());
            println!("State: {}", t.state);
            println!("Owner: {}", t.owner);
            println!("Host: {}", t.host.as_deref().unwrap_or("-"));
            println!("Attempts: {}/{}", t.attempts, t.max_attempts);
            println!("Request: {}", t.request.to_value());
            if let Some(r) = &t.result {
                println!("Result: {r}");
            }
        }
        TaskCommand::Submit {
            method,
            request,
            queue,
            count,
        } => {
            let request: Value = serde_json::from_str(request).context("--request: not JSON")?;
            let request = TaskRequest::from_parts(method, &request).map_err(anyhow::Error::msg)?;
            let nt = queue.task(request);
            for _ in 0..*count {
                let t = c.submit_task(&nt)?;
                println!("{}", t.id);
            }
        }
        TaskCommand::Cancel { id } => {
            let t = c.cancel_task(*id)?;
            println!("task {} is {}", t.id, t.state);
        }
        TaskCommand::Watch { id } => return watch(&c, *id),
        TaskCommand::Download { id, outdir } => {
            let t = c.task(*id)?;
            let files: Vec<String> = t
                .result
                .as_ref()
                .and_then(|r| r["files"].as_array())
                .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if t.state != "CLOSED" || files.is_empty() {
                bail!("task {id} is {} and kept no files", t.state);
            }
            std::fs::create_dir_all(outdir).with_context(|| format!("cannot create {}", outdir.display()))?;
            for f in files {
                let dest = outdir.join(&f);
                let sha = c.download_task_file(*id, &f, &dest)?;
                println!("{sha}  {}", dest.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
