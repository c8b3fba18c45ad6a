//! One method per endpoint of `/api/v1` (docs/hub.md), grouped as the API
//! is: status and login, users and tokens, tags (inheritance, packages,
//! tagged builds), builds, targets, source images, builders, tasks.
//! Listings the hub pages are read to the end. A name or file name a
//! method puts in the URL's path is checked first ([`crate::names`]): a bad
//! one is refused before anything is sent, with the hub's own message (in
//! a path, `.` and `..` would be normalised away and tabs and newlines
//! dropped, so the request would reach another resource).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::client::{Client, ClientError, Method, Result};
use crate::model::*;
use crate::names;

type Query = Vec<(&'static str, String)>;

fn event(e: Option<i64>) -> Query {
    e.map(|e| ("event", e.to_string())).into_iter().collect()
}

fn flag(q: &mut Query, name: &'static str, on: bool) {
    if on {
        q.push((name, "true".into()));
    }
}

fn forced(force: bool) -> Query {
    let mut q = Query::new();
    flag(&mut q, "force", force);
    q
}

/// A refusal made here, before sending: no status, the hub's code.
fn refused(message: String) -> ClientError {
    ClientError {
        status: None,
        code: "bad_request".into(),
        message,
    }
}

/// Checks the names a path carries, each with what it names.
pub(crate) fn check_names(checks: &[(&str, &str)]) -> Result<()> {
    checks
        .iter()
        .try_for_each(|(kind, name)| names::check_name(kind, name).map_err(refused))
}

/// Checks a file name a path carries.
fn file_name(file: &str) -> Result<()> {
    names::check_file_name(file).map_err(refused)
}

const USER: &str = "user name";
const TAG: &str = "tag name";
const NVR: &str = "NVR";
const TARGET: &str = "target name";

/// What `GET /tags/{tag}/builds` lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaggedQuery {
    /// Include builds inherited from parent tags.
    pub inherit: bool,
    /// Only the latest build of each package.
    pub latest: bool,
    /// As of this event.
    pub event: Option<i64>,
}

/// Largest page the hub serves.
const PAGE: usize = 1000;

impl Client {
    /// Every item of a paginated listing, page by page.
    fn every_page<T: DeserializeOwned>(&self, segments: &[&str], query: Query) -> Result<Vec<T>> {
        let mut all = Vec::new();
        loop {
            let mut q = query.clone();
            q.extend([("offset", all.len().to_string()), ("limit", PAGE.to_string())]);
            let p: Page<T> = self.get(segments, &q)?;
            let n = p.items.len();
            all.extend(p.items);
            if n == 0 || all.len() as i64 >= p.total {
                return Ok(all);
            }
        }
    }

    /// A call whose answer is empty (204) or not needed.
    fn act<B: serde::Serialize>(&self, m: Method, segments: &[&str], query: &Query, body: Option<&B>) -> Result<()> {
        self.call::<B, serde_json::Value>(m, segments, query, body).map(drop)
    }

    // ---- status and login ------------------------------------------------

    pub fn status(&self) -> Result<Status> {
        self.get(&["status"], &[])
    }

    pub fn whoami(&self) -> Result<WhoAmI> {
        self.get(&["whoami"], &[])
    }

    /// Exchanges a user's password for a new token.
    pub fn login(&self, l: &LoginIn) -> Result<NewToken> {
        self.call(Method::Post, &["login"], &[], Some(l))
    }

    // ---- users and tokens ------------------------------------------------

    pub fn users(&self) -> Result<Vec<User>> {
        self.get(&["users"], &[])
    }

    pub fn create_user(&self, u: &NewUser) -> Result<UserCreated> {
        self.call(Method::Post, &["users"], &[], Some(u))
    }

    pub fn grant(&self, user: &str, perm: &str) -> Result<()> {
        check_names(&[(USER, user)])?;
        let body = PermIn { perm: perm.into() };
        self.act(Method::Post, &["users", user, "perms"], &Query::new(), Some(&body))
    }

    pub fn revoke(&self, user: &str, perm: &str) -> Result<()> {
        check_names(&[(USER, user), ("permission", perm)])?;
        self.act::<()>(Method::Delete, &["users", user, "perms", perm], &Query::new(), None)
    }

