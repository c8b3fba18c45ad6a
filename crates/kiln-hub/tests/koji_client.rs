//! The real `koji` client (koji 1.36.1) manages a hub through Koji's
//! protocol (docs/koji.md), on SQLite and PostgreSQL: each command's exact
//! output, the hub's state afterwards, and Koji's messages and exit codes
//! for the error cases. Times in outputs are masked (`<time>`).

mod common;
#[path = "common/koji.rs"]
mod koji;
#[path = "common/served.rs"]
mod served;

use kiln_hub::model::*;
use koji::{Koji, mask_times};

/// Starts a hub for the client, or skips the test without the client.
macro_rules! koji_or_skip {
    ($t:expr) => {{
        if !koji::available() {
            return;
        }
        Koji::start(&$t).await
    }};
}

both!(hello_sessions_and_users, |t| async move {
    if !koji::available() {
        return;
    }
    // Sessions that expire after 2 s, to see the client log in again.
    let k = Koji::start_with(&t, 2).await;
    let hello = k.admin(&["hello"]).await;
    let (greeting, rest) = hello.split_once('\n').expect("lines");
    assert!(greeting.ends_with(", admin!"), "{hello}");
    assert_eq!(
        rest,
        format!(
            "\nYou are using the hub at {}/kojihub (Koji 1.36.1)\nAuthenticated via password\n",
            k.url
        )
    );
    let anon = k.ok(None, &["moshimoshi"]).await;
    assert!(anon.starts_with("Not authenticated\n"), "{anon}");
    assert!(anon.lines().any(|l| l.ends_with(", anonymous user!")), "{anon}");
    assert!(!anon.contains("Authenticated via"), "{anon}");

    let wrong = k.run_password(Some(("alice", "not-her-password")), &["hello"]).await;
    assert_eq!(
        (wrong.code, wrong.error()),
        (1, "AuthError: Invalid username or password".into())
    );
    let nobody = k.run_password(Some(("nobody", "whatever-password")), &["hello"]).await;
    assert_eq!(nobody.code, 1, "{nobody:?}");

    // The client library: a session outlives its lifetime only by being
    // renewed (fault 1007, then a new login), logout ends it, and the
    // query-string form of the session works as the headers do.
    let out = k
        .python(
            r#"
import sys, time, koji, requests
s = koji.ClientSession(sys.argv[1], {"user": "tagger", "password": "tagger-password"})
s.login()
first = s.sinfo["session-id"]
print(s.getLoggedInUser()["name"], s.hasPerm("tag"), s.hasPerm("admin"))
time.sleep(3)
print(s.getLoggedInUser()["name"], s.sinfo["session-id"] != first)
s2 = koji.ClientSession(sys.argv[1], {"user": "tagger", "password": "tagger-password"})
s2.login()
sid, key = s2.sinfo["session-id"], s2.sinfo["session-key"]
body = "<?xml version='1.0'?><methodCall><methodName>getLoggedInUser</methodName><params/></methodCall>"
r = requests.post(sys.argv[1], params={"session-id": sid, "session-key": key, "callnum": 100}, data=body)
print("query-string", "tagger" in r.text, r.headers.get("Koji-Version"))
r = requests.post(sys.argv[1], params={"session-id": sid, "session-key": key + "x", "callnum": 101}, data=body)
print("bad key", "<int>1002</int>" in r.text.replace("i4", "int"), r.status_code)
r = requests.post(sys.argv[1], params={"session-id": sid, "session-key": key, "callnum": 50}, data=body)
print("old callnum", "<int>1008</int>" in r.text.replace("i4", "int"))
s.logout()
print(s.getLoggedInUser())
"#,
        )
        .await;
    assert_eq!(
        out,
        "tagger True False\ntagger True\nquery-string True 1.36.1\nbad key True 200\nold callnum True\nNone\n"
    );

    // Users and permissions as the client asks for them.
    let perms = k.ok(None, &["call", "--json-output", "getAllPerms"]).await;
    let perms: serde_json::Value = serde_json::from_str(&perms).expect("json");
    let names: Vec<&str> = perms
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in ["admin", "tag", "target", "build", "image", "host", "pipeline"] {
        assert!(names.contains(&p), "{names:?}");
    }
    let user = k.ok(None, &["call", "--json-output", "getUser", "tagger"]).await;
    let user: serde_json::Value = serde_json::from_str(&user).expect("json");
    assert_eq!(
        (user["name"].as_str(), user["status"].as_i64()),
        (Some("tagger"), Some(0))
    );
    assert_eq!(k.ok(None, &["call", "getUser", "nobody"]).await, "None\n");
    let perms = k.admin(&["list-permissions", "--user", "tagger"]).await;
    assert_eq!(perms, "Permission name   \n------------------\ntag               \n");
});

