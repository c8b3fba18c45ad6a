//! The event log read back: a tag's history (every version of its name,
//! configuration, extra, links, package entries and listings, with the
//! events that created and revoked it), the latest event, and whether an
//! event a read asks for happened.

use std::collections::HashMap;

use kiln_core::koji;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::db::rules::{active, id_list, parse_json};
use crate::error::{HubError, Result};
use crate::model::HistoryEntry;

/// What a version of a row holds: JSON, or a link (written out once the
/// names of its tags are known).
enum Detail {
    Json(serde_json::Value),
    Link(koji::Link),
}

/// A name a tag had: the name, the event that gave it and the one that
/// took it (`None`: it still has it).
type NameSpan = (String, i64, Option<i64>);

/// The name of `spans` (in order) at `event`: the one held then, or else
/// the first one given after it (an event a tag existed at before its first
/// recorded name, in a history from before names were versioned), or the
/// last one.
fn name_at(spans: &[NameSpan], event: i64) -> Option<&str> {
    let held = |(_, from, until): &&NameSpan| *from <= event && until.is_none_or(|u| u > event);
    let span = spans
        .iter()
        .find(held)
        .or_else(|| spans.iter().find(|(_, from, _)| *from > event))
        .or_else(|| spans.last())?;
    Some(&span.0)
}

/// One version of a row in a tag's history: created by one event, maybe
/// revoked by a later one.
struct Version {
    create: i64,
    revoke: Option<i64>,
    table: &'static str,
    detail: Detail,
}