    pub fn tokens(&self, user: &str) -> Result<Vec<TokenInfo>> {
        check_names(&[(USER, user)])?;
        self.get(&["users", user, "tokens"], &[])
    }

    pub fn create_token(&self, user: &str, t: &TokenIn) -> Result<NewToken> {
        check_names(&[(USER, user)])?;
        self.call(Method::Post, &["users", user, "tokens"], &[], Some(t))
    }

    pub fn revoke_token(&self, id: i64) -> Result<()> {
        self.act::<()>(Method::Delete, &["tokens", &id.to_string()], &Query::new(), None)
    }

    // ---- tags --------------------------------------------------------------

    /// Every tag (as of `at`).
    pub fn tags(&self, at: Option<i64>) -> Result<Vec<TagInfo>> {
        self.every_page(&["tags"], event(at))
    }

    pub fn create_tag(&self, t: &NewTag) -> Result<TagInfo> {
        self.call(Method::Post, &["tags"], &[], Some(t))
    }

    pub fn tag(&self, name: &str, at: Option<i64>) -> Result<TagInfo> {
        check_names(&[(TAG, name)])?;
        self.get(&["tags", name], &event(at))
    }

    pub fn edit_tag(&self, name: &str, e: &TagEdit) -> Result<TagInfo> {
        check_names(&[(TAG, name)])?;
        self.call(Method::Patch, &["tags", name], &[], Some(e))
    }

    pub fn delete_tag(&self, name: &str) -> Result<()> {
        check_names(&[(TAG, name)])?;
        self.act::<()>(Method::Delete, &["tags", name], &Query::new(), None)
    }

    /// Every change to a tag; with `at`, up to that event, of the tag
    /// that had the name then (a tag deleted since, or renamed).
    pub fn tag_history(&self, name: &str, at: Option<i64>) -> Result<Vec<HistoryEntry>> {
        check_names(&[(TAG, name)])?;
        self.get(&["tags", name, "history"], &event(at))
    }

    /// A tag's direct parents (children with `reverse`).
    pub fn links(&self, tag: &str, reverse: bool, at: Option<i64>) -> Result<Vec<LinkOut>> {
        check_names(&[(TAG, tag)])?;
        let mut q = event(at);
        flag(&mut q, "reverse", reverse);
        self.get(&["tags", tag, "inheritance"], &q)
    }

    /// A tag's whole inheritance walk, with depths.
    pub fn full_inheritance(&self, tag: &str, reverse: bool, at: Option<i64>) -> Result<Vec<WalkOut>> {
        check_names(&[(TAG, tag)])?;
        let mut q = event(at);
        flag(&mut q, "full", true);
        flag(&mut q, "reverse", reverse);
        self.get(&["tags", tag, "inheritance"], &q)
    }

    pub fn add_link(&self, child: &str, l: &LinkIn) -> Result<Vec<LinkOut>> {
        check_names(&[(TAG, child)])?;
        self.call(Method::Post, &["tags", child, "inheritance"], &[], Some(l))
    }

    pub fn edit_link(&self, child: &str, parent: &str, e: &LinkEdit) -> Result<Vec<LinkOut>> {
        check_names(&[(TAG, child), (TAG, parent)])?;
        self.call(Method::Patch, &["tags", child, "inheritance", parent], &[], Some(e))
    }

    pub fn remove_link(&self, child: &str, parent: &str) -> Result<Vec<LinkOut>> {
        check_names(&[(TAG, child), (TAG, parent)])?;
        self.call::<(), _>(Method::Delete, &["tags", child, "inheritance", parent], &[], None)
    }

    /// Arches and extra through the inheritance, with where each came from.
    pub fn build_config(&self, tag: &str, at: Option<i64>) -> Result<BuildConfigOut> {
        check_names(&[(TAG, tag)])?;
        self.get(&["tags", tag, "config"], &event(at))
    }

    pub fn packages(&self, tag: &str, inherit: bool, at: Option<i64>) -> Result<Vec<PackageOut>> {
        check_names(&[(TAG, tag)])?;
        let mut q = event(at);
        flag(&mut q, "inherit", inherit);
        self.get(&["tags", tag, "packages"], &q)
    }

    /// Adds (or blocks) a package on a tag's own list.
    pub fn set_package(&self, tag: &str, p: &PackageIn, force: bool) -> Result<()> {
        check_names(&[(TAG, tag)])?;
        self.act(Method::Post, &["tags", tag, "packages"], &forced(force), Some(p))
    }

