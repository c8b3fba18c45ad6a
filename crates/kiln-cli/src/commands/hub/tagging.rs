//! `kiln tag-build`, `kiln untag-build`, `kiln list-tagged`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use kiln_hub_api::TaggedQuery;
use kiln_hub_api::model::*;

use super::*;

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
            c.untag_build(&a.tag, nvr, a.force)?;
            println!("untagged {nvr} from {}", a.tag);
        } else {
            c.tag_build(
                &a.tag,
                &TagBuildIn {
                    nvr: nvr.clone(),
                    force: a.force,
                },
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
    let q = TaggedQuery {
        inherit: a.inherit,
        latest: a.latest,
        event: a.event,
    };
    let l = a.hub.client()?.tagged(&a.tag, q)?;
    if a.json.json {
        return print_json(&l).map(|()| ExitCode::SUCCESS);
    }
    table(
        &["BUILD", "TAG", "BUILT BY"],
        l.into_iter().map(|b| vec![b.nvr, b.tag, b.owner]).collect(),
    );
    Ok(ExitCode::SUCCESS)
}
