//! Hub data written on the database directly, for tests that need a
//! fixture rather than the API's checks: an admin, links, package list
//! entries, complete builds.

use kiln_hub::db::Db;
use kiln_hub::model::{LinkIn, NewBuild, PackageIn, Principal};

/// An admin user created on the database directly.
pub async fn admin(db: &Db) -> Principal {
    let boot = Principal {
        id: None,
        name: "test".into(),
        admin: true,
        perms: vec![],
        host: None,
    };
    let id = db
        .create_user(&boot, "admin", None, &["admin".to_string()], "user")
        .await
        .expect("user");
    db.user_principal(id).await.expect("principal")
}

/// Links `child` to `parent` at `priority`, `f` setting the rest.
pub async fn link(db: &Db, a: &Principal, child: &str, parent: &str, priority: i64, f: impl FnOnce(&mut LinkIn)) {
    let mut l = LinkIn {
        parent: parent.into(),
        priority,
        maxdepth: None,
        intransitive: false,
        noconfig: false,
        pkg_filter: String::new(),
    };
    f(&mut l);
    db.add_link(a, child, &l).await.expect("link");
}

/// An entry for `name` in `tag`'s package list.
pub async fn package(db: &Db, a: &Principal, tag: &str, name: &str, blocked: bool) {
    let p = PackageIn {
        package: name.into(),
        owner: None,
        blocked,
    };
    db.set_package(a, tag, &p, false).await.expect("package");
}

/// A COMPLETE build `name-version-1` with no files: its NVR.
pub async fn build(db: &Db, a: &Principal, name: &str, version: &str) -> String {
    let b = db
        .create_build(
            a,
            &NewBuild {
                name: name.into(),
                version: version.into(),
                release: "1".into(),
                manifest: None,
                extra: None,
                artifacts: vec![],
            },
        )
        .await
        .expect("build");
    db.finish_build(a, &b.nvr, "COMPLETE").await.expect("complete");
    b.nvr
}