    pub fn remove_package(&self, tag: &str, package: &str, force: bool) -> Result<()> {
        check_names(&[(TAG, tag), ("package name", package)])?;
        self.act::<()>(
            Method::Delete,
            &["tags", tag, "packages", package],
            &forced(force),
            None,
        )
    }

    pub fn tagged(&self, tag: &str, q: TaggedQuery) -> Result<Vec<TaggedOut>> {
        check_names(&[(TAG, tag)])?;
        let mut query = event(q.event);
        flag(&mut query, "latest", q.latest);
        flag(&mut query, "inherit", q.inherit);
        self.get(&["tags", tag, "builds"], &query)
    }

    pub fn tag_build(&self, tag: &str, t: &TagBuildIn) -> Result<()> {
        check_names(&[(TAG, tag)])?;
        self.act(Method::Post, &["tags", tag, "builds"], &Query::new(), Some(t))
    }

    pub fn untag_build(&self, tag: &str, nvr: &str, force: bool) -> Result<()> {
        check_names(&[(TAG, tag), (NVR, nvr)])?;
        self.act::<()>(Method::Delete, &["tags", tag, "builds", nvr], &forced(force), None)
    }

    // ---- builds ------------------------------------------------------------

    /// Every build (in `state`, if given).
    pub fn builds(&self, state: Option<&str>) -> Result<Vec<Build>> {
        let q = state.map(|s| ("state", s.to_string())).into_iter().collect();
        self.every_page(&["builds"], q)
    }

    pub fn create_build(&self, b: &NewBuild) -> Result<Build> {
        self.call(Method::Post, &["builds"], &[], Some(b))
    }

    pub fn build(&self, nvr: &str) -> Result<Build> {
        check_names(&[(NVR, nvr)])?;
        self.get(&["builds", nvr], &[])
    }

    /// Ends a build: COMPLETE, FAILED or CANCELED.
    pub fn set_build_state(&self, nvr: &str, state: &str) -> Result<Build> {
        check_names(&[(NVR, nvr)])?;
        let body = StateIn { state: state.into() };
        self.call(Method::Post, &["builds", nvr, "state"], &[], Some(&body))
    }

    /// Streams an artifact the build declared.
    pub fn upload_artifact(&self, nvr: &str, file: &str, path: &Path, sha256: &str) -> Result<Uploaded> {
        check_names(&[(NVR, nvr)])?;
        file_name(file)?;
        self.upload(&["builds", nvr, "files", file], path, sha256)
    }

    /// Downloads an artifact into `dest`, verified; returns its sha256.
    pub fn download_artifact(&self, nvr: &str, file: &str, dest: &Path) -> Result<String> {
        check_names(&[(NVR, nvr)])?;
        file_name(file)?;
        self.download(&["builds", nvr, "files", file], dest)
    }

    // ---- targets -----------------------------------------------------------

    pub fn targets(&self) -> Result<Vec<Target>> {
        self.get(&["targets"], &[])
    }

    pub fn create_target(&self, t: &Target) -> Result<Target> {
        self.call(Method::Post, &["targets"], &[], Some(t))
    }

    pub fn target(&self, name: &str, at: Option<i64>) -> Result<Target> {
        check_names(&[(TARGET, name)])?;
        self.get(&["targets", name], &event(at))
    }

    /// Creates or replaces a target as a whole.
    pub fn apply_target(&self, t: &Target) -> Result<Target> {
        check_names(&[(TARGET, &t.name)])?;
        self.call(Method::Put, &["targets", &t.name], &[], Some(t))
    }

    pub fn edit_target(&self, name: &str, e: &TargetEdit) -> Result<Target> {
        check_names(&[(TARGET, name)])?;
        self.call(Method::Patch, &["targets", name], &[], Some(e))
    }

    pub fn delete_target(&self, name: &str) -> Result<()> {
        check_names(&[(TARGET, name)])?;
        self.act::<()>(Method::Delete, &["targets", name], &Query::new(), None)
    }

    /// The macro layers the target gives a build.
    pub fn target_macros(&self, name: &str) -> Result<MacroLayers> {
        check_names(&[(TARGET, name)])?;
        self.get(&["targets", name, "macros"], &[])
    }

