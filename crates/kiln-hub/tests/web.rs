//! The web UI over real HTTP, on SQLite and PostgreSQL (docs/web.md):
//! every page answers HTML with its guards (content policy, no framing, no
//! caching), anonymous reading follows `--no-anonymous-read`, the login
//! form sets a hardened session cookie, every form refuses a missing or
//! wrong CSRF token before it changes anything, actions check the
//! permission on the server, uploads through the catalog's form are
//! checked like the API's, and a tag's long list of builds pages.
//! (The browser itself is driven by kiln-cli's Playwright test.)

mod common;
#[path = "common/served.rs"]
mod served;

use kiln_hub::model::{NewBuild, NewTag, PackageIn, Principal};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

/// A browser's session: its cookie and the CSRF token its pages carry.
struct Session {
    cookie: String,
    csrf: String,
}

struct Web {
    base: String,
    db_url: String,
    http: reqwest::Client,
    served: served::Served,
}

/// The value of the first `name="csrf" value="…"` in a page.
fn csrf_in(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field in the page");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

/// The `name=value` part of a `Set-Cookie` for `name`, and the whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap_or_default().to_string(), v.to_string()))
}

impl Web {
    async fn new(t: &common::TestDb, anonymous_read: bool) -> Web {
        let served = served::serve(t, anonymous_read).await;
        for (name, perms) in [("admin", vec!["admin".to_string()]), ("plain", vec![])] {
            kiln_hub::bootstrap_user(&t.url, name, Some(&format!("{name}-password")), &perms)
                .await
                .expect("user");
        }
        Web {
            base: format!("http://{}", served.addr),
            db_url: t.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            served,
        }
    }

    async fn get(&self, path: &str, s: Option<&Session>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(s) = s {
            r = r.header(COOKIE, &s.cookie);
        }
        r.send().await.expect("GET")
    }

    async fn text(&self, path: &str, s: Option<&Session>) -> (StatusCode, String) {
        let r = self.get(path, s).await;
        (r.status(), r.text().await.expect("body"))
    }

    async fn post(&self, path: &str, s: &Session, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &s.cookie)
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Logs in through the form, as a browser does.
    async fn login(&self, user: &str, password: &str) -> Session {
        let form = self.get("/login", None).await;
        let (login_cookie, _) = set_cookie(&form, "kiln_login").expect("the login form's cookie");
        let csrf = csrf_in(&form.text().await.expect("body"));
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header(COOKIE, &login_cookie)
            .form(&[
                ("user", user),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/tags"),
            ])
            .send()
            .await
            .expect("POST /login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {user}");
        assert_eq!(r.headers()[LOCATION], "/tags");
        let (cookie, _) = set_cookie(&r, "kiln_session").expect("a session cookie");
        let mut s = Session {
            cookie,
            csrf: String::new(),
        };
        let (_, page) = self.text("/", Some(&s)).await;
        assert!(page.contains(user), "the page names who is logged in");
        s.csrf = csrf_in(&page);
        s
    }

    async fn principal(&self, name: &str) -> Principal {
        let token = kiln_hub::bootstrap_user(&self.db_url, &format!("{name}-bot"), None, &["admin".into()])
            .await
            .expect("bot");
        self.served
            .hub
            .db
            .principal_by_token(&kiln_hub::auth::token_hash(&token))
            .await
            .expect("lookup")
            .expect("principal")
    }
}

/// Every read-only page, as an anonymous reader may open it.
const PAGES: [&str; 10] = [
    "/",
    "/tasks",
    "/builds",
    "/tags",
    "/targets",
    "/images",
    "/hosts",
    "/pipelines",
    "/pipelines/-/new",
    "/login",
];

