//! `kiln channel`: device channels (docs/channels.md) — the hub's signing
//! key, publishing, and a device's check of an index.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kiln_hub_api::channel;
use kiln_hub_api::minisign::PublicKey;

use super::*;

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Make the hub's signing key (admins); prints the public key for devices.
    Keygen,
    /// Print the hub's public key (minisign's .pub format).
    Key,
    /// Publish a tag's latest builds as a signed index (when they changed).
    Publish {
        tag: String,
        /// Publish a new sequence number even if nothing changed.
        #[arg(long)]
        force: bool,
    },
    /// List published channels.
    Ls(JsonOpt),
    /// A channel's last publication.
    Show {
        tag: String,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Verify a channel index as a device does: signature, then sequence.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The index's URL (…/channels/TAG/index.json); its signature is URL.minisig.
    url: String,
    /// The hub's public key: a .pub file, or its base64 line.
    #[arg(long, value_name = "KEY")]
    pubkey: String,
    /// A file keeping the last sequence accepted: an older index is refused
    /// as a rollback, a newer one is remembered.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Refuse an index older than this sequence.
    #[arg(long, value_name = "N")]
    min_sequence: Option<i64>,
    /// The channel the device follows (default: the one the URL or the
    /// state file names); an index of another channel is refused.
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// Download every image the index lists into DIR, each checked against its sha256.
    #[arg(long, value_name = "DIR")]
    download: Option<PathBuf>,
    /// Print the verified index.
    #[command(flatten)]
    json: JsonOpt,
    /// A token, for a hub that requires one for reading.
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub fn channel(hub: &HubOpts, cmd: &ChannelCommand) -> Result<ExitCode> {
    if let ChannelCommand::Verify(a) = cmd {
        return verify(a);
    }
    let c = hub.client()?;
    match cmd {
        ChannelCommand::Keygen => {
            let k = c.channel_keygen()?;
            print!("{}", k.public_key);
            eprintln!(
                "new channel signing key {}: give devices the public key above; indexes published from now on are \
                 signed with it",
                k.key_id
            );
        }
        ChannelCommand::Key => print!("{}", c.channel_key()?.public_key),
        ChannelCommand::Publish { tag, force } => {
            let i = c.publish_channel(tag, *force)?;
            println!(
                "channel {} sequence {}: {} images, signed by key {} ({})",
                i.channel, i.sequence, i.images, i.key_id, i.path
            );
        }
        ChannelCommand::Ls(j) => {
            let l = c.channels()?;
            if j.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["CHANNEL", "SEQUENCE", "IMAGES", "EVENT", "AUTO", "KEY"],
                l.into_iter()
                    .map(|i| {
                        vec![
                            i.channel,
                            i.sequence.to_string(),
                            i.images.to_string(),
                            i.event.to_string(),
                            if i.auto { "yes" } else { "no" }.into(),
                            i.key_id,
                        ]
                    })
                    .collect(),
            );
        }
        ChannelCommand::Show { tag, json } => {
            let i = c.channel(tag)?;
            if json.json {
                return print_json(&i).map(|()| ExitCode::SUCCESS);
            }
            println!("Channel: {}", i.channel);
            println!("Sequence: {} (event {}, time {})", i.sequence, i.event, i.timestamp);
            println!("Images: {}", i.images);
            println!("Key: {}", i.key_id);
            println!("Published automatically: {}", if i.auto { "yes" } else { "no" });
            println!("Index: {}", i.path);
        }
        ChannelCommand::Verify(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn read_key(k: &str) -> Result<PublicKey> {
    let text = if Path::new(k).is_file() {
        std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
    } else {
        k.to_string()
    };
    PublicKey::parse(&text).with_context(|| format!("--pubkey {k}: not a minisign public key or .pub file"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    channel: String,
    sequence: i64,
}

fn read_state(p: &Path) -> Result<Option<State>> {
    match std::fs::read_to_string(p) {
        Ok(t) => {
            Ok(Some(serde_json::from_str(&t).with_context(|| {
                format!("{}: not a kiln channel state", p.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_state(p: &Path, s: &State) -> Result<()> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    serde_json::to_writer(&mut tmp, s)?;
    tmp.as_file().sync_all()?;
    tmp.persist(p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

fn verify(a: &VerifyArgs) -> Result<ExitCode> {
    let key = read_key(&a.pubkey)?;
    let url = url::Url::parse(&a.url).with_context(|| format!("bad URL `{}`", a.url))?;
    let state = a.state.as_deref().map(read_state).transpose()?.flatten();
    let accepted = state.as_ref().map(|s| s.sequence).max(a.min_sequence);
    let expected = a
        .channel
        .clone()
        .or_else(|| state.as_ref().map(|s| s.channel.clone()))
        .or_else(|| channel::channel_of(&url))
        .context("which channel is this? pass --channel NAME (the URL is not …/channels/NAME/index.json)")?;
    if let Some(s) = &state
        && s.channel != expected
    {
        bail!(
            "the state file {} keeps channel {}, not {expected}",
            a.state
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            s.channel
        );
    }
    let (body, sig) = channel::fetch(&url, a.token.as_deref())?;
    let ok = match channel::check_index(&body, &sig, &key, &expected, accepted) {
        Ok(ok) => ok,
        Err(e) => bail!("{url}: {e}"),
    };
    let index = &ok.index;
    if let Some(dir) = &a.download {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for image in index.images.values() {
            let main = image
                .files
                .iter()
                .find(|f| f.file == image.file)
                .context("the index lists no image file")?;
            let path = channel::download(&url, main, dir, a.token.as_deref())?;
            eprintln!("downloaded {} (sha256 {})", path.display(), main.sha256);
        }
    }
    if let Some(p) = &a.state {
        write_state(
            p,
            &State {
                channel: index.channel.clone(),
                sequence: index.sequence,
            },
        )?;
    }
    if a.json.json {
        return print_json(index).map(|()| ExitCode::SUCCESS);
    }
    eprintln!("verified: {}", ok.trusted_comment);
    for (name, i) in &index.images {
        println!("{name}  {}  {}  {} bytes  sha256 {}", i.nvr, i.file, i.size, i.sha256);
    }
    Ok(ExitCode::SUCCESS)
}