    // ---- source images -----------------------------------------------------

    /// Every source image (of `name`, if given).
    pub fn images(&self, name: Option<&str>) -> Result<Vec<Image>> {
        let q: Query = name.map(|n| ("name", n.to_string())).into_iter().collect();
        self.get(&["images"], &q)
    }

    pub fn image(&self, name: &str, version: &str) -> Result<Image> {
        check_names(&[("image name", name), ("image version", version)])?;
        self.get(&["images", name, version], &[])
    }

    pub fn upload_image(&self, name: &str, version: &str, path: &Path, sha256: &str) -> Result<Image> {
        check_names(&[("image name", name), ("image version", version)])?;
        self.upload(&["images", name, version, "upload"], path, sha256)
    }

    /// Downloads a source image into `dest`, verified; returns its sha256.
    pub fn download_image(&self, name: &str, version: &str, dest: &Path) -> Result<String> {
        check_names(&[("image name", name), ("image version", version)])?;
        self.download(&["images", name, version, "blob"], dest)
    }

    pub fn remove_image(&self, name: &str, version: &str) -> Result<()> {
        check_names(&[("image name", name), ("image version", version)])?;
        self.act::<()>(Method::Delete, &["images", name, version], &Query::new(), None)
    }

    // ---- builders ------------------------------------------------------------

    pub fn hosts(&self) -> Result<Vec<HostInfo>> {
        self.get(&["hosts"], &[])
    }

    /// Registers a builder; the answer holds its token, shown once.
    pub fn create_host(&self, h: &NewHost) -> Result<HostToken> {
        self.call(Method::Post, &["hosts"], &[], Some(h))
    }

    /// A builder's heartbeat (with a host token).
    pub fn heartbeat(&self) -> Result<Heartbeat> {
        self.call::<(), _>(Method::Post, &["host", "heartbeat"], &[], None)
    }

    /// A builder claims the next task it can run, if any.
    pub fn claim(&self) -> Result<Option<Task>> {
        self.call::<(), _>(Method::Post, &["host", "claim"], &[], None)
    }

    // ---- tasks -----------------------------------------------------------------

    /// Every task (in `state`, if given).
    pub fn tasks(&self, state: Option<&str>) -> Result<Vec<Task>> {
        let q = state.map(|s| ("state", s.to_string())).into_iter().collect();
        self.every_page(&["tasks"], q)
    }

    pub fn submit_task(&self, t: &NewTask) -> Result<Task> {
        self.call(Method::Post, &["tasks"], &[], Some(t))
    }

    pub fn task(&self, id: i64) -> Result<Task> {
        self.get(&["tasks", &id.to_string()], &[])
    }

    pub fn cancel_task(&self, id: i64) -> Result<Task> {
        self.call::<(), _>(Method::Post, &["tasks", &id.to_string(), "cancel"], &[], None)
    }

    /// A builder reports a task's end.
    pub fn finish_task(&self, id: i64, r: &TaskReport) -> Result<Task> {
        self.call(Method::Post, &["tasks", &id.to_string(), "result"], &[], Some(r))
    }

    /// A builder hands a task back to the queue.
    pub fn release_task(&self, id: i64) -> Result<Task> {
        self.call::<(), _>(Method::Post, &["tasks", &id.to_string(), "release"], &[], None)
    }

    /// The task's log after chunk `after`.
    pub fn task_log(&self, id: i64, after: i64) -> Result<TaskLogOut> {
        self.get(&["tasks", &id.to_string(), "log"], &[("after", after.to_string())])
    }

    /// A builder appends to its task's log.
    pub fn append_log(&self, id: i64, text: String) -> Result<()> {
        self.post_text(&["tasks", &id.to_string(), "log"], text)
    }

    /// A builder streams a file of its task's current attempt.
    pub fn upload_task_file(&self, id: i64, file: &str, path: &Path, sha256: &str) -> Result<Uploaded> {
        file_name(file)?;
        self.upload(&["tasks", &id.to_string(), "files", file], path, sha256)
    }

    /// Downloads a file a task kept into `dest`, verified; returns its sha256.
    pub fn download_task_file(&self, id: i64, file: &str, dest: &Path) -> Result<String> {
        file_name(file)?;
        self.download(&["tasks", &id.to_string(), "files", file], dest)
    }
}