both!(pages_answer_html_with_their_guards, |t| async move {
    let w = Web::new(&t, true).await;
    for p in PAGES {
        let r = w.get(p, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let h = r.headers();
        assert!(
            h[CONTENT_TYPE].to_str().unwrap_or_default().starts_with("text/html"),
            "{p}"
        );
        let csp = h["content-security-policy"].to_str().unwrap_or_default();
        for part in ["frame-ancestors 'none'", "script-src 'self'", "form-action 'self'"] {
            assert!(csp.contains(part), "{p}: {csp}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff", "{p}");
        assert!(
            h["cache-control"].to_str().unwrap_or_default().contains("no-store"),
            "{p}"
        );
        let body = r.text().await.expect("body");
        assert!(
            !body.contains("<script>"),
            "{p} has an inline script, which the policy blocks"
        );
        assert!(
            !body.contains("style=\""),
            "{p} has an inline style, which the policy blocks"
        );
        let title = body
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or_default();
        assert!(
            title.ends_with(" · kiln hub") && !title.contains('<'),
            "{p}: title {title:?}"
        );
        assert_eq!(body.matches("<main").count(), 1, "{p}: one main landmark");
    }
    for (p, kind) in [("/static/kiln.css", "text/css"), ("/static/kiln.js", "text/javascript")] {
        let r = w.get(p, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[CONTENT_TYPE].to_str().unwrap_or_default().starts_with(kind));
    }
    // Admin pages and other users' pages are not for anonymous readers.
    assert_eq!(w.get("/users", None).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(w.get("/users/admin", None).await.status(), StatusCode::UNAUTHORIZED);
    // A page that does not exist is an HTML error page with its status.
    let (s, body) = w.text("/tags/no-such-tag", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no-such-tag") && body.contains("<html"), "{body}");
});

both!(no_anonymous_read_sends_readers_to_the_login_form, |t| async move {
    let w = Web::new(&t, false).await;
    for p in PAGES.iter().filter(|p| **p != "/login") {
        let r = w.get(p, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{p}");
        let to = r.headers()[LOCATION].to_str().expect("location").to_string();
        assert!(to.starts_with("/login?next="), "{p} → {to}");
    }
    let s = w.login("plain", "plain-password").await;
    for p in PAGES {
        assert_eq!(w.get(p, Some(&s)).await.status(), StatusCode::OK, "{p} with a session");
    }
});

both!(the_session_cookie_is_hardened_and_logout_ends_it, |t| async move {
    let w = Web::new(&t, true).await;
    // The cookie's attributes, over plain HTTP and behind a TLS proxy.
    for (proto, secure) in [(None, false), (Some("https"), true)] {
        let mut r = w.http.get(format!("{}/login", w.base));
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        let form = r.send().await.expect("GET /login");
        let (login_cookie, _) = set_cookie(&form, "kiln_login").expect("cookie");
        let csrf = csrf_in(&form.text().await.expect("body"));
        let mut r = w
            .http
            .post(format!("{}/login", w.base))
            .header(COOKIE, &login_cookie)
            .form(&[
                ("user", "plain"),
                ("password", "plain-password"),
                ("csrf", csrf.as_str()),
            ]);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        let r = r.send().await.expect("POST /login");
        let (_, whole) = set_cookie(&r, "kiln_session").expect("session cookie");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(whole.contains(attr), "{whole}");
        }
        assert_eq!(whole.contains("Secure"), secure, "{whole}");
    }
    // A login form whose token is not the one its cookie carries is refused.
    let form = w.get("/login", None).await;
    let (login_cookie, _) = set_cookie(&form, "kiln_login").expect("cookie");
    let r = w
        .http
        .post(format!("{}/login", w.base))
        .header(COOKIE, &login_cookie)
        .form(&[("user", "plain"), ("password", "plain-password"), ("csrf", "forged")])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "kiln_session").is_none());
    // A wrong password: the form again, 401, no session.
    let csrf = csrf_in(&w.get("/login", None).await.text().await.expect("body"));
    let r = w
        .http
        .post(format!("{}/login", w.base))
        .header(COOKIE, &login_cookie)
        .form(&[("user", "plain"), ("password", "wrong"), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert!(matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN));
    assert!(set_cookie(&r, "kiln_session").is_none());
    // The next page after login stays on this hub.
    let s = w.login("plain", "plain-password").await;
    // Logout needs the session's token; then the session is gone.
    assert_eq!(
        w.post("/logout", &s, &[("csrf", "forged")]).await.status(),
        StatusCode::FORBIDDEN
    );
    let (_, page) = w.text("/", Some(&s)).await;
    assert!(page.contains("Log out"), "a forged logout ended the session");
    assert_eq!(
        w.post("/logout", &s, &[("csrf", &s.csrf)]).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = w.text("/", Some(&s)).await;
    assert!(
        !page.contains("Log out") && page.contains("Log in"),
        "the session outlived logout"
    );
});

both!(every_form_refuses_a_forged_token_before_it_acts, |t| async move {
    let w = Web::new(&t, true).await;
    let s = w.login("admin", "admin-password").await;
    let forms: [(&str, Vec<(&str, &str)>); 9] = [
        ("/pipelines", vec![("name", "p"), ("kind", "update")]),
        ("/pipelines/p", vec![("name", "p")]),
        ("/pipelines/p/run", vec![]),
        ("/pipelines/p/hooks/github", vec![]),
        ("/tasks/1/cancel", vec![]),
        ("/users/plain/perms", vec![("perm", "image")]),
        ("/users/plain/perms/image/revoke", vec![]),
        ("/users/plain/tokens/1/revoke", vec![]),
        ("/users/plain/tokens", vec![("label", "ci")]),
    ];
    for (path, fields) in &forms {
        for token in [None, Some("forged"), Some("")] {
            let mut f = fields.clone();
            if let Some(tok) = token {
                f.push(("csrf", tok));
            }
            let st = w.post(path, &s, &f).await.status();
            // Without the field the form does not parse (4xx); with a
            // wrong one it is refused (403). Never a success.
            assert!(st.is_client_error(), "{path} with token {token:?} answered {st}");
            if token.is_some() {
                assert_eq!(st, StatusCode::FORBIDDEN, "{path} with token {token:?}");
            }
        }
    }
    // Nothing changed.
    assert_eq!(w.served.hub.db.list_tokens("plain").await.expect("tokens").len(), 1);
    let users = w.served.hub.db.list_users().await.expect("users");
    let plain = users.iter().find(|u| u.name == "plain").expect("plain");
    assert!(plain.perms.is_empty(), "{:?}", plain.perms);
    assert!(w.served.hub.db.list_pipelines().await.expect("pipelines").is_empty());
    // The same grant with the session's token works.
    let r = w
        .post("/users/plain/perms", &s, &[("csrf", &s.csrf), ("perm", "image")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let users = w.served.hub.db.list_users().await.expect("users");
    assert_eq!(
        users.iter().find(|u| u.name == "plain").expect("plain").perms,
        ["image"]
    );
});

both!(actions_check_the_permission_on_the_server, |t| async move {
    let w = Web::new(&t, true).await;
    let plain = w.login("plain", "plain-password").await;
    let admin = w.login("admin", "admin-password").await;
    // A plain user: the admin pages and actions are refused, with a valid token.
    assert_eq!(w.get("/users", Some(&plain)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        w.get("/users/admin", Some(&plain)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(w.get("/users/plain", Some(&plain)).await.status(), StatusCode::OK);
    let st = w
        .post(
            "/users/plain/perms",
            &plain,
            &[("csrf", &plain.csrf), ("perm", "admin")],
        )
        .await
        .status();
    assert_eq!(st, StatusCode::FORBIDDEN, "a user granted themself a permission");
    // Another user's token cannot be revoked by a plain user.
    let admin_tokens = w.served.hub.db.list_tokens("admin").await.expect("tokens");
    let id = admin_tokens[0].id.to_string();
    let st = w
        .post(
            &format!("/users/admin/tokens/{id}/revoke"),
            &plain,
            &[("csrf", &plain.csrf)],
        )
        .await
        .status();
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Nor by naming it under their own page.
    let st = w
        .post(
            &format!("/users/plain/tokens/{id}/revoke"),
            &plain,
            &[("csrf", &plain.csrf)],
        )
        .await
        .status();
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        w.served.hub.db.list_tokens("admin").await.expect("tokens")[0]
            .revoked
            .is_none()
    );
    // A user's own token: revoked from their page.
    let own = w.served.hub.db.list_tokens("plain").await.expect("tokens")[0]
        .id
        .to_string();
    let st = w
        .post(
            &format!("/users/plain/tokens/{own}/revoke"),
            &plain,
            &[("csrf", &plain.csrf)],
        )
        .await
        .status();
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(
        w.served.hub.db.list_tokens("plain").await.expect("tokens")[0]
            .revoked
            .is_some()
    );
    // A new token: for oneself, shown once, and it works; not for another user.
    let r = w
        .post(
            "/users/plain/tokens",
            &plain,
            &[("csrf", &plain.csrf), ("label", "ci"), ("expires_days", "7")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("body");
    let token = page
        .split(r#"<code id="token">"#)
        .nth(1)
        .and_then(|t| t.split('<').next())
        .expect("the token on the page")
        .to_string();
    let who = w
        .http
        .get(format!("{}/api/v1/whoami", w.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("whoami")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(who["name"], "plain");
    let st = w
        .post("/users/admin/tokens", &plain, &[("csrf", &plain.csrf), ("label", "x")])
        .await
        .status();
    assert_eq!(st, StatusCode::FORBIDDEN);
    let st = w
        .post(
            "/users/plain/tokens",
            &plain,
            &[("csrf", &plain.csrf), ("expires_days", "x")],
        )
        .await
        .status();
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Edit controls: the admin sees the grant form; the user's own page does not.
    let (_, mine) = w.text("/users/plain", Some(&plain)).await;
    assert!(!mine.contains("grant-form"));
    let (_, theirs) = w.text("/users/plain", Some(&admin)).await;
    assert!(theirs.contains("grant-form"));
    // The upload form appears only with `image`, and the server refuses without it.
    let (_, images) = w.text("/images", Some(&plain)).await;
    assert!(!images.contains("upload-form"));
    let (_, images) = w.text("/images", Some(&admin)).await;
    assert!(images.contains("upload-form"));
});

/// A multipart form in the order a browser sends the upload form's fields.
fn upload_form(csrf: &str, name: &str, version: &str, file: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .text("name", name.to_string())
        .text("version", version.to_string())
        .part("file", reqwest::multipart::Part::bytes(file).file_name("image.tar"))
}

both!(the_upload_form_stores_checked_images, |t| async move {
    let w = Web::new(&t, true).await;
    let admin = w.login("admin", "admin-password").await;
    let plain = w.login("plain", "plain-password").await;
    let post = |s: &Session, form: reqwest::multipart::Form| {
        w.http
            .post(format!("{}/images", w.base))
            .header(COOKIE, &s.cookie)
            .multipart(form)
            .send()
    };
    let tar = common::images::tar_image(b"ID=web\n");
    let r = post(&admin, upload_form(&admin.csrf, "fw", "1.0", tar.clone()))
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/images#image-fw-1.0");
    let images = w.served.hub.db.images(Some("fw")).await.expect("images");
    assert_eq!(images.len(), 1);
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&tar))
    };
    assert_eq!(images[0].0.sha256, want);
    assert_eq!(images[0].0.uploader, "admin");
    // Refusals: no `image`, a forged token, the token after the file, a
    // version that exists, a bad name, a file that is no image, no file.
    let refusals: Vec<(&Session, reqwest::multipart::Form, StatusCode)> = vec![
        (
            &plain,
            upload_form(&plain.csrf, "fw", "2.0", tar.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            upload_form("forged", "fw", "2.0", tar.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            reqwest::multipart::Form::new()
                .text("name", "fw")
                .text("version", "2.0")
                .part("file", reqwest::multipart::Part::bytes(tar.clone()))
                .text("csrf", admin.csrf.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            upload_form(&admin.csrf, "fw", "1.0", tar.clone()),
            StatusCode::CONFLICT,
        ),
        (
            &admin,
            upload_form(&admin.csrf, "../fw", "2.0", tar.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            upload_form(&admin.csrf, "fw", "2.0", vec![7u8; 4096]),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            reqwest::multipart::Form::new()
                .text("csrf", admin.csrf.clone())
                .text("name", "x".repeat(10_000)),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            reqwest::multipart::Form::new()
                .text("csrf", admin.csrf.clone())
                .text("name", "fw"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (i, (s, form, want)) in refusals.into_iter().enumerate() {
        let r = post(s, form).await.expect("upload");
        assert_eq!(r.status(), want, "refusal {i}");
    }
    // Not multipart at all.
    let st = w
        .post("/images", &admin, &[("csrf", &admin.csrf), ("name", "fw")])
        .await
        .status();
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(w.served.hub.db.images(Some("fw")).await.expect("images").len(), 1);
});

both!(a_tags_builds_page_through, |t| async move {
    let w = Web::new(&t, true).await;
    let who = w.principal("pager").await;
    let db = &w.served.hub.db;
    db.create_tag(
        &who,
        &NewTag {
            name: "many".into(),
            ..Default::default()
        },
    )
    .await
    .expect("tag");
    for i in 0..130 {
        let package = format!("pkg{i:03}");
        db.set_package(
            &who,
            "many",
            &PackageIn {
                package: package.clone(),
                owner: None,
                blocked: false,
            },
            false,
        )
        .await
        .expect("package");
        let b = db
            .create_build(
                &who,
                &NewBuild {
                    name: package,
                    version: "1".into(),
                    release: "1".into(),
                    manifest: None,
                    extra: None,
                    artifacts: vec![],
                },
            )
            .await
            .expect("build");
        db.finish_build(&who, &b.nvr, "COMPLETE").await.expect("complete");
        db.tag_build(&who, "many", &b.nvr, false).await.expect("tag build");
    }
    let rows = |html: &str| html.matches("<tr><td><a href=\"/builds/pkg").count();
    let (s, first) = w.text("/tags/many", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows(&first), 100);
    assert!(first.contains("130 in all"), "the pager counts them all");
    assert!(first.contains("offset=100"), "a link to the next page");
    let (_, second) = w.text("/tags/many?offset=100", None).await;
    assert_eq!(rows(&second), 30);
    assert!(second.contains("offset=0"), "a link back");
    // The pages together are the API's whole answer.
    let all = db.list_tagged("many", false, true, None).await.expect("list");
    assert_eq!(all.len(), 130);
    for b in &all {
        assert!(
            first.contains(&format!("/builds/{}\"", b.nvr)) || second.contains(&format!("/builds/{}\"", b.nvr)),
            "{} is on neither page",
            b.nvr
        );
    }
    // An offset past the end is an empty page, not an error.
    let (s, past) = w.text("/tags/many?offset=100000", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows(&past), 0);
});
