use proptest::prelude::*;

use super::*;

#[test]
fn ref_globs() {
    let cases = [
        ("main", "main", true),
        ("main", "mainline", false),
        ("main", "xmain", false),
        ("release/*", "release/1.2", true),
        ("release/*", "release/", true),
        ("release/*", "release/1/hotfix", false),
        ("release/*", "release", false),
        ("release/**", "release/1/hotfix", true),
        ("release/**", "release/1", true),
        ("release/**", "releases/1", false),
        ("**", "any/thing/at/all", true),
        ("*", "feature/x", false),
        ("*", "", true),
        ("v*", "v1.2.3", true),
        ("v*", "1.2.3", false),
        ("v?.?", "v1.2", true),
        ("v?.?", "v1.22", false),
        ("a?b", "a/b", false),
        ("**/fix", "fix", true),
        ("**/fix", "team/a/fix", true),
        ("**/fix", "team/afix", false),
        ("feature/**/wip", "feature/wip", true),
        ("feature/**/wip", "feature/a/b/wip", true),
        ("feature/**/wip", "feature/awip", false),
        ("*-rc*", "v2-rc1", true),
        ("*/*", "a/b", true),
        ("*/*", "a/b/c", false),
        ("d[1]", "d[1]", true),
        ("d.+", "d.+", true),
        ("d.+", "dx+", false),
        ("дом/*", "дом/ветка", true),
        ("*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(200), false),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(glob_match(pattern, name), expected, "{pattern} vs {name}");
    }
}

#[test]
fn ref_filter_admits_and_explains() {
    let f = RefFilter {
        branches: vec!["main".into(), "release/*".into()],
        tags: vec!["v*".into()],
    };
    f.check().expect("good patterns");
    assert_eq!(f.admit("refs/heads/main"), Ok(()));
    assert_eq!(f.admit("refs/heads/release/2024.06"), Ok(()));
    assert_eq!(f.admit("refs/tags/v1.2"), Ok(()));
    assert_eq!(
        f.admit("refs/heads/dev"),
        Err("refs/heads/dev matches no branch pattern (main, release/*)".into())
    );
    // A branch named like a tag pattern is still a branch.
    assert!(f.admit("refs/heads/v1").is_err());
    assert!(f.admit("refs/tags/main").is_err());
    assert!(f.admit("refs/notes/commits").is_err());
    let none = RefFilter {
        branches: vec!["main".into()],
        tags: vec![],
    };
    let m = none.admit("refs/tags/v1").expect_err("no tags");
    assert!(m.contains("runs for no tag"), "{m}");
    let many = RefFilter {
        branches: (0..30).map(|i| format!("b{i}")).collect(),
        tags: vec![],
    };
    let m = many.admit("refs/heads/x").expect_err("no match");
    assert!(m.contains("… 20 more") && !m.contains("b10"), "{m}");
}

#[test]
fn ref_filter_checks_its_patterns() {
    let long = "x".repeat(MAX_PATTERN + 1);
    let ok = [
        "main",
        "release/*",
        "**",
        "**/fix",
        "v?.*",
        "feature/**/wip",
        "дом",
        "user@host",
    ];
    let bad = [
        ("", "empty"),
        (long.as_str(), "more than 200"),
        ("refs/heads/main", "full ref name"),
        ("ma in", "` `"),
        ("a~1", "`~`"),
        ("x:y", "`:`"),
        ("[abc]", "`[`"),
        ("a\\b", "`\\`"),
        ("a\tb", "`\\t`"),
        ("a\u{202e}b", "`\\u{202e}`"),
        ("***", "`***`"),
        ("a..b", "`..`"),
        ("a//b", "`//`"),
        ("/main", "`/`"),
        ("release/", "`/`"),
    ];
    for p in ok {
        let f = RefFilter {
            branches: vec![p.into()],
            tags: vec![p.into()],
        };
        assert_eq!(f.check(), Ok(()), "{p}");
    }
    for (p, needle) in bad {
        for f in [
            RefFilter {
                branches: vec!["main".into(), p.into()],
                tags: vec![],
            },
            RefFilter {
                branches: vec![],
                tags: vec![p.into()],
            },
        ] {
            let m = f.check().expect_err(p);
            assert!(m.contains(needle), "{p:?}: {m} (wanted {needle})");
        }
    }
    let too_many = RefFilter {
        branches: vec!["main".into(); MAX_PATTERNS + 1],
        tags: vec![],
    };
    assert!(too_many.check().expect_err("too many").contains("more than 100"));
}

#[test]
fn check_ref_follows_git_and_refuses_more() {
    let longest = format!("refs/heads/{}", "a".repeat(MAX_REF_BYTES - "refs/heads/".len()));
    let too_long = format!("{longest}a");
    let good = [
        "refs/heads/main",
        "refs/heads/release/2024.06",
        "refs/heads/feature/JIRA-12_fix+more",
        "refs/heads/a.b",
        "refs/heads/@",
        "refs/heads/user@example",
        "refs/heads/ветка",
        "refs/heads/x.lockfile",
        "refs/heads/HEAD",
        "refs/tags/v1.2",
        "refs/tags/v1.2-rc.1",
        longest.as_str(),
    ];
    for r in good {
        assert_eq!(check_ref(r), Ok(()), "{r}");
    }
    let bad = [
        ("", "empty"),
        (too_long.as_str(), "256 bytes"),
        ("main", "neither"),
        ("refs/remotes/origin/main", "neither"),
        ("refs/heads/", "empty"),
        ("refs/tags/", "empty"),
        ("refs/heads/a..b", "`..`"),
        ("refs/heads/a b", "` `"),
        ("refs/heads/a~1", "`~`"),
        ("refs/heads/a^", "`^`"),
        ("refs/heads/a:b", "`:`"),
        ("refs/heads/a?", "`?`"),
        ("refs/heads/a*", "`*`"),
        ("refs/heads/a[b", "`[`"),
        ("refs/heads/a\\b", "`\\`"),
        ("refs/heads/a\nb", "`\\n`"),
        ("refs/heads/a\0b", "`\\0`"),
        ("refs/heads/a\u{7f}", "`\\u{7f}`"),
        ("refs/heads/a\u{85}", "`\\u{85}`"),
        ("refs/heads/a\u{202e}b", "`\\u{202e}`"),
        ("refs/heads/a\u{200b}b", "`\\u{200b}`"),
        ("refs/heads/a//b", "`//`"),
        ("refs/heads//a", "`//`"),
        ("refs/heads/a/", "ends with `/`"),
        ("refs/heads/a.", "ends with `.`"),
        ("refs/heads/.hidden", "starts with `.`"),
        ("refs/heads/a/.b", "starts with `.`"),
        ("refs/heads/a.lock", "`.lock`"),
        ("refs/heads/a.lock/b", "`.lock`"),
        ("refs/heads/a@{1}", "`@{`"),
        ("refs/heads/-f", "starts with `-`"),
        ("refs/tags/--upload-pack=x", "starts with `-`"),
        ("REFS/HEADS/main", "neither"),
    ];
    for (r, needle) in bad {
        let m = check_ref(r).expect_err(r);
        assert!(m.contains(needle), "{r:?}: {m} (wanted {needle})");
        assert!(!m.contains('\n') && !m.contains('\0'), "{m:?}");
    }
}

#[test]
fn check_commit_takes_full_hex_ids() {
    let sha1 = "2a36645253104ef2d42a4545fa43455ecd09f547";
    let sha256 = "a".repeat(64);
    assert_eq!(check_commit(sha1).as_deref(), Ok(sha1));
    assert_eq!(check_commit(&sha1.to_uppercase()).as_deref(), Ok(sha1));
    assert_eq!(check_commit(&sha256), Ok(sha256.clone()));
    for bad in [
        "",
        "2a36645",
        &sha1[..39],
        &format!("{sha1}0"),
        &"0".repeat(40),
        &"0".repeat(64),
        "2a36645253104ef2d42a4545fa43455ecd09f54g",
        "2a36645253104ef2d42a4545fa43455ecd09f54 ",
        "HEAD",
        "é2a36645253104ef2d42a4545fa43455ecd09f5",
    ] {
        assert!(check_commit(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn patterns_without_wildcards_match_only_themselves(p in "[a-z./-]{0,12}", name in "[a-z./-]{0,12}") {
        prop_assert!(glob_match(&p, &p));
        prop_assert_eq!(glob_match(&p, &name), p == name);
    }

    #[test]
    fn refs_and_patterns_never_panic(s in any::<String>(), name in any::<String>()) {
        if check_ref(&s).is_ok() {
            prop_assert!(s.len() <= MAX_REF_BYTES);
            prop_assert!(s.starts_with("refs/heads/") || s.starts_with("refs/tags/"));
        }
        let _ = glob_match(&s, &name);
        let f = RefFilter { branches: vec![s.clone()], tags: vec![s.clone()] };
        let _ = f.check();
        let _ = f.admit(&name);
        let _ = check_commit(&s);
    }
}
