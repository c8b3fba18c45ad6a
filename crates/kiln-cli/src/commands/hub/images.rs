//! Source images on the hub (`kiln image … --hub`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::*;

pub fn image_import(hub: &HubOpts, name: &str, version: &str, file: &Path) -> Result<ExitCode> {
    let c = hub.client()?;
    if file.is_dir() {
        bail!(
            "{}: upload an image file; import a directory into the local catalog first",
            file.display()
        );
    }
    let sha = kiln_engine::fsutil::sha256_file(file).with_context(|| format!("reading {}", file.display()))?;
    let i = c.upload_image(name, version, file, &sha)?;
    println!(
        "uploaded {name}@{version} ({}, {} bytes, sha256 {})",
        i.format, i.size, i.sha256
    );
    Ok(ExitCode::SUCCESS)
}

pub fn image_ls(hub: &HubOpts, name: Option<&str>, json: bool) -> Result<ExitCode> {
    let l = hub.client()?.images(name)?;
    if json {
        return print_json(&l).map(|()| ExitCode::SUCCESS);
    }
    table(
        &["NAME", "VERSION", "FORMAT", "SIZE", "SHA256"],
        l.into_iter()
            .map(|i| vec![i.name, i.version, i.format, i.size.to_string(), i.sha256])
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn image_rm(hub: &HubOpts, name: &str, version: &str) -> Result<ExitCode> {
    hub.client()?.remove_image(name, version)?;
    println!("removed {name}@{version} from the hub");
    Ok(ExitCode::SUCCESS)
}

pub fn image_download(hub: &HubOpts, name: &str, version: &str, dest: &Path) -> Result<String> {
    Ok(hub.client()?.download_image(name, version, dest)?)
}
