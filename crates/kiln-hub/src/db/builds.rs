//! Builds (name, version, release; their artifacts, manifest and state)
//! and their tagging: listings made and revoked under Koji's rules, and
//! `list-tagged` as of an event.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_core::koji;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::KojiTagged;
use super::backend::{Backend, Col, Current, Dialect, Key, TagRow, Tx};
use super::cache;
use crate::db::now;
use crate::db::rules::{active, check_new_build, exists, id_list, json_text, parse_json};
use crate::error::{HubError, Result};
use crate::model::{Artifact, Build, NewBuild, Page, Principal, TaggedOut};

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
    fn build_row(r: &D::Row) -> Result<Build> {
        Ok(Build {
            id: r.try_get(0)?,
            nvr: r.try_get(1)?,
            name: r.try_get(2)?,
            version: r.try_get(3)?,
            release: r.try_get(4)?,
            state: r.try_get(5)?,
            owner: r.try_get(6)?,
            task_id: r.try_get(7)?,
            start_time: r.try_get(8)?,
            completion_time: r.try_get(9)?,
            artifacts: Vec::new(),
            manifest: None,
            extra: parse_json(r.try_get(10)?).unwrap_or(serde_json::Value::Null),
        })
    }

    const BUILD_COLS: &'static str = "b.id, b.nvr, b.name, b.version, b.release, b.state, u.name, b.task_id, \
         b.start_time, b.completion_time, b.extra";

    pub async fn create_build(&self, who: &Principal, b: &NewBuild) -> Result<Build> {
        let nvr = check_new_build(b)?;
        let mut tx = self.begin_write().await?;
        let owner = who
            .id
            .ok_or_else(|| HubError::unauthorized("log in to create builds"))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO builds (name, version, release, nvr, state, owner_id, start_time, manifest, extra) \
             VALUES ($1, $2, $3, $4, 'BUILDING', $5, $6, $7, $8) RETURNING id",
        )
        .bind(&b.name)
        .bind(&b.version)
        .bind(&b.release)
        .bind(&nvr)
        .bind(owner)
        .bind(now())
        .bind(b.manifest.as_ref().map(json_text))
        .bind(json_text(b.extra.as_ref().unwrap_or(&serde_json::json!({}))))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| exists(e, || format!("build {nvr} exists")))?;
        for a in &b.artifacts {
            sqlx::query("INSERT INTO artifacts (build_id, file, format, size, sha256) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(&a.file)
                .bind(&a.format)
                .bind(a.size)
                .bind(a.sha256.to_ascii_lowercase())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.build(&nvr, false).await
    }

    pub async fn build(&self, nvr: &str, with_manifest: bool) -> Result<Build> {
        let sql = format!(
            "SELECT {}, b.manifest FROM builds b JOIN users u ON u.id = b.owner_id WHERE b.nvr = $1",
            Self::BUILD_COLS
        );
        let r = sqlx::query(&sql)
            .bind(nvr)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
        let mut b = Self::build_row(&r)?;
        if with_manifest {
            b.manifest = parse_json(r.try_get(11)?);
        }
        let rows = sqlx::query(
            "SELECT file, format, size, sha256, store_key FROM artifacts WHERE build_id = $1 ORDER BY file",
        )
        .bind(b.id)
        .fetch_all(&self.read)
        .await?;
        for r in rows {
            let key: Option<String> = r.try_get(4)?;
            b.artifacts.push(Artifact {
                file: r.try_get(0)?,
                format: r.try_get(1)?,
                size: r.try_get(2)?,
                sha256: r.try_get(3)?,
                stored: key.is_some(),
            });
        }
        Ok(b)
    }

    pub async fn artifact_key(&self, nvr: &str, file: &str) -> Result<(Artifact, Option<String>)> {
        let r = sqlx::query(
            "SELECT a.file, a.format, a.size, a.sha256, a.store_key FROM artifacts a \
             JOIN builds b ON b.id = a.build_id WHERE b.nvr = $1 AND a.file = $2",
        )
        .bind(nvr)
        .bind(file)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| HubError::not_found(format!("build {nvr} has no file `{file}`")))?;
        let key: Option<String> = r.try_get(4)?;
        Ok((
            Artifact {
                file: r.try_get(0)?,
                format: r.try_get(1)?,
                size: r.try_get(2)?,
                sha256: r.try_get(3)?,
                stored: key.is_some(),
            },
            key,
        ))
    }

    pub async fn set_artifact_key(&self, who: &Principal, nvr: &str, file: &str, key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (bid, owner, state): (i64, i64, String) =
            sqlx::query_as("SELECT id, owner_id, state FROM builds WHERE nvr = $1")
                .bind(nvr)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
        if Some(owner) != who.id && !who.admin {
            return Err(HubError::forbidden(format!("build {nvr} belongs to another user")));
        }
        if state != "BUILDING" {
            return Err(HubError::conflict(format!(
                "build {nvr} is {state}; its files cannot change"
            )));
        }
        sqlx::query("UPDATE artifacts SET store_key = $1 WHERE build_id = $2 AND file = $3")
            .bind(key)
            .bind(bid)
            .bind(file)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// BUILDING → COMPLETE once every artifact is stored, or → FAILED/CANCELED.
    pub async fn finish_build(&self, who: &Principal, nvr: &str, state: &str) -> Result<Build> {
        let mut tx = self.begin_write().await?;
        let (bid, owner, cur): (i64, i64, String) =
            sqlx::query_as("SELECT id, owner_id, state FROM builds WHERE nvr = $1")
                .bind(nvr)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
        if Some(owner) != who.id && !who.admin {
            return Err(HubError::forbidden(format!("build {nvr} belongs to another user")));
        }
        if cur != "BUILDING" {
            return Err(HubError::conflict(format!("build {nvr} is already {cur}")));
        }
        if state == "COMPLETE" {
            let missing: Vec<String> = sqlx::query_scalar(
                "SELECT file FROM artifacts WHERE build_id = $1 AND store_key IS NULL ORDER BY file",
            )
            .bind(bid)
            .fetch_all(&mut *tx)
            .await?;
            if !missing.is_empty() {
                return Err(HubError::conflict(format!(
                    "build {nvr} cannot complete: not uploaded: {}",
                    missing.join(", ")
                )));
            }
        }
        sqlx::query("UPDATE builds SET state = $1, completion_time = $2 WHERE id = $3")
            .bind(state)
            .bind(now())
            .bind(bid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.build(nvr, false).await
    }

    /// Builds whose NVR is LIKE `pattern` (`\` escaping), newest first.
    pub async fn search_builds(&self, pattern: Option<&str>, offset: i64, limit: i64) -> Result<Page<Build>> {
        let Some(pattern) = pattern else {
            return self.list_builds(offset, limit, None).await;
        };
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE nvr LIKE $1 ESCAPE '\\'")
            .bind(pattern)
            .fetch_one(&self.read)
            .await?;
        let nvrs: Vec<String> = sqlx::query_scalar(
            "SELECT nvr FROM builds WHERE nvr LIKE $1 ESCAPE '\\' ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        let mut items = Vec::with_capacity(nvrs.len());
        for n in nvrs {
            items.push(self.build(&n, false).await?);
        }
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    /// The tags build `nvr` is tagged into now.
    pub async fn build_tags(&self, nvr: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT n.name FROM tag_listing l JOIN builds b ON b.id = l.build_id \
             JOIN tag_names n ON n.tag_id = l.tag_id AND n.revoke_event IS NULL \
             WHERE b.nvr = $1 AND l.revoke_event IS NULL ORDER BY n.name",
        )
        .bind(nvr)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn list_builds(&self, offset: i64, limit: i64, state: Option<&str>) -> Result<Page<Build>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE ($1 IS NULL OR state = $1)")
            .bind(state)
            .fetch_one(&self.read)
            .await?;
        let sql = format!(
            "SELECT {} FROM builds b JOIN users u ON u.id = b.owner_id WHERE ($1 IS NULL OR b.state = $1) \
             ORDER BY b.id DESC LIMIT $2 OFFSET $3",
            Self::BUILD_COLS
        );
        let rows = sqlx::query(&sql)
            .bind(state)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.read)
            .await?;
        let items = rows.iter().map(Self::build_row).collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    /// The newest `limit` builds, without counting them all.
    pub async fn recent_builds(&self, limit: i64) -> Result<Vec<Build>> {
        let sql = format!(
            "SELECT {} FROM builds b JOIN users u ON u.id = b.owner_id ORDER BY b.id DESC LIMIT $1",
            Self::BUILD_COLS
        );
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(Self::build_row).collect()
    }

    // Tagging: a build into a tag, out of it, and what a tag lists.

    pub async fn tag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> Result<()> {
        self.tag_build_recorded(who, tag, nvr, force, false).await.map(|_| ())
    }

    /// Tags a build as Koji's `tagBuild` does: the tagging and a CLOSED
    /// `tagBuild` task recording it, in one transaction; returns the
    /// task's id.
    pub async fn tag_build_task(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> Result<i64> {
        self.tag_build_recorded(who, tag, nvr, force, true)
            .await?
            .ok_or_else(|| HubError::internal("the tagBuild task was not recorded"))
    }

    async fn tag_build_recorded(
        &self,
        who: &Principal,
        tag: &str,
        nvr: &str,
        force: bool,
        record: bool,
    ) -> Result<Option<i64>> {
        let (mut tx, t) = self.begin_tag_change(who, tag, force).await?;
        let (bid, name, state): (i64, String, String) =
            sqlx::query_as("SELECT id, name, state FROM builds WHERE nvr = $1")
                .bind(nvr)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
        if state != "COMPLETE" {
            return Err(HubError::conflict(format!(
                "build {nvr} is {state}; only COMPLETE builds can be tagged"
            )));
        }
        Self::tag_into(&mut tx, who, tag, &t, (bid, nvr, &name), force).await?;
        let task = if record {
            let owner = who.id.ok_or_else(|| HubError::unauthorized("log in to tag builds"))?;
            let request = crate::model::TaskRequest::TagBuild(crate::model::TagBuildRequest {
                tag: t.name.clone(),
                build: nvr.to_string(),
                force,
            });
            let at = now();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO tasks (method, state, priority, channel, arch, owner_id, request, result, attempts, \
                 max_attempts, created, started, finished) \
                 VALUES ($1, 'CLOSED', 10, 'default', 'noarch', $2, $3, 'null', 1, 1, $4, $4, $4) RETURNING id",
            )
            .bind(request.method())
            .bind(owner)
            .bind(json_text(&request.to_value()))
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            Some(id)
        } else {
            None
        };
        tx.commit().await?;
        Ok(task)
    }

    /// Tags a COMPLETE build (id, NVR, package) into a tag whose
    /// permissions were checked: Koji's listing rules and one event.
    pub(super) async fn tag_into(
        tx: &mut Tx<'_, D>,
        who: &Principal,
        tag: &str,
        t: &TagRow,
        (bid, nvr, name): (i64, &str, &str),
        force: bool,
    ) -> Result<()> {
        let pk = Self::inherited_packages_tx(tx, t.id).await?;
        match pk.get(name) {
            None => {
                return Err(HubError::conflict(format!(
                    "package {name} is not in tag {tag}'s package list (add it with `kiln tag pkg add {tag} {name}`)"
                )));
            }
            Some(p) if p.blocked => {
                return Err(HubError::conflict(format!("package {name} is blocked in tag {tag}")));
            }
            Some(_) => {}
        }
        let present: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tag_listing WHERE tag_id = $1 AND build_id = $2 AND revoke_event IS NULL",
        )
        .bind(t.id)
        .bind(bid)
        .fetch_one(&mut **tx)
        .await?;
        if present > 0 && !force {
            return Err(HubError::conflict(format!(
                "build {nvr} is already in tag {tag} (use force to re-tag)"
            )));
        }
        let ev = Self::event(tx, who, &format!("tag {nvr} into {tag}")).await?;
        Self::revoke_rows(tx, ev, listing(t.id, bid)).await?;
        sqlx::query("INSERT INTO tag_listing (tag_id, build_id, create_event, package) VALUES ($1, $2, $3, $4)")
            .bind(t.id)
            .bind(bid)
            .bind(ev)
            .bind(name)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn untag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> Result<()> {
        let (mut tx, t) = self.begin_tag_change(who, tag, force).await?;
        let bid: i64 = sqlx::query_scalar("SELECT id FROM builds WHERE nvr = $1")
            .bind(nvr)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
        Self::revoke_and_commit(tx, who, &format!("untag {nvr} from {tag}"), listing(t.id, bid), || {
            HubError::not_found(format!("build {nvr} is not in tag {tag}"))
        })
        .await
    }

    /// `list-tagged`: Koji's readTaggedBuilds. The present's answers come
    /// from the read cache (`db::cache`).
    pub async fn list_tagged(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        event: Option<i64>,
    ) -> Result<Vec<TaggedOut>> {
        if let Some(e) = self.cached_tagged(tag, inherit, latest, event).await? {
            if let Some(d) = e.details.get() {
                return Ok(d.to_vec());
            }
            let d = Arc::new(self.tagged_details(e.tagged.to_vec(), None).await?);
            let _ = e.details.set(d.clone());
            self.cache.reweigh(e.key, &e);
            return Ok(d.to_vec());
        }
        let tagged = self.tagged_ids(tag, inherit, latest, event).await?;
        self.tagged_details(tagged, event).await
    }

    /// One page of `list-tagged` (`limit` entries from `offset`) and the
    /// number of entries in all: details are read for the page only.
    pub async fn list_tagged_page(
        &self,
        tag: &str,
        (inherit, latest): (bool, bool),
        event: Option<i64>,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<TaggedOut>)> {
        if let Some(e) = self.cached_tagged(tag, inherit, latest, event).await? {
            let total = e.tagged.len();
            if let Some(d) = e.details.get() {
                return Ok((total, d.iter().skip(offset).take(limit).cloned().collect()));
            }
            let page = e.tagged.iter().skip(offset).take(limit).cloned().collect();
            return Ok((total, self.tagged_details(page, None).await?));
        }
        let tagged = self.tagged_ids(tag, inherit, latest, event).await?;
        let total = tagged.len();
        let page = tagged.into_iter().skip(offset).take(limit).collect();
        Ok((total, self.tagged_details(page, event).await?))
    }

    /// `list-tagged` with every field of Koji's answer: each entry's build
    /// (ids included), the tag it is listed in (id, name) and the event
    /// that tagged it.
    pub async fn koji_list_tagged(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        event: Option<i64>,
    ) -> Result<Vec<KojiTagged>> {
        if let Some(e) = self.cached_tagged(tag, inherit, latest, event).await? {
            return Ok(self.koji_rows(&e).await?.to_vec());
        }
        let tagged = self.tagged_ids(tag, inherit, latest, event).await?;
        self.koji_tagged_details(tagged, event).await
    }

    /// An answer derived from the present's `koji_list_tagged` by `f`,
    /// kept with the cached listing: computed once per change of the tags.
    /// `None` with the cache off.
    pub async fn koji_tagged_derived(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        f: impl FnOnce(Vec<KojiTagged>) -> Arc<str>,
    ) -> Result<Option<Arc<str>>> {
        let Some(e) = self.cached_tagged(tag, inherit, latest, None).await? else {
            return Ok(None);
        };
        if let Some(d) = e.derived.get() {
            return Ok(Some(d.clone()));
        }
        let d = f(self.koji_rows(&e).await?.to_vec());
        let _ = e.derived.set(d.clone());
        self.cache.reweigh(e.key, &e);
        Ok(Some(d))
    }

    /// A cached entry's listing in Koji's shape, read once per entry.
    async fn koji_rows(&self, e: &Arc<cache::Entry>) -> Result<Arc<Vec<KojiTagged>>> {
        if let Some(k) = e.koji.get() {
            return Ok(k.clone());
        }
        let k = Arc::new(self.koji_tagged_details(e.tagged.to_vec(), None).await?);
        let _ = e.koji.set(k.clone());
        self.cache.reweigh(e.key, e);
        Ok(k)
    }

    async fn koji_tagged_details(&self, tagged: Vec<koji::Tagged>, event: Option<i64>) -> Result<Vec<KojiTagged>> {
        let mut ids: Vec<i64> = tagged.iter().filter_map(|b| b.nvr.parse().ok()).collect();
        ids.sort_unstable();
        ids.dedup();
        let builds: HashMap<i64, super::KojiBuild> = self
            .koji_builds_by_id(&ids)
            .await?
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let names = Self::tag_names(&self.read, tagged.iter().map(|b| b.tag), event).await?;
        Ok(tagged
            .into_iter()
            .filter_map(|t| {
                let b = builds.get(&t.nvr.parse::<i64>().ok()?)?.clone();
                Some((b, t.tag, names.get(&t.tag).cloned().unwrap_or_default(), t.tag_event))
            })
            .collect())
    }

    /// The present's listing of `tag` from the read cache, filled when
    /// missing or stale; `None` as of an event or with the cache off.
    async fn cached_tagged(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        event: Option<i64>,
    ) -> Result<Option<Arc<cache::Entry>>> {
        if event.is_some() || !self.cache.enabled() {
            return Ok(None);
        }
        let t = Self::tag_row(&self.read, tag, None).await?;
        let key = cache::Key {
            tag: t.id,
            inherit,
            latest,
        };
        if let Some(e) = self.cache.get(&key)
            && self.tag_version(&e.tags).await? == e.version
        {
            return Ok(Some(e));
        }
        // The walk's tags, their versions, then the answer (its own walk
        // taken again; each tag's data from the cache at its version, or
        // read), then the versions again: see `db::cache`.
        let tags = walk_tags(t.id, &self.walk_ids(t.id, false, None).await?);
        let before = self.tag_versions(&tags).await?;
        let walk = self.walk_ids(t.id, false, None).await?;
        if walk_tags(t.id, &walk) != tags {
            // The walk changed meanwhile: answered, not kept.
            let tagged = Arc::new(self.tagged_from_walk(t.id, walk, inherit, latest, None).await?);
            return Ok(Some(Arc::new(cache::Entry::new(key, tags, -1, tagged))));
        }
        let scan = if inherit {
            &tags[..]
        } else {
            std::slice::from_ref(&t.id)
        };
        let (data, read) = self.tag_data(&before, scan).await?;
        let lists = data.iter().map(|(t, d)| (*t, d.packages.clone())).collect();
        let listings = scan
            .iter()
            .filter_map(|t| Some((*t, data.get(t)?.listings.clone()?)))
            .collect();
        let tagged = Arc::new(tagged_from(t.id, walk, inherit, latest, &lists, &listings)?);
        let after = self.tag_versions(&tags).await?;
        let entry = Arc::new(cache::Entry::new(key, tags, before.values().sum(), tagged));
        if before == after {
            for tag in read {
                if let Some(d) = data.get(&tag) {
                    self.cache.insert_tag(tag, d.clone());
                }
            }
            self.cache.insert(key, entry.clone());
        }
        Ok(Some(entry))
    }

    /// The version of each of `tags` (`tag_versions`; a tag never changed
    /// is at 0).
    async fn tag_versions(&self, tags: &[i64]) -> Result<HashMap<i64, i64>> {
        let sql = format!("SELECT tag_id, n FROM tag_versions WHERE tag_id IN ({})", id_list(tags));
        let mut out: HashMap<i64, i64> = tags.iter().map(|t| (*t, 0)).collect();
        for r in sqlx::query(&sql).fetch_all(&self.read).await? {
            out.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(out)
    }

    /// The sum of the versions of `tags` (`tag_versions`; a tag never
    /// changed counts 0).
    async fn tag_version(&self, tags: &[i64]) -> Result<i64> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM tag_versions WHERE tag_id IN ({})",
            id_list(tags)
        );
        Ok(sqlx::query_scalar(&sql).fetch_one(&self.read).await?)
    }

    /// The walk and the listings of `list-tagged`, by ids: each entry's
    /// `nvr` holds its build's id.
    async fn tagged_ids(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        event: Option<i64>,
    ) -> Result<Vec<koji::Tagged>> {
        let t = Self::tag_row(&self.read, tag, event).await?;
        let walk = self.walk_ids(t.id, false, event).await?;
        self.tagged_from_walk(t.id, walk, inherit, latest, event).await
    }

    /// `tagged_ids` from the tag's walk.
    async fn tagged_from_walk(
        &self,
        tag: i64,
        walk: Vec<koji::WalkEntry>,
        inherit: bool,
        latest: bool,
        event: Option<i64>,
    ) -> Result<Vec<koji::Tagged>> {
        let mut ids = vec![tag];
        ids.extend(walk.iter().map(|w| w.link.parent));
        let lists = Self::package_lists(&self.read, &ids, event).await?;
        let scan: Vec<i64> = if inherit { ids.clone() } else { vec![tag] };
        let listings = self.listings(&scan, event).await?;
        tagged_from(tag, walk, inherit, latest, &lists, &listings)
    }

    /// The listings of `tags` by tag, each most recently tagged first.
    /// Every listed build is COMPLETE: only COMPLETE builds can be tagged,
    /// and no change takes a build out of COMPLETE. Now: the covering
    /// index's entries (the index's condition is the filter); as of an
    /// event, the rows that were current then.
    async fn listings(&self, tags: &[i64], event: Option<i64>) -> Result<HashMap<i64, Vec<koji::Tagged>>> {
        let mut listings: HashMap<i64, Vec<koji::Tagged>> = HashMap::new();
        if tags.is_empty() {
            return Ok(listings);
        }
        let from = if event.is_none() {
            D::CURRENT_LISTINGS
        } else {
            "tag_listing"
        };
        let sql = format!(
            "SELECT tag_id, {} FROM {from} WHERE tag_id IN ({}) AND {} GROUP BY tag_id",
            D::LISTINGS_JSON,
            id_list(tags),
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        for r in q.fetch_all(&self.read).await? {
            let tag_id: i64 = r.try_get(0)?;
            let json: String = r.try_get(1)?;
            let rows: Vec<(i64, i64, Option<String>)> = serde_json::from_str(&json)
                .map_err(|e| HubError::internal(format!("reading tag {tag_id}'s listings: {e}")))?;
            listings.insert(
                tag_id,
                rows.into_iter()
                    .map(|(build, tag_event, package)| koji::Tagged {
                        nvr: build.to_string(),
                        package: package.unwrap_or_default(),
                        tag: tag_id,
                        tag_event,
                        complete: true,
                    })
                    .collect(),
            );
        }
        Ok(listings)
    }

    /// Each tag's package list at its version `versions[tag]`, and the
    /// listings of the tags in `scan`: from the read cache where it holds
    /// that version, else read (the tags read are returned too, to be kept
    /// once the caller knows no change came between).
    async fn tag_data(
        &self,
        versions: &HashMap<i64, i64>,
        scan: &[i64],
    ) -> Result<(HashMap<i64, Arc<cache::TagData>>, Vec<i64>)> {
        let mut data = HashMap::new();
        let mut read = Vec::new();
        for (&tag, &n) in versions {
            match self.cache.get_tag(tag) {
                Some(d) if d.version == n && (d.listings.is_some() || !scan.contains(&tag)) => {
                    data.insert(tag, d);
                }
                _ => read.push(tag),
            }
        }
        read.sort_unstable();
        let with_listings: Vec<i64> = read.iter().copied().filter(|t| scan.contains(t)).collect();
        let mut lists = Self::package_lists(&self.read, &read, None).await?;
        let mut listings = self.listings(&with_listings, None).await?;
        for &tag in &read {
            let d = cache::TagData {
                version: versions.get(&tag).copied().unwrap_or_default(),
                packages: lists.remove(&tag).unwrap_or_default(),
                listings: scan.contains(&tag).then(|| listings.remove(&tag).unwrap_or_default()),
            };
            data.insert(tag, Arc::new(d));
        }
        Ok((data, read))
    }

    /// `tagged_ids`' entries with their builds' NVRs, owners and tag names.
    async fn tagged_details(&self, tagged: Vec<koji::Tagged>, event: Option<i64>) -> Result<Vec<TaggedOut>> {
        let mut build_ids: Vec<i64> = tagged.iter().filter_map(|b| b.nvr.parse().ok()).collect();
        build_ids.sort_unstable();
        build_ids.dedup();
        let mut info: HashMap<i64, (String, String, String, String, String)> = HashMap::new();
        for chunk in build_ids.chunks(1000) {
            let sql = format!(
                "SELECT b.id, b.nvr, b.name, b.version, b.release, u.name FROM builds b \
                 JOIN users u ON u.id = b.owner_id WHERE b.id IN ({})",
                id_list(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                info.insert(
                    r.try_get(0)?,
                    (
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ),
                );
            }
        }
        let names = Self::tag_names(&self.read, tagged.iter().map(|b| b.tag), event).await?;
        Ok(tagged
            .into_iter()
            .map(|b| {
                let (nvr, name, version, release, owner) = b
                    .nvr
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| info.get(&id).cloned())
                    .unwrap_or_default();
                TaggedOut {
                    nvr,
                    name,
                    version,
                    release,
                    tag: names.get(&b.tag).cloned().unwrap_or_default(),
                    tag_event: b.tag_event,
                    owner,
                }
            })
            .collect())
    }
}

/// Build `build`'s current listing in tag `tag`.
fn listing(tag: i64, build: i64) -> Current<'static, 2> {
    Current::new(
        "tag_listing",
        "tag_id = $2 AND build_id = $3",
        [Key::Id(tag), Key::Id(build)],
    )
}

/// A tag and the tags of its walk, sorted and without repeats.
fn walk_tags(tag: i64, walk: &[koji::WalkEntry]) -> Vec<i64> {
    let mut tags: Vec<i64> = std::iter::once(tag).chain(walk.iter().map(|w| w.link.parent)).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// `list-tagged` from a tag's walk, the package lists of the walk's tags
/// and their listings.
fn tagged_from(
    tag: i64,
    walk: Vec<koji::WalkEntry>,
    inherit: bool,
    latest: bool,
    lists: &HashMap<i64, Vec<koji::PkgEntry>>,
    listings: &HashMap<i64, Vec<koji::Tagged>>,
) -> Result<Vec<koji::Tagged>> {
    let pk = koji::inherited_packages(tag, &walk, lists)
        .map_err(|e| HubError::bad_request(format!("invalid pkg_filter in the inheritance: {e}")))?;
    let walk = if inherit { walk } else { Vec::new() };
    Ok(koji::tagged_builds(tag, &walk, inherit, latest, &pk, listings))
}