both!(tags, |t| async move {
    let k = koji_or_skip!(t);
    assert_eq!(k.admin(&["add-tag", "base", "--arches", "x86_64 aarch64"]).await, "");
    assert_eq!(
        k.admin(&["add-tag", "mid", "--parent", "base", "--arches", "x86_64"])
            .await,
        ""
    );
    // The tag permission is enough.
    assert_eq!(k.ok(Some("tagger"), &["add-tag", "dev"]).await, "");
    assert_eq!(k.admin(&["list-tags"]).await, "base\ndev\nmid\n");
    assert_eq!(k.ok(None, &["list-tags", "m*"]).await, "mid\n");
    assert_eq!(k.ok(None, &["list-tags", "*e*"]).await, "base\ndev\n");

    k.admin(&[
        "edit-tag", "dev", "--lock", "--perm", "admin", "-x", "foo=bar", "-x", "num=3",
    ])
    .await;
    assert_eq!(
        k.ok(None, &["taginfo", "dev"]).await,
        "Tag: dev [3]\nArches: None\nGroups: \nLOCKED\nRequired permission: 'admin'\nTag options:\n  \
         foo : 'bar'\n  num : 3\nCurrent repo: no active repo\nInheritance:\n"
    );
    assert_eq!(
        k.ok(None, &["taginfo", "mid"]).await,
        "Tag: mid [2]\nArches: x86_64\nGroups: \nTag options:\nCurrent repo: no active repo\nInheritance:\n  \
         0    .... base [1]\n"
    );
    k.admin(&[
        "edit-tag",
        "dev",
        "--unlock",
        "--no-perm",
        "-r",
        "foo",
        "--rename",
        "dev2",
        "--arches",
        "ppc64le",
    ])
    .await;
    let info = k.served.hub.db.tag_info("dev2", None).await.expect("renamed");
    assert_eq!(
        (info.id, info.arches.as_deref(), info.perm.as_deref(), info.locked),
        (3, Some("ppc64le"), None, false)
    );
    assert_eq!(
        info.extra.keys().collect::<Vec<_>>(),
        ["num"],
        "foo is removed: {:?}",
        info.extra
    );
    assert!(k.served.hub.db.tag_info("dev", None).await.is_err());

    assert_eq!(k.admin(&["remove-tag", "dev2"]).await, "");
    assert_eq!(k.admin(&["list-tags"]).await, "base\nmid\n");
    assert!(k.served.hub.db.tag_info("dev2", None).await.is_err());

    // Errors, as Koji reports them.
    assert_eq!(
        k.fails(None, &["taginfo", "nosuch"]).await,
        (1, "GenericError: No such tagInfo: 'nosuch'".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["remove-tag", "nosuch"]).await,
        (1, "No such tag: nosuch".into())
    );
    assert_eq!(
        k.fails(Some("alice"), &["add-tag", "x"]).await,
        (2, "error: This action requires tag or admin privileges".into())
    );
    // Past the client's own check, the hub refuses as Koji's does.
    assert_eq!(
        k.fails(Some("alice"), &["call", "createTag", "x"]).await,
        (1, "ActionNotAllowed: tag permission required".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["add-tag", "base"]).await,
        (1, "GenericError: A tag with the name base already exists".into())
    );
    assert_eq!(k.admin(&["list-tags"]).await, "base\nmid\n");
});

