//! `kiln login`: a password exchanged for a token kept in client.toml.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_hub_api::model::*;

use super::*;

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    hub: HubOpts,
    /// User name.
    #[arg(long, short = 'u')]
    user: String,
    /// Token lifetime in days (default: no expiry).
    #[arg(long)]
    expires_days: Option<i64>,
}

pub(super) fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .context("reading the password from stdin")?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!("no password on stdin");
    }
    Ok(s)
}

/// Writes `text` to `path` readable by its owner only, whatever was there
/// and whatever the umask: the directory is made (or tightened to) 0700,
/// the file written as a new 0600 file, synced and renamed over the old
/// one, so no reader ever sees a token in a file others can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .with_context(|| format!("{} has no directory", path.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))?;
    // tempfile creates its files with mode 0600.
    let mut f = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    f.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// `kiln login`: exchanges a password (read from stdin) for a token and
/// keeps hub and token in client.toml (mode 0600, in a 0700 directory).
pub fn login(a: &LoginArgs) -> Result<ExitCode> {
    let client = HubOpts {
        hub: a.hub.hub.clone(),
        token: None,
    }
    .client()?;
    eprintln!("password for {} (from stdin):", a.user);
    let password = read_password()?;
    let t = client.login(&LoginIn {
        user: a.user.clone(),
        password,
        token_name: Some("kiln login".into()),
        expires_days: a.expires_days,
    })?;
    let path = config_path().context("no HOME to keep the token in")?;
    let mut cfg = read_config()?;
    cfg.hub = a.hub.hub.clone().or(cfg.hub);
    cfg.token = Some(t.token);
    write_private(&path, &toml::to_string(&cfg)?)?;
    println!("logged in as {}; token stored in {}", a.user, path.display());
    Ok(ExitCode::SUCCESS)
}
