//! The hub's commands: `kiln serve`, and the client commands (docs/hub.md)
//! that talk to a hub over its REST API. Option names follow koji's where a
//! command mirrors one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kiln_hub::client::{Client, Method};
use kiln_hub::model::*;
use serde_json::{Value, json};

/// Where the hub is and who we are: `--hub`/`KILN_HUB`, `--token`/`KILN_TOKEN`,
/// else `~/.config/kiln/client.toml`.
#[derive(Args, Debug, Clone, Default)]
pub struct HubOpts {
    /// The hub's URL (default: KILN_HUB, else `hub` in ~/.config/kiln/client.toml).
    #[arg(long, global = true, env = "KILN_HUB", value_name = "URL")]
    pub hub: Option<String>,
    /// API token (default: KILN_TOKEN, else `token` in client.toml).
    #[arg(
        long,
        global = true,
        env = "KILN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ClientConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kiln/client.toml"))
}

fn read_config() -> Result<ClientConfig> {
    let Some(p) = config_path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&p) {
        Ok(s) => toml::from_str(&s).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

impl HubOpts {
    /// The hub's URL and the token, from the options, the environment or client.toml.
    pub fn resolved(&self) -> Result<(String, Option<String>)> {
        let cfg = read_config()?;
        let hub = self
            .hub
            .clone()
            .or(cfg.hub)
            .context("no hub given: pass --hub URL, set KILN_HUB, or run `kiln login --hub URL`")?;
        Ok((hub, self.token.clone().or(cfg.token)))
    }

    pub fn client(&self) -> Result<Client> {
        let (hub, token) = self.resolved()?;
        Ok(Client::new(&hub, token)?)
    }
}

/// A listing command's `--json`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct JsonOpt {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// Every item of a paginated listing, page by page.
fn every_page<T: serde::de::DeserializeOwned>(
    c: &Client,
    segments: &[&str],
    query: &[(&str, String)],
) -> Result<Vec<T>> {
    let mut all = Vec::new();
    loop {
        let mut q = query.to_vec();
        q.extend([("offset", all.len().to_string()), ("limit", "1000".to_string())]);
        let p: Page<T> = c.get(segments, &q)?;
        let n = p.items.len();
        all.extend(p.items);
        if n == 0 || all.len() as i64 >= p.total {
            return Ok(all);
        }
    }
}

fn ev(event: Option<i64>) -> Vec<(&'static str, String)> {
    event.map(|e| ("event", e.to_string())).into_iter().collect()
}

fn define(d: &str) -> Result<(String, String)> {
    let (k, v) = d
        .split_once('=')
        .filter(|(k, _)| kiln_core::macros::is_macro_name(k))
        .with_context(|| format!("--define {d}: expected NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn extra(x: &str) -> Result<(String, Value)> {
    let (k, v) = x
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .with_context(|| format!("-x {x}: expected KEY=VALUE"))?;
    // koji parses extra values as Python literals; kiln takes JSON, else a string.
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

// ---- kiln serve ------------------------------------------------------------

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Database: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "KILN_DB",
        default_value = "sqlite://./kiln-data/hub.db",
        value_name = "URL"
    )]
    db: String,
    /// Blob store for artifacts and source images: file://PATH or
    /// s3://BUCKET[/PREFIX]?endpoint=URL (credentials from AWS_* variables).
    #[arg(
        long,
        env = "KILN_STORE",
        default_value = "file://./kiln-data/store",
        value_name = "URL"
    )]
    store: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8700", value_name = "ADDR")]
    listen: String,
    /// Require a token for reading too.
    #[arg(long)]
    no_anonymous_read: bool,
    /// Seconds a claimed task stays a builder's without a heartbeat; then
    /// it is retried elsewhere. Builders beat three times per lease.
    #[arg(long, value_name = "SECONDS", default_value_t = kiln_hub::db::LEASE_SECONDS)]
    lease: i64,
}