both!(inheritance, |t| async move {
    let k = koji_or_skip!(t);
    for tag in ["a", "b", "c", "d"] {
        k.admin(&["add-tag", tag]).await;
    }
    k.admin(&[
        "add-tag-inheritance",
        "d",
        "c",
        "--priority",
        "10",
        "--maxdepth",
        "2",
        "--pkg-filter",
        "^cam",
    ])
    .await;
    k.admin(&[
        "add-tag-inheritance",
        "d",
        "b",
        "--priority",
        "20",
        "--intransitive",
        "--noconfig",
    ])
    .await;
    k.admin(&["add-tag-inheritance", "c", "a"]).await;
    let before = "     d (4)\nMF..  ├─c (3)\n....  │  └─a (1)\n..IN  └─b (2)\n";
    assert_eq!(k.ok(None, &["list-tag-inheritance", "d"]).await, before);
    assert_eq!(
        k.ok(None, &["list-tag-inheritance", "--reverse", "a"]).await,
        "     a (1)\n....  └─c (3)\nMF..     └─d (4)\n"
    );
    let event = last_event(&k).await;

    k.admin(&[
        "edit-tag-inheritance",
        "d",
        "c",
        "--priority",
        "5",
        "--maxdepth",
        "none",
    ])
    .await;
    k.admin(&["remove-tag-inheritance", "d", "b"]).await;
    assert_eq!(
        k.ok(None, &["list-tag-inheritance", "d"]).await,
        "     d (4)\n.F..  └─c (3)\n....     └─a (1)\n"
    );
    let past = k
        .ok(None, &["list-tag-inheritance", "--event", &event.to_string(), "d"])
        .await;
    assert_eq!(
        mask_times(&past),
        format!("Querying at event {event} (<time>)\n{before}")
    );
    let links = k.served.hub.db.links("d", false, None).await.expect("links");
    assert_eq!(
        links
            .iter()
            .map(|l| (l.parent.as_str(), l.priority, l.maxdepth, l.pkg_filter.as_str()))
            .collect::<Vec<_>>(),
        [("c", 5, None, "^cam")]
    );

    // A second parent at a priority in use is refused: by the client
    // (from getInheritanceData), and past it by the hub.
    assert_eq!(
        k.fails(Some("admin"), &["add-tag-inheritance", "d", "b", "--priority", "5"])
            .await,
        (
            1,
            "Error: There is already an active inheritance with that priority on d, please specify a different \
             priority with --priority."
                .into()
        )
    );
    assert_eq!(
        k.fails(
            Some("admin"),
            &[
                "call",
                "--json-input",
                "setInheritanceData",
                "\"d\"",
                &link_json(2, "5"),
            ]
        )
        .await,
        (
            1,
            "GenericError: Multiple parent tags (b, c) cannot have the same priority value (5) on child tag d".into()
        )
    );
    // A priority the client cannot read, and one the hub cannot.
    assert_eq!(
        k.fails(Some("admin"), &["add-tag-inheritance", "d", "b", "--priority", "x"])
            .await,
        (1, "ValueError: invalid literal for int() with base 10: 'x'".into())
    );
    assert_eq!(
        k.fails(
            Some("admin"),
            &[
                "call",
                "--json-input",
                "setInheritanceData",
                "\"d\"",
                &link_json(2, "\"abc\""),
            ]
        )
        .await,
        (1, "GenericError: Invalid priority: abc".into())
    );
    // Priorities given as text are numbers; the whole list changes at once:
    // b added, c deleted in one call.
    let both = format!(
        "[{}, {{\"parent_id\": 3, \"delete link\": true}}]",
        link_json(2, "\"7\"").trim_matches(['[', ']'])
    );
    k.admin(&["call", "--json-input", "setInheritanceData", "\"d\"", &both])
        .await;
    assert_eq!(
        k.ok(None, &["list-tag-inheritance", "d"]).await,
        "     d (4)\n....  └─b (2)\n"
    );
    let data = k.ok(None, &["call", "--json-output", "getInheritanceData", "d"]).await;
    let data: serde_json::Value = serde_json::from_str(&data).expect("json");
    assert_eq!(
        (
            data[0]["parent_id"].as_i64(),
            data[0]["priority"].as_i64(),
            data[0]["child_id"].as_i64()
        ),
        (Some(2), Some(7), Some(4))
    );
    // Without the permission.
    assert_eq!(
        k.fails(
            Some("alice"),
            &["call", "--json-input", "setInheritanceData", "\"d\"", "[]"]
        )
        .await,
        (1, "ActionNotAllowed: tag permission required".into())
    );
});

/// One inheritance link to the tag with id `parent` as JSON for `koji call
/// --json-input`, its priority given as `priority` (JSON text).
fn link_json(parent: i64, priority: &str) -> String {
    format!(
        "[{{\"parent_id\": {parent}, \"priority\": {priority}, \"maxdepth\": null, \"intransitive\": false, \
         \"noconfig\": false, \"pkg_filter\": \"\"}}]"
    )
}