impl<D: Dialect> Backend<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    i64: Col<D>,
    Option<i64>: Col<D>,
    bool: Col<D>,
    String: Col<D>,
    Option<String>: Col<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
{
    /// The history of the tag named `tag` at `event`, up to `event`;
    /// without an event, the whole history of the tag named `tag` now, or
    /// else of the last tag that had the name (a deleted tag).
    pub async fn tag_history(&self, tag: &str, event: Option<i64>) -> Result<Vec<HistoryEntry>> {
        let id: Option<i64> = match event {
            Some(e) => {
                let sql = format!(
                    "SELECT tag_id FROM tag_names WHERE name = $1 AND {}",
                    active(event, 2, "")
                );
                sqlx::query_scalar(&sql)
                    .bind(tag)
                    .bind(e)
                    .fetch_optional(&self.read)
                    .await?
            }
            None => {
                let sql = "SELECT tag_id FROM tag_names WHERE name = $1 ORDER BY create_event DESC, id DESC LIMIT 1";
                sqlx::query_scalar(sql).bind(tag).fetch_optional(&self.read).await?
            }
        };
        let id = id.ok_or_else(|| HubError::not_found(format!("unknown tag `{tag}`")))?;
        let mut versions = self.versions(id).await?;
        if let Some(e) = event {
            versions.retain(|v| v.create <= e);
            for v in &mut versions {
                v.revoke = v.revoke.filter(|r| *r <= e);
            }
        }
        // Only the events, users and tag names this history names.
        let mut ev_ids: Vec<i64> = versions
            .iter()
            .flat_map(|v| std::iter::once(v.create).chain(v.revoke))
            .collect();
        ev_ids.sort_unstable();
        ev_ids.dedup();
        let events = self.events(&ev_ids).await?;
        let users = self.user_names(events.values().filter_map(|(_, u)| *u)).await?;
        let link_tags = versions.iter().flat_map(|v| match &v.detail {
            Detail::Link(l) => vec![l.child, l.parent],
            Detail::Json(_) => Vec::new(),
        });
        let names = self.names_over_time(link_tags.collect()).await?;
        let mut out = Vec::new();
        for Version {
            create,
            revoke,
            table,
            detail,
        } in versions
        {
            let detail = match detail {
                Detail::Json(v) => v,
                Detail::Link(l) => {
                    // The tags' names when the link was made.
                    let names = [l.child, l.parent]
                        .into_iter()
                        .filter_map(|t| Some((t, name_at(names.get(&t)?, create)?.to_string())))
                        .collect();
                    serde_json::to_value(Self::link_out(&l, &names)).unwrap_or_default()
                }
            };
            for (ev, change) in [(Some(create), "created"), (revoke, "revoked")] {
                let Some(ev) = ev else { continue };
                let (time, uid) = events.get(&ev).copied().unwrap_or((0, None));
                out.push(HistoryEntry {
                    event: ev,
                    time,
                    user: uid.and_then(|u| users.get(&u).cloned()),
                    change: change.into(),
                    table: table.into(),
                    detail: detail.clone(),
                });
            }
        }
        out.sort_by(|a, b| (a.event, &a.change, &a.table).cmp(&(b.event, &b.change, &b.table)));
        Ok(out)
    }

    pub async fn last_event(&self) -> Result<i64> {
        let e: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.read)
            .await?;
        Ok(e.unwrap_or(0))
    }

    /// Checks the event a read asks to see the data as of (`?event=N`):
    /// one that happened, or 0 (before the first).
    pub async fn check_event(&self, event: Option<i64>) -> Result<()> {
        let Some(e) = event else {
            return Ok(());
        };
        if e < 0 {
            return Err(HubError::bad_request(format!("event must be 0 or more, not {e}")));
        }
        let last = self.last_event().await?;
        if e > last {
            return Err(HubError::not_found(format!(
                "no event {e} yet: the last event is {last}"
            )));
        }
        Ok(())
    }

    /// Every version of tag `id`'s rows: name, configuration, extra, links
    /// (as child or parent), package entries and listings.
    async fn versions(&self, id: i64) -> Result<Vec<Version>> {
        let mut out = Vec::new();
        let mut push = |create, revoke, table, detail| {
            out.push(Version {
                create,
                revoke,
                table,
                detail,
            });
        };
        let sql = "SELECT name, create_event, revoke_event FROM tag_names WHERE tag_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let name: String = r.try_get(0)?;
            let detail = serde_json::json!({ "name": name });
            push(r.try_get(1)?, r.try_get(2)?, "name", Detail::Json(detail));
        }
        let sql = "SELECT arches, perm, locked, create_event, revoke_event FROM tag_config WHERE tag_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let (a, p, l): (Option<String>, Option<String>, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let detail = serde_json::json!({"arches": a, "perm": p, "locked": l});
            push(r.try_get(3)?, r.try_get(4)?, "config", Detail::Json(detail));
        }
        let sql = "SELECT key, value, blocked, create_event, revoke_event FROM tag_extra WHERE tag_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let (k, v, b): (String, Option<String>, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let detail = serde_json::json!({"key": k, "value": parse_json(v), "blocked": b});
            push(r.try_get(3)?, r.try_get(4)?, "extra", Detail::Json(detail));
        }
        let sql = "SELECT tag_id, parent_id, priority, maxdepth, intransitive, noconfig, pkg_filter, create_event, \
                   revoke_event FROM tag_inheritance WHERE tag_id = $1 OR parent_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let l = koji::Link {
                child: r.try_get(0)?,
                parent: r.try_get(1)?,
                priority: r.try_get(2)?,
                maxdepth: r.try_get(3)?,
                intransitive: r.try_get(4)?,
                noconfig: r.try_get(5)?,
                pkg_filter: r.try_get(6)?,
            };
            push(r.try_get(7)?, r.try_get(8)?, "inheritance", Detail::Link(l));
        }
        let sql = "SELECT package, owner, blocked, create_event, revoke_event FROM tag_packages WHERE tag_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let (p, o, b): (String, String, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let detail = serde_json::json!({"package": p, "owner": o, "blocked": b});
            push(r.try_get(3)?, r.try_get(4)?, "package", Detail::Json(detail));
        }
        let sql = "SELECT b.nvr, l.create_event, l.revoke_event FROM tag_listing l JOIN builds b ON b.id = l.build_id \
                   WHERE l.tag_id = $1";
        for r in sqlx::query(sql).bind(id).fetch_all(&self.read).await? {
            let nvr: String = r.try_get(0)?;
            push(
                r.try_get(1)?,
                r.try_get(2)?,
                "build",
                Detail::Json(serde_json::json!({"nvr": nvr})),
            );
        }
        Ok(out)
    }

    /// Every name tags `ids` had: (name, from event, until event), in
    /// order.
    async fn names_over_time(&self, mut ids: Vec<i64>) -> Result<HashMap<i64, Vec<NameSpan>>> {
        ids.sort_unstable();
        ids.dedup();
        let mut out: HashMap<i64, Vec<NameSpan>> = HashMap::new();
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT tag_id, name, create_event, revoke_event FROM tag_names WHERE tag_id IN ({}) \
                 ORDER BY create_event, id",
                id_list(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                let tag: i64 = r.try_get(0)?;
                out.entry(tag)
                    .or_default()
                    .push((r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
        }
        Ok(out)
    }

    /// The time and user of events `ids`.
    async fn events(&self, ids: &[i64]) -> Result<HashMap<i64, (i64, Option<i64>)>> {
        let mut events = HashMap::new();
        for chunk in ids.chunks(1000) {
            let sql = format!("SELECT id, time, user_id FROM events WHERE id IN ({})", id_list(chunk));
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                events.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(events)
    }

    /// The names of some users.
    async fn user_names(&self, ids: impl Iterator<Item = i64>) -> Result<HashMap<i64, String>> {
        let mut ids: Vec<i64> = ids.collect();
        ids.sort_unstable();
        ids.dedup();
        let mut users = HashMap::new();
        if !ids.is_empty() {
            let sql = format!("SELECT id, name FROM users WHERE id IN ({})", id_list(&ids));
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                users.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(users)
    }
}