pub fn serve(a: &ServeArgs) -> Result<ExitCode> {
    let opts = kiln_hub::ServeOptions {
        db: a.db.clone(),
        store: a.store.clone(),
        listen: a.listen.clone(),
        anonymous_read: !a.no_anonymous_read,
        lease_seconds: a.lease,
    };
    let db_shown = if a.db.starts_with("postgres") {
        "postgres://…"
    } else {
        a.db.as_str()
    };
    kiln_hub::serve_blocking(&opts, |addr| {
        eprintln!(
            "kiln hub listening on http://{addr} (database {db_shown}, store {})",
            opts.store
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

// ---- login and users -------------------------------------------------------

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

fn read_password() -> Result<String> {
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

/// `kiln login`: exchanges a password (read from stdin) for a token and
/// keeps hub and token in client.toml (mode 0600).
pub fn login(a: &LoginArgs) -> Result<ExitCode> {
    let client = HubOpts {
        hub: a.hub.hub.clone(),
        token: None,
    }
    .client()?;
    eprintln!("password for {} (from stdin):", a.user);
    let password = read_password()?;
    let t: NewToken = client.call(
        Method::Post,
        &["login"],
        &[],
        Some(
            &json!({"user": a.user, "password": password, "token_name": "kiln login", "expires_days": a.expires_days}),
        ),
    )?;
    let path = config_path().context("no HOME to keep the token in")?;
    let mut cfg = read_config()?;
    cfg.hub = a.hub.hub.clone().or(cfg.hub);
    cfg.token = Some(t.token);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let text = toml::to_string(&cfg)?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())?;
    }
    println!("logged in as {}; token stored in {}", a.user, path.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. With --db, directly in the database (the bootstrap, before any admin exists); prints a new token once.
    Create {
        name: String,
        /// Give the user the admin permission.
        #[arg(long)]
        admin: bool,
        /// Give a permission; repeatable.
        #[arg(long = "perm", value_name = "PERM")]
        perms: Vec<String>,
        /// Read a password for `kiln login` from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Work on this database directly instead of through a hub.
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// Grant a permission.
    Grant { name: String, perm: String },
    /// Revoke a permission.
    Revoke { name: String, perm: String },
    /// List users.
    Ls(JsonOpt),
    /// Create an API token for a user (yourself unless admin), shown once; or list or revoke tokens.
    Token {
        name: String,
        /// A label for the token.
        #[arg(long = "name", value_name = "LABEL")]
        label: Option<String>,
        /// Lifetime in days.
        #[arg(long)]
        expires_days: Option<i64>,
        /// List the user's tokens instead.
        #[arg(long, conflicts_with_all = ["revoke", "label", "expires_days"])]
        list: bool,
        /// Revoke the token with this id instead.
        #[arg(long, value_name = "ID")]
        revoke: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

pub fn user(hub: &HubOpts, cmd: &UserCommand) -> Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            name,
            admin,
            perms,
            password_stdin,
            db,
        } => {
            let mut perms = perms.clone();
            if *admin {
                perms.push("admin".into());
            }
            let password = if *password_stdin { Some(read_password()?) } else { None };
            if let Some(db) = db {
                let token = kiln_hub::bootstrap_user_blocking(db, name, password.as_deref(), &perms)?;
                eprintln!("created user {name}; its API token (shown once):");
                println!("{token}");
            } else {
                let c = hub.client()?;
                let _: Value = c.call(
                    Method::Post,
                    &["users"],
                    &[],
                    Some(&json!({"name": name, "password": password, "perms": perms})),
                )?;
                println!("created user {name}");
            }
        }
        UserCommand::Grant { name, perm } => {
            let _: Value = hub.client()?.call(
                Method::Post,
                &["users", name, "perms"],
                &[],
                Some(&json!({"perm": perm})),
            )?;
            println!("granted {perm} to {name}");
        }
        UserCommand::Revoke { name, perm } => {
            let _: Value = hub
                .client()?
                .call::<(), _>(Method::Delete, &["users", name, "perms", perm], &[], None)?;
            println!("revoked {perm} from {name}");
        }
        UserCommand::Ls(j) => {
            let users: Vec<User> = hub.client()?.get(&["users"], &[])?;
            if j.json {
                print_json(&users)?;
            } else {
                table(
                    &["USER", "KIND", "PERMISSIONS"],
                    users
                        .into_iter()
                        .map(|u| vec![u.name, u.kind, u.perms.join(",")])
                        .collect(),
                );
            }
        }
        UserCommand::Token {
            name,
            label,
            expires_days,
            list,
            revoke,
            json,
        } => {
            let c = hub.client()?;
            if *list {
                let t: Vec<TokenInfo> = c.get(&["users", name, "tokens"], &[])?;
                if json.json {
                    print_json(&t)?;
                } else {
                    table(
                        &["ID", "NAME", "CREATED", "EXPIRES", "REVOKED"],
                        t.into_iter()
                            .map(|t| {
                                vec![
                                    t.id.to_string(),
                                    t.name,
                                    t.created.to_string(),
                                    t.expires.map_or("-".into(), |e| e.to_string()),
                                    t.revoked.map_or("-".into(), |e| e.to_string()),
                                ]
                            })
                            .collect(),
                    );
                }
            } else if let Some(id) = revoke {
                let _: Value = c.call::<(), _>(Method::Delete, &["tokens", &id.to_string()], &[], None)?;
                println!("revoked token {id}");
            } else {
                let t: NewToken = c.call(
                    Method::Post,
                    &["users", name, "tokens"],
                    &[],
                    Some(&json!({"name": label, "expires_days": expires_days})),
                )?;
                eprintln!("token {} for {name} (shown once):", t.id);
                println!("{}", t.token);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- tags ------------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum TagCommand {
    /// Create a tag.
    Create {
        name: String,
        /// A parent tag (linked at priority 0).
        #[arg(long)]
        parent: Option<String>,
        /// Architectures, space- or comma-separated.
        #[arg(long)]
        arches: Option<String>,
        /// Permission required to change the tag's content.
        #[arg(long)]
        perm: Option<String>,
        /// Create it locked.
        #[arg(long)]
        locked: bool,
        /// Extra: KEY=VALUE (JSON value, else string); repeatable.
        #[arg(short = 'x', long = "extra", value_name = "KEY=VALUE")]
        extra: Vec<String>,
    },
    /// Edit a tag.
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long)]
        arches: Option<String>,
        #[arg(long, conflicts_with = "unlock")]
        lock: bool,
        #[arg(long)]
        unlock: bool,
        /// Permission required to change the tag's content.
        #[arg(long, conflicts_with = "no_perm")]
        perm: Option<String>,
        /// Remove the tag's permission requirement.
        #[arg(long)]
        no_perm: bool,
        #[arg(short = 'x', long = "extra", value_name = "KEY=VALUE")]
        extra: Vec<String>,
        #[arg(short = 'r', long = "remove-extra", value_name = "KEY")]
        remove_extra: Vec<String>,
        /// Block a key so it is not inherited.
        #[arg(short = 'b', long = "block-extra", value_name = "KEY")]
        block_extra: Vec<String>,
    },
    /// A tag's configuration and extra.
    Info {
        name: String,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// List tags.
    Ls {
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Delete a tag.
    Rm { name: String },
    /// Every change to a tag: who, when, what.
    History {
        name: String,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Inheritance links.
    #[command(subcommand)]
    Inherit(InheritCommand),
    /// The build config: arches and extra through the inheritance, with where each came from.
    Config {
        name: String,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Package lists.
    #[command(subcommand)]
    Pkg(PkgCommand),
}

#[derive(Subcommand, Debug)]
pub enum InheritCommand {
    /// Add a parent (koji add-tag-inheritance).
    Add {
        child: String,
        parent: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[arg(long)]
        maxdepth: Option<i64>,
        #[arg(long)]
        intransitive: bool,
        #[arg(long)]
        noconfig: bool,
        #[arg(long = "pkg-filter", value_name = "REGEX")]
        pkg_filter: Option<String>,
    },
    /// Edit a link (koji edit-tag-inheritance).
    Edit {
        child: String,
        parent: String,
        #[arg(long)]
        priority: Option<i64>,
        /// Maximum depth; `none` for unlimited.
        #[arg(long)]
        maxdepth: Option<String>,
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        intransitive: Option<bool>,
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        noconfig: Option<bool>,
        #[arg(long = "pkg-filter", value_name = "REGEX")]
        pkg_filter: Option<String>,
    },
    /// Remove a link.
    Rm { child: String, parent: String },
    /// List the parents; --full prints the whole walk with depths (koji list-tag-inheritance).
    Ls {
        tag: String,
        #[arg(long)]
        full: bool,
        #[arg(long)]
        reverse: bool,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

#[derive(Subcommand, Debug)]
pub enum PkgCommand {
    /// Add packages to a tag's list (koji add-pkg).
    Add {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Change a locked tag (admins).
        #[arg(long)]
        force: bool,
    },
    /// Block packages on a tag (koji block-pkg).
    Block {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Remove packages from a tag's own list (koji remove-pkg).
    Rm {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// List a tag's packages (koji list-pkgs).
    Ls {
        tag: String,
        /// Include inherited entries.
        #[arg(long)]
        inherit: bool,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

fn link_rows(links: &[LinkOut]) -> Vec<Vec<String>> {
    links
        .iter()
        .map(|l| {
            let mut flags = String::new();
            if l.intransitive {
                flags.push('I');
            }
            if l.noconfig {
                flags.push('N');
            }
            vec![
                l.priority.to_string(),
                l.parent.clone(),
                l.maxdepth.map_or("-".into(), |d| d.to_string()),
                if flags.is_empty() { "-".into() } else { flags },
                if l.pkg_filter.is_empty() {
                    "-".into()
                } else {
                    l.pkg_filter.clone()
                },
            ]
        })
        .collect()
}

pub fn tag(hub: &HubOpts, cmd: &TagCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        TagCommand::Create {
            name,
            parent,
            arches,
            perm,
            locked,
            extra: x,
        } => {
            let extra: BTreeMap<String, Value> = x.iter().map(|x| extra(x)).collect::<Result<_>>()?;
            let t: TagInfo = c.call(
                Method::Post,
                &["tags"],
                &[],
                Some(&NewTag {
                    name: name.clone(),
                    arches: arches.clone(),
                    perm: perm.clone(),
                    locked: *locked,
                    extra,
                    parent: parent.clone(),
                }),
            )?;
            println!("created tag {} (id {})", t.name, t.id);
        }
        TagCommand::Edit {
            name,
            rename,
            arches,
            lock,
            unlock,
            perm,
            no_perm,
            extra: x,
            remove_extra,
            block_extra,
        } => {
            let e = TagEdit {
                rename: rename.clone(),
                arches: arches.clone().map(Some),
                perm: if *no_perm { Some(None) } else { perm.clone().map(Some) },
                locked: if *lock {
                    Some(true)
                } else if *unlock {
                    Some(false)
                } else {
                    None
                },
                extra: x.iter().map(|x| extra(x)).collect::<Result<_>>()?,
                remove_extra: remove_extra.clone(),
                block_extra: block_extra.clone(),
            };
            let t: TagInfo = c.call(Method::Patch, &["tags", name], &[], Some(&e))?;
            println!("edited tag {}", t.name);
        }
        TagCommand::Info { name, event, json } => {
            let t: TagInfo = c.get(&["tags", name], &ev(*event))?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Tag: {} [{}]", t.name, t.id);
            println!("Arches: {}", t.arches.as_deref().unwrap_or("-"));
            println!("Locked: {}", if t.locked { "yes" } else { "no" });
            println!("Required permission: {}", t.perm.as_deref().unwrap_or("-"));
            if !t.extra.is_empty() {
                println!("Tag options:");
                for (k, v) in &t.extra {
                    match (&v.value, v.blocked) {
                        (_, true) => println!("  {k} : (blocked)"),
                        (Some(v), false) => println!("  {k} : {v}"),
                        (None, false) => println!("  {k}"),
                    }
                }
            }
        }
        TagCommand::Ls { event, json } => {
            let all: Vec<TagInfo> = every_page(&c, &["tags"], &ev(*event))?;
            if json.json {
                print_json(&all)?;
            } else {
                table(
                    &["TAG", "ARCHES", "LOCKED", "PERM"],
                    all.into_iter()
                        .map(|t| {
                            vec![
                                t.name,
                                t.arches.unwrap_or_else(|| "-".into()),
                                if t.locked { "yes".into() } else { "no".into() },
                                t.perm.unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TagCommand::Rm { name } => {
            let _: Value = c.call::<(), _>(Method::Delete, &["tags", name], &[], None)?;
            println!("deleted tag {name}");
        }
        TagCommand::History { name, json } => {
            let h: Vec<HistoryEntry> = c.get(&["tags", name, "history"], &[])?;
            if json.json {
                print_json(&h)?;
            } else {
                table(
                    &["EVENT", "TIME", "USER", "CHANGE", "WHAT", "DETAIL"],
                    h.into_iter()
                        .map(|e| {
                            vec![
                                e.event.to_string(),
                                e.time.to_string(),
                                e.user.unwrap_or_else(|| "-".into()),
                                e.change,
                                e.table,
                                e.detail.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TagCommand::Config { name, event, json } => {
            let b: BuildConfigOut = c.get(&["tags", name, "config"], &ev(*event))?;
            if json.json {
                return print_json(&b).map(|()| ExitCode::SUCCESS);
            }
            match &b.arches {
                Some(a) => println!("arches: {} (from {})", a.value.as_str().unwrap_or_default(), a.from),
                None => println!("arches: -"),
            }
            for (k, v) in &b.extra {
                println!("{k} = {} (from {})", v.value, v.from);
            }
        }
        TagCommand::Inherit(i) => return inherit(&c, i),
        TagCommand::Pkg(p) => return pkg(&c, p),
    }
    Ok(ExitCode::SUCCESS)
}

fn inherit(c: &Client, cmd: &InheritCommand) -> Result<ExitCode> {
    match cmd {
        InheritCommand::Add {
            child,
            parent,
            priority,
            maxdepth,
            intransitive,
            noconfig,
            pkg_filter,
        } => {
            let l = LinkIn {
                parent: parent.clone(),
                priority: *priority,
                maxdepth: *maxdepth,
                intransitive: *intransitive,
                noconfig: *noconfig,
                pkg_filter: pkg_filter.clone().unwrap_or_default(),
            };
            let _: Vec<LinkOut> = c.call(Method::Post, &["tags", child, "inheritance"], &[], Some(&l))?;
            println!("{child} now inherits from {parent} (priority {priority})");
        }
        InheritCommand::Edit {
            child,
            parent,
            priority,
            maxdepth,
            intransitive,
            noconfig,
            pkg_filter,
        } => {
            let maxdepth = match maxdepth.as_deref() {
                None => None,
                Some("none") | Some("None") | Some("") => Some(None),
                Some(d) => Some(Some(
                    d.parse::<i64>()
                        .with_context(|| format!("--maxdepth {d}: a number or none"))?,
                )),
            };
            let e = LinkEdit {
                priority: *priority,
                maxdepth,
                intransitive: *intransitive,
                noconfig: *noconfig,
                pkg_filter: pkg_filter.clone(),
            };
            let _: Vec<LinkOut> = c.call(Method::Patch, &["tags", child, "inheritance", parent], &[], Some(&e))?;
            println!("edited {child} -> {parent}");
        }
        InheritCommand::Rm { child, parent } => {
            let _: Vec<LinkOut> =
                c.call::<(), _>(Method::Delete, &["tags", child, "inheritance", parent], &[], None)?;
            println!("{child} no longer inherits from {parent}");
        }
        InheritCommand::Ls {
            tag,
            full,
            reverse,
            event,
            json,
        } => {
            let mut q = ev(*event);
            if *full {
                q.push(("full", "true".into()));
            }
            if *reverse {
                q.push(("reverse", "true".into()));
            }
            if *full {
                let w: Vec<WalkOut> = c.get(&["tags", tag, "inheritance"], &q)?;
                if json.json {
                    return print_json(&w).map(|()| ExitCode::SUCCESS);
                }
                // koji list-tag-inheritance: the tag, then each entry indented by depth.
                println!("{tag}");
                for e in &w {
                    let mut flags = String::new();
                    flags.push(if e.link.maxdepth.is_some() { 'M' } else { '.' });
                    flags.push(if e.link.noconfig { 'N' } else { '.' });
                    flags.push(if e.link.intransitive { 'I' } else { '.' });
                    flags.push(if e.filter.is_empty() { '.' } else { 'F' });
                    println!("  {flags} {}{}", "   ".repeat((e.currdepth.max(1) - 1) as usize), e.tag);
                    for f in &e.filter {
                        println!("        {}filter: {f}", "   ".repeat((e.currdepth.max(1) - 1) as usize));
                    }
                }
            } else {
                let l: Vec<LinkOut> = c.get(&["tags", tag, "inheritance"], &q)?;
                if json.json {
                    return print_json(&l).map(|()| ExitCode::SUCCESS);
                }
                let rows = if *reverse {
                    l.iter()
                        .map(|l| {
                            let mut r = link_rows(std::slice::from_ref(l)).remove(0);
                            r[1] = l.child.clone();
                            r
                        })
                        .collect()
                } else {
                    link_rows(&l)
                };
                table(
                    &[
                        "PRIORITY",
                        if *reverse { "CHILD" } else { "PARENT" },
                        "MAXDEPTH",
                        "FLAGS",
                        "PKG_FILTER",
                    ],
                    rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds (or blocks) packages on a tag's own list, one request each.
fn set_packages(
    c: &Client,
    tag: &str,
    packages: &[String],
    owner: Option<&str>,
    blocked: bool,
    query: &[(&str, String)],
) -> Result<()> {
    for p in packages {
        let entry = PackageIn {
            package: p.clone(),
            owner: owner.map(str::to_string),
            blocked,
        };
        let _: Value = c.call(Method::Post, &["tags", tag, "packages"], query, Some(&entry))?;
    }
    Ok(())
}

fn pkg(c: &Client, cmd: &PkgCommand) -> Result<ExitCode> {
    let force = |f: bool| -> Vec<(&str, String)> { if f { vec![("force", "true".into())] } else { Vec::new() } };
    match cmd {
        PkgCommand::Add {
            tag,
            packages,
            owner,
            force: f,
        } => {
            set_packages(c, tag, packages, owner.as_deref(), false, &force(*f))?;
            println!("added {} to {tag}", packages.join(", "));
        }
        PkgCommand::Block {
            tag,
            packages,
            force: f,
        } => {
            set_packages(c, tag, packages, None, true, &force(*f))?;
            println!("blocked {} in {tag}", packages.join(", "));
        }
        PkgCommand::Rm {
            tag,
            packages,
            force: f,
        } => {
            for p in packages {
                let _: Value = c.call::<(), _>(Method::Delete, &["tags", tag, "packages", p], &force(*f), None)?;
            }
            println!("removed {} from {tag}", packages.join(", "));
        }
        PkgCommand::Ls {
            tag,
            inherit,
            event,
            json,
        } => {
            let mut q = ev(*event);
            if *inherit {
                q.push(("inherit", "true".into()));
            }
            let l: Vec<PackageOut> = c.get(&["tags", tag, "packages"], &q)?;
            if json.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["PACKAGE", "TAG", "OWNER", "BLOCKED"],
                l.into_iter()
                    .map(|p| {
                        vec![
                            p.package,
                            p.tag,
                            p.owner,
                            if p.blocked { "[BLOCKED]".into() } else { String::new() },
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- tagging ---------------------------------------------------------------

#[derive(Args, Debug)]
pub struct TagBuildArgs {
    #[command(flatten)]
    hub: HubOpts,
    tag: String,
    #[arg(required = true)]
    nvrs: Vec<String>,
    /// Re-tag a build already in the tag; change a locked tag (admins).
    #[arg(long)]
    force: bool,
}

pub fn tag_build(a: &TagBuildArgs, untag: bool) -> Result<ExitCode> {
    let c = a.hub.client()?;
    for nvr in &a.nvrs {
        if untag {
            let q: Vec<(&str, String)> = if a.force {
                vec![("force", "true".into())]
            } else {
                Vec::new()
            };
            let _: Value = c.call::<(), _>(Method::Delete, &["tags", &a.tag, "builds", nvr], &q, None)?;
            println!("untagged {nvr} from {}", a.tag);
        } else {
            let _: Value = c.call(
                Method::Post,
                &["tags", &a.tag, "builds"],
                &[],
                Some(&TagBuildIn {
                    nvr: nvr.clone(),
                    force: a.force,
                }),
            )?;
            println!("tagged {nvr} into {}", a.tag);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ListTaggedArgs {
    #[command(flatten)]
    hub: HubOpts,
    tag: String,
    /// Only the latest build of each package.
    #[arg(long)]
    latest: bool,
    /// Include builds inherited from parent tags.
    #[arg(long)]
    inherit: bool,
    /// As of this event.
    #[arg(long)]
    event: Option<i64>,
    #[command(flatten)]
    json: JsonOpt,
}

pub fn list_tagged(a: &ListTaggedArgs) -> Result<ExitCode> {
    let mut q = ev(a.event);
    if a.latest {
        q.push(("latest", "true".into()));
    }
    if a.inherit {
        q.push(("inherit", "true".into()));
    }
    let l: Vec<TaggedOut> = a.hub.client()?.get(&["tags", &a.tag, "builds"], &q)?;
    if a.json.json {
        return print_json(&l).map(|()| ExitCode::SUCCESS);
    }
    table(
        &["BUILD", "TAG", "BUILT BY"],
        l.into_iter().map(|b| vec![b.nvr, b.tag, b.owner]).collect(),
    );
    Ok(ExitCode::SUCCESS)
}

// ---- builds ----------------------------------------------------------------

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
            let q: Vec<(&str, String)> = state.iter().map(|s| ("state", s.clone())).collect();
            let all: Vec<Build> = every_page(&c, &["builds"], &q)?;
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
            let b: Build = c.get(&["builds", nvr], &[])?;
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
            let b: Build = c.call(Method::Post, &["builds"], &[], Some(&nb))?;
            let upload = || -> Result<()> {
                for (a, path) in nb.artifacts.iter().zip(&files) {
                    let _: Value = c.upload(&["builds", &b.nvr, "files", &a.file], path, &a.sha256)?;
                    eprintln!("uploaded {} ({} bytes)", a.file, a.size);
                }
                Ok(())
            };
            if let Err(e) = upload() {
                let _: Result<Value, _> = c.call(
                    Method::Post,
                    &["builds", &b.nvr, "state"],
                    &[],
                    Some(&json!({"state": "FAILED"})),
                );
                return Err(e.context(format!("importing {} failed; the build is marked FAILED", b.nvr)));
            }
            let b: Build = c.call(
                Method::Post,
                &["builds", &b.nvr, "state"],
                &[],
                Some(&json!({"state": "COMPLETE"})),
            )?;
            println!("imported {} ({} files, {})", b.nvr, b.artifacts.len(), b.state);
        }
        BuildsCommand::Download { nvr, outdir } => {
            let b: Build = c.get(&["builds", nvr], &[])?;
            std::fs::create_dir_all(outdir).with_context(|| format!("creating {}", outdir.display()))?;
            for a in b.artifacts.iter().filter(|a| a.stored) {
                let sha = c.download(&["builds", nvr, "files", &a.file], &outdir.join(&a.file))?;
                if sha != a.sha256 {
                    bail!("{} does not match the build's record", a.file);
                }
                println!("{}  {}", a.sha256, a.file);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- targets ---------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Create a target (koji add-target) with persistent macros.
    Create {
        name: String,
        build_tag: String,
        dest_tag: String,
        #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
        defines: Vec<String>,
    },
    /// Edit a target (koji edit-target).
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long)]
        build_tag: Option<String>,
        #[arg(long)]
        dest_tag: Option<String>,
        #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
        defines: Vec<String>,
        #[arg(long = "undefine", value_name = "NAME")]
        undefines: Vec<String>,
    },
    /// Show a target; --json output restores with `kiln target apply`.
    Show {
        name: String,
        /// As of this event.
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Create or replace a target from `kiln target show --json` output.
    Apply { file: PathBuf },
    /// List targets.
    Ls(JsonOpt),
    /// Delete a target.
    Rm { name: String },
    /// The macro layers the target gives a build: its own, and its build tag's macro.* extra.
    Macros {
        name: String,
        #[command(flatten)]
        json: JsonOpt,
    },
}

pub fn target(hub: &HubOpts, cmd: &TargetCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        TargetCommand::Create {
            name,
            build_tag,
            dest_tag,
            defines,
        } => {
            let t = Target {
                name: name.clone(),
                build_tag: build_tag.clone(),
                dest_tag: dest_tag.clone(),
                macros: defines.iter().map(|d| define(d)).collect::<Result<_>>()?,
            };
            let _: Target = c.call(Method::Post, &["targets"], &[], Some(&t))?;
            println!("created target {name}");
        }
        TargetCommand::Edit {
            name,
            rename,
            build_tag,
            dest_tag,
            defines,
            undefines,
        } => {
            let e = TargetEdit {
                rename: rename.clone(),
                build_tag: build_tag.clone(),
                dest_tag: dest_tag.clone(),
                define: defines.iter().map(|d| define(d)).collect::<Result<_>>()?,
                undefine: undefines.clone(),
            };
            let t: Target = c.call(Method::Patch, &["targets", name], &[], Some(&e))?;
            println!("edited target {}", t.name);
        }
        TargetCommand::Show { name, event, json } => {
            let t: Target = c.get(&["targets", name], &ev(*event))?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Name: {}", t.name);
            println!("Build tag: {}", t.build_tag);
            println!("Destination tag: {}", t.dest_tag);
            for (k, v) in &t.macros {
                println!("  %{k} {v}");
            }
        }
        TargetCommand::Apply { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let t: Target = serde_json::from_str(&text).with_context(|| format!("{}: not a target", file.display()))?;
            let _: Target = c.call(Method::Put, &["targets", &t.name], &[], Some(&t))?;
            println!("applied target {}", t.name);
        }
        TargetCommand::Ls(j) => {
            let l: Vec<Target> = c.get(&["targets"], &[])?;
            if j.json {
                print_json(&l)?;
            } else {
                table(
                    &["NAME", "BUILD TAG", "DEST TAG", "MACROS"],
                    l.into_iter()
                        .map(|t| vec![t.name, t.build_tag, t.dest_tag, t.macros.len().to_string()])
                        .collect(),
                );
            }
        }
        TargetCommand::Rm { name } => {
            let _: Value = c.call::<(), _>(Method::Delete, &["targets", name], &[], None)?;
            println!("deleted target {name}");
        }
        TargetCommand::Macros { name, json } => {
            let m: MacroLayers = c.get(&["targets", name, "macros"], &[])?;
            if json.json {
                return print_json(&m).map(|()| ExitCode::SUCCESS);
            }
            println!("# layer 2: target {}", m.target);
            for (k, v) in &m.target_macros {
                println!("%{k} {v}");
            }
            println!("# layer 4: build tag {}", m.build_tag);
            for (k, v) in &m.build_tag_macros {
                println!("%{k} {}  # from {}", v.value.as_str().unwrap_or_default(), v.from);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- source images on the hub ---------------------------------------------

pub fn image_import(hub: &HubOpts, name: &str, version: &str, file: &Path) -> Result<ExitCode> {
    let c = hub.client()?;
    if file.is_dir() {
        bail!(
            "{}: upload an image file; import a directory into the local catalog first",
            file.display()
        );
    }
    let sha = kiln_engine::fsutil::sha256_file(file).with_context(|| format!("reading {}", file.display()))?;
    let i: Image = c.upload(&["images", name, version, "upload"], file, &sha)?;
    println!(
        "uploaded {name}@{version} ({}, {} bytes, sha256 {})",
        i.format, i.size, i.sha256
    );
    Ok(ExitCode::SUCCESS)
}

pub fn image_ls(hub: &HubOpts, name: Option<&str>, json: bool) -> Result<ExitCode> {
    let q: Vec<(&str, String)> = name.map(|n| ("name", n.to_string())).into_iter().collect();
    let l: Vec<Image> = hub.client()?.get(&["images"], &q)?;
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
    let _: Value = hub
        .client()?
        .call::<(), _>(Method::Delete, &["images", name, version], &[], None)?;
    println!("removed {name}@{version} from the hub");
    Ok(ExitCode::SUCCESS)
}

pub fn image_download(hub: &HubOpts, name: &str, version: &str, dest: &Path) -> Result<String> {
    Ok(hub.client()?.download(&["images", name, version, "blob"], dest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_values_are_json_or_strings() {
        assert_eq!(extra("a=1").expect("ok"), ("a".into(), json!(1)));
        assert_eq!(extra("a=x y").expect("ok"), ("a".into(), json!("x y")));
        assert!(extra("=x").is_err());
    }
}

// ---- builders and tasks (docs/hub.md) -----------------------------------------

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Register a builder; prints its host token once.
    Add {
        name: String,
        /// Channels it serves, comma-separated.
        #[arg(long, default_value = "default", value_delimiter = ',')]
        channels: Vec<String>,
        /// Its Debian architecture (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// Tasks it runs at once.
        #[arg(long, default_value_t = 1)]
        capacity: i64,
    },
    /// List builders with their load and last heartbeat.
    Ls(JsonOpt),
}

pub fn host(hub: &HubOpts, cmd: &HostCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        HostCommand::Add {
            name,
            channels,
            arch,
            capacity,
        } => {
            let arch = match arch {
                Some(a) => a.clone(),
                None => kiln_host::debian_arch(),
            };
            let v: Value = c.call(
                Method::Post,
                &["hosts"],
                &[],
                Some(&NewHost {
                    name: name.clone(),
                    arch,
                    channels: channels.clone(),
                    capacity: *capacity,
                }),
            )?;
            eprintln!("registered builder {name}; its host token (shown once):");
            println!("{}", v["token"].as_str().unwrap_or_default());
        }
        HostCommand::Ls(j) => {
            let l: Vec<HostInfo> = c.get(&["hosts"], &[])?;
            if j.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            table(
                &["HOST", "ARCH", "CHANNELS", "LOAD", "STATE", "LAST SEEN"],
                l.into_iter()
                    .map(|h| {
                        let state = match (h.enabled, h.last_seen) {
                            (false, _) => "disabled",
                            (true, Some(t)) if now - t < 2 * kiln_hub::db::LEASE_SECONDS => "ready",
                            (true, _) => "offline",
                        };
                        vec![
                            h.name,
                            h.arch,
                            h.channels.join(","),
                            format!("{}/{}", h.load, h.capacity),
                            state.into(),
                            h.last_seen.map_or("never".into(), |t| format!("{} s ago", now - t)),
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
        queue: QueueOpts,
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
fn watch(c: &Client, id: i64) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut after = 0i64;
    let mut last_line = String::new();
    loop {
        let v: Value = c.get(&["tasks", &id.to_string(), "log"], &[("after", after.to_string())])?;
        let text = v["text"].as_str().unwrap_or_default();
        for line in text.lines() {
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
            if !line.trim().is_empty() {
                last_line = line.trim().chars().take(100).collect();
            }
        }
        after = v["next"].as_i64().unwrap_or(after);
        let state = v["state"].as_str().unwrap_or_default().to_string();
        if let Some(b) = &bar {
            b.set_message(format!("task {id}: {state} · {last_line}"));
        }
        if matches!(state.as_str(), "CLOSED" | "FAILED" | "CANCELED") && text.is_empty() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let t: Task = c.get(&["tasks", &id.to_string()], &[])?;
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
            let q: Vec<(&str, String)> = state.iter().map(|s| ("state", s.clone())).collect();
            let all: Vec<Task> = every_page(&c, &["tasks"], &q)?;
            if json.json {
                return print_json(&all).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["ID", "METHOD", "STATE", "PRIORITY", "CHANNEL", "ARCH", "HOST", "OWNER"],
                all.into_iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.method,
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
            let t: Task = c.get(&["tasks", &id.to_string()], &[])?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Task: {} ({})", t.id, t.method);
            println!("State: {}", t.state);
            println!("Owner: {}", t.owner);
            println!("Host: {}", t.host.as_deref().unwrap_or("-"));
            println!("Attempts: {}/{}", t.attempts, t.max_attempts);
            println!("Request: {}", t.request);
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
            let nt = queue.task(method, request);
            for _ in 0..*count {
                let t: Task = c.call(Method::Post, &["tasks"], &[], Some(&nt))?;
                println!("{}", t.id);
            }
        }
        TaskCommand::Cancel { id } => {
            let t: Task = c.call::<(), _>(Method::Post, &["tasks", &id.to_string(), "cancel"], &[], None)?;
            println!("task {} is {}", t.id, t.state);
        }
        TaskCommand::Watch { id } => return watch(&c, *id),
        TaskCommand::Download { id, outdir } => {
            let t: Task = c.get(&["tasks", &id.to_string()], &[])?;
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
                let sha = c.download(&["tasks", &id.to_string(), "files", &f], &dest)?;
                println!("{sha}  {}", dest.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

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

// ---- kiln submit (docs/hub.md) ------------------------------------------------

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SubmitArgs {
    #[command(subcommand)]
    update: Option<SubmitCommand>,
    #[command(flatten)]
    hub: HubOpts,
    /// The image to build, e.g. `ve/minimal`.
    #[arg(required = true)]
    image: Option<String>,
    /// The build target: its build tag's config and its macros apply; the
    /// build is tagged into its destination tag.
    #[arg(long, required = true)]
    target: Option<String>,
    /// The profile repository, git+URL@REF (default: this directory's
    /// `origin` remote at its HEAD commit).
    #[arg(long, value_name = "git+URL@REF")]
    repo: Option<String>,
    #[command(flatten)]
    task: SubmitTaskOpts,
}

#[derive(Subcommand, Debug)]
pub enum SubmitCommand {
    /// Update a source image on a builder (docs/update.md) and publish the result.
    Update(SubmitUpdateArgs),
}

#[derive(Args, Debug)]
pub struct SubmitUpdateArgs {
    #[command(flatten)]
    hub: HubOpts,
    /// A source image on the hub, NAME@VERSION (`kiln image ls --hub`).
    #[arg(long, value_name = "NAME@VERSION")]
    from: String,
    /// The update script, git+URL@REF:PATH.
    #[arg(long, value_name = "git+URL@REF:PATH")]
    script: String,
    /// The target image's name, NAME-VERSION-RELEASE.
    #[arg(long, value_name = "NVR")]
    name: String,
    #[arg(long)]
    target: String,
    /// squashfs, erofs, tar, tar.zst, tar.xz or tar.gz (default: the source's).
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    task: SubmitTaskOpts,
}

/// Where and when a task runs.
#[derive(Args, Debug)]
pub struct QueueOpts {
    /// Run on this builder only.
    #[arg(long, value_name = "NAME")]
    builder: Option<String>,
    /// Lower runs first.
    #[arg(long, default_value_t = 20)]
    priority: i64,
    #[arg(long, default_value = "default")]
    channel: String,
    /// Only builders of this architecture (default: any).
    #[arg(long, default_value = "noarch")]
    arch: String,
}

impl QueueOpts {
    fn task(&self, method: &str, request: Value) -> NewTask {
        NewTask {
            method: method.into(),
            request,
            priority: self.priority,
            channel: self.channel.clone(),
            arch: self.arch.clone(),
            builder: self.builder.clone(),
            parent: None,
            max_attempts: 3,
        }
    }
}

/// What every submitted build or update takes.
#[derive(Args, Debug)]
pub struct SubmitTaskOpts {
    /// Define a macro (layer 1, highest precedence); repeatable.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
    defines: Vec<String>,
    /// Build, but record no build and tag nothing; the files stay with the task.
    #[arg(long)]
    scratch: bool,
    /// Follow the task's log until it ends; exit with its outcome.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    queue: QueueOpts,
}

impl SubmitTaskOpts {
    fn defines(&self) -> Result<Vec<(String, String)>> {
        self.defines
            .iter()
            .map(|d| {
                let m = kiln_core::external::parse_define(d).map_err(anyhow::Error::msg)?;
                Ok((m.name, m.value))
            })
            .collect()
    }

    fn submit(&self, hub: &HubOpts, method: &str, request: Value) -> Result<ExitCode> {
        let c = hub.client()?;
        let t: Task = c.call(Method::Post, &["tasks"], &[], Some(&self.queue.task(method, request)))?;
        println!("{}", t.id);
        if self.watch {
            eprintln!("task {} ({method}) submitted; following its log", t.id);
            return watch(&c, t.id);
        }
        eprintln!(
            "task {} ({method}) submitted; follow it with `kiln task watch {}`",
            t.id, t.id
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// This directory's `origin` at HEAD, as git+URL@COMMIT.
fn repo_here() -> Result<String> {
    let git = |args: &[&str]| -> Result<String> {
        let o = std::process::Command::new("git")
            .args(args)
            .output()
            .context("cannot run git (install the `git` package)")?;
        if !o.status.success() {
            bail!("{}", String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let url = git(&["remote", "get-url", "origin"])
        .context("no --repo given and this directory has no `origin` remote: pass --repo git+URL@REF")?;
    let head = git(&["rev-parse", "HEAD"]).context("cannot read this repository's HEAD")?;
    let url = if url.contains("://") {
        url
    } else if let Some((host, path)) = url.split_once(':').filter(|(h, _)| !h.contains('/')) {
        // scp-like syntax, user@host:path.
        format!("ssh://{host}/{path}")
    } else {
        format!("file://{}", std::fs::canonicalize(&url)?.display())
    };
    Ok(format!("git+{url}@{head}"))
}

pub fn submit(a: &SubmitArgs) -> Result<ExitCode> {
    if let Some(SubmitCommand::Update(u)) = &a.update {
        let req = UpdateRequest {
            target: u.target.clone(),
            from: u.from.clone(),
            script: u.script.clone(),
            name: u.name.clone(),
            format: u.format.clone(),
            defines: u.task.defines()?,
            scratch: u.task.scratch,
        };
        req.check().map_err(anyhow::Error::msg)?;
        return u.task.submit(&u.hub, "update", serde_json::to_value(req)?);
    }
    let (Some(image), Some(target)) = (&a.image, &a.target) else {
        bail!("usage: kiln submit --target TARGET IMAGE [--repo git+URL@REF]");
    };
    let repo = match &a.repo {
        Some(r) => r.clone(),
        None => repo_here()?,
    };
    let req = BuildRequest {
        target: target.clone(),
        image: image.clone(),
        repo,
        defines: a.task.defines()?,
        scratch: a.task.scratch,
    };
    req.check().map_err(anyhow::Error::msg)?;
    a.task.submit(&a.hub, "build", serde_json::to_value(req)?)
}