async fn last_event(k: &Koji) -> i64 {
    let e = k.ok(None, &["call", "--json-output", "getLastEvent"]).await;
    let e: serde_json::Value = serde_json::from_str(&e).expect("json");
    e["id"].as_i64().expect("id")
}

both!(targets, |t| async move {
    let k = koji_or_skip!(t);
    k.admin(&["add-tag", "build-tag", "--arches", "x86_64"]).await;
    k.admin(&["add-tag", "dest"]).await;
    k.admin(&["add-tag", "dest2"]).await;
    assert_eq!(k.admin(&["add-target", "fw", "build-tag", "dest"]).await, "");
    let header = "Name                           Buildroot                      Destination                   \n\
                  ---------------------------------------------------------------------------------------------\n";
    let row = |n: &str, b: &str, d: &str| format!("{n:<30} {b:<30} {d:<30}\n");
    assert_eq!(
        k.ok(None, &["list-targets"]).await,
        format!("{header}{}", row("fw", "build-tag", "dest"))
    );
    k.admin(&["edit-target", "fw", "--rename", "fw2", "--dest-tag", "dest2"])
        .await;
    assert_eq!(
        k.ok(None, &["list-targets", "--name", "fw2"]).await,
        format!("{header}{}", row("fw2", "build-tag", "dest2"))
    );
    let target = k.served.hub.db.target("fw2", None).await.expect("target");
    assert_eq!(
        (target.build_tag.as_str(), target.dest_tag.as_str()),
        ("build-tag", "dest2")
    );
    let info = k.ok(None, &["taginfo", "build-tag"]).await;
    assert!(
        info.contains("This tag is a buildroot for one or more targets\nCurrent repo: no active repo\nTargets that build from this tag:\n  fw2\n"),
        "{info}"
    );
    // A build tag needs arches (the client's check).
    assert_eq!(
        k.fails(Some("admin"), &["add-target", "t2", "dest", "dest"]).await,
        (1, "Build tag has no arches: dest".into())
    );
    let o = k.run(Some("alice"), &["add-target", "t3", "build-tag", "dest"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(
        k.fails(Some("alice"), &["call", "createBuildTarget", "t3", "build-tag", "dest"])
            .await,
        (1, "ActionNotAllowed: target permission required".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["list-targets", "--name", "nosuch"]).await,
        (2, "error: No such build target: nosuch".into())
    );

    assert_eq!(k.admin(&["remove-target", "fw2"]).await, "");
    assert_eq!(
        k.fails(None, &["list-targets"]).await,
        (2, "error: No targets were found".into())
    );
    assert!(k.served.hub.db.target("fw2", None).await.is_err());
    assert_eq!(
        k.fails(Some("admin"), &["remove-target", "fw2"]).await,
        (1, "No such build target: fw2".into())
    );
});

both!(package_lists, |t| async move {
    let k = koji_or_skip!(t);
    k.admin(&["add-tag", "base"]).await;
    k.admin(&["add-tag", "dev", "--parent", "base"]).await;
    assert_eq!(
        k.admin(&["add-pkg", "base", "cam-fw", "kernel", "tools", "--owner", "tagger"])
            .await,
        "Adding 3 packages to tag base\n"
    );
    assert_eq!(k.ok(Some("tagger"), &["block-pkg", "dev", "tools"]).await, "");
    let header = "Package                 Tag                     Extra Arches     Owner          \n\
                  ----------------------- ----------------------- ---------------- ---------------\n";
    let row = |p: &str, t: &str| format!("{p:<23} {t:<23} {:<16} {:<15}", "", "tagger");
    assert_eq!(
        k.ok(None, &["list-pkgs", "--tag", "dev"]).await,
        format!("{header}{}\n{}\n", row("cam-fw", "base"), row("kernel", "base"))
    );
    assert_eq!(
        k.ok(None, &["list-pkgs", "--tag", "dev", "--show-blocked"]).await,
        format!(
            "{header}{}\n{}\n{} [BLOCKED]\n",
            row("cam-fw", "base"),
            row("kernel", "base"),
            row("tools", "dev")
        )
    );
    assert_eq!(
        k.ok(None, &["list-pkgs", "--tag", "dev", "--noinherit"]).await,
        header.to_string(),
        "only the block is dev's own, and it is hidden"
    );
    assert_eq!(
        k.ok(None, &["list-pkgs", "--package", "kernel"]).await,
        format!("{header}{}\n", row("kernel", "base"))
    );
    assert_eq!(
        k.ok(None, &["list-pkgs"]).await,
        "Package\n-----------------------\ncam-fw\nkernel\ntools\n"
    );
    let state = k.served.hub.db.packages("dev", true, None).await.expect("packages");
    let state: Vec<(&str, &str, bool)> = state
        .iter()
        .map(|p| (p.package.as_str(), p.tag.as_str(), p.blocked))
        .collect();
    assert_eq!(
        state,
        [
            ("cam-fw", "base", false),
            ("kernel", "base", false),
            ("tools", "dev", true)
        ]
    );
    // Unblocking on the child, then removing the base entry.
    k.admin(&["unblock-pkg", "dev", "tools"]).await;
    k.admin(&["remove-pkg", "base", "tools"]).await;
    assert_eq!(
        k.fails(None, &["list-pkgs", "--tag", "dev", "--package", "tools"])
            .await,
        (1, "(no matching packages)".into())
    );

    assert_eq!(
        k.fails(Some("alice"), &["add-pkg", "base", "x", "--owner", "alice"])
            .await,
        (1, "ActionNotAllowed: tag permission required".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["add-pkg", "nosuch", "x", "--owner", "admin"])
            .await,
        (1, "No such tag: nosuch".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["add-pkg", "base", "x", "--owner", "nobody"])
            .await,
        (1, "No such user: nobody".into())
    );
    k.admin(&["edit-tag", "base", "--lock"]).await;
    let o = k
        .run(Some("tagger"), &["add-pkg", "base", "x", "--owner", "tagger"])
        .await;
    // (Koji's default policy would allow this; kiln's lock covers package lists.)
    assert_eq!((o.code, o.error()), (1, "ActionNotAllowed: tag base is locked".into()));
});

/// COMPLETE builds `name-version-1` created by `who` on the hub directly.
async fn builds(k: &Koji, who: &str, nvs: &[(&str, &str)]) {
    let p = k.principal(who).await;
    for (name, version) in nvs {
        common::fixtures::build(&k.served.hub.db, &p, name, version).await;
    }
}

both!(tagging_and_listing, |t| async move {
    let k = koji_or_skip!(t);
    k.admin(&["add-tag", "base"]).await;
    k.admin(&["add-tag", "dev", "--parent", "base"]).await;
    k.admin(&["add-pkg", "base", "cam-fw", "kernel", "modem", "--owner", "admin"])
        .await;
    builds(&k, "admin", &[("cam-fw", "1.0"), ("cam-fw", "2.0"), ("kernel", "6.1")]).await;
    builds(&k, "tagger", &[("modem", "7")]).await;

    let out = k
        .ok(
            Some("tagger"),
            &["tag-build", "base", "cam-fw-2.0-1", "kernel-6.1-1", "modem-7-1"],
        )
        .await;
    assert_eq!(out, "Created task 1\nCreated task 2\nCreated task 3\n");
    let event = last_event(&k).await;
    let out = k
        .ok(Some("tagger"), &["tag-build", "--wait", "dev", "cam-fw-1.0-1"])
        .await;
    assert_eq!(
        out,
        "Created task 4\nWatching tasks (this may be safely interrupted)...\n4 tagBuild (noarch): closed\n\n\
         4 tagBuild (noarch) completed successfully\n"
    );
    let header = "Build                                     Tag                   Built by\n\
                  ----------------------------------------  --------------------  ----------------\n";
    let row = |b: &str, t: &str, o: &str| format!("{b:<40}  {t:<20}  {o}\n");
    assert_eq!(
        k.ok(None, &["list-tagged", "dev"]).await,
        format!("{header}{}", row("cam-fw-1.0-1", "dev", "admin"))
    );
    assert_eq!(
        k.ok(None, &["list-tagged", "dev", "--inherit", "--latest"]).await,
        format!(
            "{header}{}{}{}",
            row("cam-fw-1.0-1", "dev", "admin"),
            row("kernel-6.1-1", "base", "admin"),
            row("modem-7-1", "base", "tagger")
        ),
        "dev's own cam-fw masks base's newer one"
    );
    assert_eq!(
        k.ok(None, &["list-tagged", "dev", "--inherit"]).await.lines().count(),
        2 + 4
    );
    assert_eq!(
        k.ok(None, &["list-tagged", "dev", "cam-fw", "--inherit"]).await,
        format!(
            "{header}{}{}",
            row("cam-fw-1.0-1", "dev", "admin"),
            row("cam-fw-2.0-1", "base", "admin")
        )
    );
    let past = k
        .ok(
            None,
            &["list-tagged", "dev", "--inherit", "--event", &event.to_string()],
        )
        .await;
    assert_eq!(
        mask_times(&past),
        format!(
            "Querying at event {event} (<time>)\n{header}{}{}{}",
            row("cam-fw-2.0-1", "base", "admin"),
            row("kernel-6.1-1", "base", "admin"),
            row("modem-7-1", "base", "tagger")
        )
    );
    let state = k
        .served
        .hub
        .db
        .list_tagged("dev", true, true, None)
        .await
        .expect("tagged");
    assert_eq!(state.len(), 3);

    // Errors: tagged already, unknown build, no permission, a locked tag.
    assert_eq!(
        k.fails(Some("admin"), &["tag-build", "dev", "cam-fw-1.0-1"]).await,
        (1, "TagError: build cam-fw-1.0-1 already tagged (dev)".into())
    );
    assert_eq!(
        k.fails(Some("admin"), &["tag-build", "dev", "nope-1-1"]).await,
        (1, "GenericError: No such build: 'nope-1-1'".into())
    );
    assert_eq!(
        k.fails(Some("alice"), &["tag-build", "dev", "kernel-6.1-1"]).await,
        (1, "ActionNotAllowed: tag permission required".into())
    );
    k.admin(&["edit-tag", "dev", "--lock"]).await;
    assert_eq!(
        k.fails(Some("tagger"), &["untag-build", "dev", "cam-fw-1.0-1"]).await,
        (1, "ActionNotAllowed: tag is locked".into())
    );
    k.admin(&["edit-tag", "dev", "--unlock"]).await;

    assert_eq!(k.ok(Some("tagger"), &["untag-build", "dev", "cam-fw-1.0-1"]).await, "");
    assert_eq!(
        k.fails(Some("tagger"), &["untag-build", "dev", "cam-fw-1.0-1"]).await,
        (1, "Build cam-fw-1.0-1 not in tag dev".into())
    );
    assert_eq!(
        k.ok(None, &["list-tagged", "dev", "--inherit", "--latest", "cam-fw"])
            .await,
        format!("{header}{}", row("cam-fw-2.0-1", "base", "admin"))
    );
    assert_eq!(
        k.fails(None, &["list-tagged", "nosuch"]).await,
        (2, "error: No such tag: nosuch".into())
    );
});

both!(builds_tasks_and_history, |t| async move {
    let k = koji_or_skip!(t);
    k.admin(&["add-tag", "base", "--arches", "x86_64"]).await;
    k.admin(&["add-target", "fw", "base", "base"]).await;
    k.admin(&["add-pkg", "base", "cam-fw", "--owner", "admin"]).await;
    builds(&k, "admin", &[("cam-fw", "1.0"), ("cam-fw", "2.0")]).await;
    builds(&k, "tagger", &[("modem", "7")]).await;
    k.admin(&["tag-build", "base", "cam-fw-2.0-1"]).await;

    let header = "Build                                                    Built by          State\n\
                  -------------------------------------------------------  ----------------  ----------------\n";
    let row = |b: &str, o: &str| format!("{b:<55}  {o:<16}  COMPLETE\n");
    assert_eq!(
        k.ok(None, &["list-builds", "--package", "cam-fw"]).await,
        format!(
            "{header}{}{}",
            row("cam-fw-1.0-1", "admin"),
            row("cam-fw-2.0-1", "admin")
        )
    );
    assert_eq!(
        k.ok(None, &["list-builds", "--owner", "tagger", "--state", "1"]).await,
        format!("{header}{}", row("modem-7-1", "tagger"))
    );
    assert_eq!(
        k.ok(
            None,
            &[
                "list-builds",
                "--prefix",
                "cam",
                "--after",
                "2000-01-01",
                "--sort-key",
                "nvr",
                "--reverse"
            ]
        )
        .await,
        format!(
            "{header}{}{}",
            row("cam-fw-2.0-1", "admin"),
            row("cam-fw-1.0-1", "admin")
        )
    );
    let o = k.run(None, &["list-builds", "--state", "0"]).await;
    assert_eq!((o.code, o.stdout.as_str()), (0, header), "{o:?}");
    assert_eq!(
        mask_times(&k.ok(None, &["buildinfo", "cam-fw-2.0-1"]).await),
        "BUILD: cam-fw-2.0-1 [2]\nState: COMPLETE\nBuilt by: admin\nVolume: DEFAULT\nTask: none\n\
         Finished: <time>\nTags: base\n"
    );
    assert_eq!(
        k.fails(None, &["buildinfo", "nope-1-1"]).await,
        (1, "No such build: nope-1-1".into())
    );

    // An open build task and an update task, submitted through kiln.
    let admin = k.principal("admin").await;
    let build = k
        .served
        .hub
        .db
        .submit_task(
            &admin,
            &NewTask::new(TaskRequest::Build(BuildRequest {
                target: "fw".into(),
                image: "ve/minimal".into(),
                repo: "git+https://git.example/profiles.git@0123456789abcdef0123456789abcdef01234567".into(),
                defines: vec![],
                scratch: false,
                nvr: None,
            })),
        )
        .await
        .expect("submit");
    assert_eq!(build.id, 2);
    let tasks = k.ok(None, &["list-tasks"]).await;
    assert_eq!(
        tasks,
        "ID       Pri  Owner                State    Arch       Name\n\
         2        20   admin                FREE     noarch     build (fw, /profiles.git:ve/minimal:0123456789abcdef0123456789abcdef01234567)\n"
    );
    assert_eq!(
        k.ok(None, &["list-tasks", "--method", "tagBuild"]).await,
        "(no tasks)\n"
    );
    assert_eq!(
        mask_times(&k.ok(None, &["taskinfo", "-v", "2"]).await),
        "Task: 2\nType: build\nRequest Parameters:\n  Source: \
         git+https://git.example/profiles.git?ve/minimal#0123456789abcdef0123456789abcdef01234567\n  \
         Build Target: fw\nOwner: admin\nState: free\nCreated: <time>\nLog Files:\n  No outputs reported [1]\n\
         Output:\n  No outputs reported [1]\n[1] Not all tasks produce outputs, and task outputs are not \
         retained indefinitely.\n\n"
    );
    assert_eq!(
        mask_times(&k.ok(None, &["taskinfo", "1"]).await),
        "Task: 1\nType: tagBuild\nOwner: admin\nState: closed\nCreated: <time>\nStarted: <time>\n\
         Finished: <time>\nLog Files:\n  No outputs reported [1]\nOutput:\n  No outputs reported [1]\n\
         [1] Not all tasks produce outputs, and task outputs are not retained indefinitely.\n\n"
    );
    assert_eq!(
        k.fails(None, &["taskinfo", "99"]).await,
        (1, "GenericError: No such task: 99".into())
    );
    // kiln's task state is the one Koji's client sees.
    let cancel = k.served.hub.db.cancel_task(&admin, build.id).await.expect("cancel");
    assert_eq!(cancel.state, "CANCELED");
    assert_eq!(k.ok(None, &["list-tasks"]).await, "(no tasks)\n");

    // History: Koji's rows, with who and what.
    let history = mask_times(&k.ok(None, &["list-history", "--tag", "base"]).await);
    assert_eq!(
        history,
        "<time> new tag: base by admin [still active]\n\
         <time> new build target: fw by admin [still active]\n\
         <time> package owner admin set for cam-fw in base by admin [still active]\n\
         <time> package list entry created: cam-fw in base by admin [still active]\n\
         <time> cam-fw-2.0-1 tagged into base by admin [still active]\n"
    );
    let o = k.run(None, &["list-history", "--build", "nope-1-1"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        mask_times(&k.ok(None, &["list-history", "--build", "cam-fw-2.0-1"]).await),
        "<time> cam-fw-2.0-1 tagged into base by admin [still active]\n"
    );
    // `call` answers any method, keyword arguments included.
    let called = k
        .ok(
            None,
            &[
                "call",
                "--json-output",
                "listTagged",
                "base",
                "latest=True",
                "package=cam-fw",
            ],
        )
        .await;
    let called: serde_json::Value = serde_json::from_str(&called).expect("json");
    assert_eq!(called[0]["nvr"], "cam-fw-2.0-1");
    assert_eq!(called[0]["tag_name"], "base");
    assert_eq!(
        k.fails(None, &["call", "noSuchMethod"]).await,
        (1, "GenericError: Invalid method: noSuchMethod".into())
    );
    let o = k.run(None, &["call", "getTag", "base", "bogus=1"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error().starts_with("ParameterError: "), "{o:?}");
});
