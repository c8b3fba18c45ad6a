//! Diagnostics (docs/profiles.md): one test per class, each
//! asserting the code, the message and the exact file:line:column; then
//! `kiln check` over repositories with many problems.

use kiln_core::macros::MacroLayer;

use crate::support::*;

/// Asserts the one diagnostic of resolving `img` and its help.
fn assert_one(files: &[(&str, &str)], want: &str, help: Option<&str>) {
    let (got, got_help) = the_diagnostic(files);
    assert_eq!(got, want);
    assert_eq!(got_help.as_deref(), help, "help of {want}");
}

fn image(text: &str) -> [(&str, &str); 2] {
    [KILN, ("images/img.toml", text)]
}

// ----- parsing ------------------------------------------------------------------

#[test]
fn toml_syntax_error() {
    assert_one(
        &image("kind = \"ve\"\nuse = [ssh]\n"),
        "images/img.toml:2:8: error[toml-syntax]: TOML syntax error: string values must be quoted, expected literal string",
        None,
    );
    assert_one(
        &image("kind = \"ve\"\n[base\nsuite = \"x\"\n"),
        "images/img.toml:2:6: error[toml-syntax]: TOML syntax error: unclosed table, expected `]`",
        None,
    );
    assert_one(
        &image("kind = \"ve\"\nkind = \"vm\"\n"),
        "images/img.toml:2:1: error[toml-syntax]: TOML syntax error: duplicate key",
        None,
    );
}

#[test]
fn unknown_field_with_did_you_mean() {
    assert_one(
        &image("kind = \"ve\"\npakages = [\"vim\"]\n"),
        "images/img.toml:2:1: error[unknown-field]: unknown field `pakages` in an image definition",
        Some("did you mean `packages`?"),
    );
    // Nested tables are checked too, each against its own keys.
    assert_one(
        &image("kind = \"ve\"\n[build]\nnetwrk = true\n"),
        "images/img.toml:3:1: error[unknown-field]: unknown field `netwrk` in `[build]`",
        Some("did you mean `network`?"),
    );
    assert_one(
        &image("kind = \"ve\"\n[base]\nsuit = \"bookworm\"\n"),
        "images/img.toml:3:1: error[unknown-field]: unknown field `suit` in `[base]`",
        Some("did you mean `suite`?"),
    );
    // Far from every field: the help lists them.
    let (got, help) = the_diagnostic(&image("kind = \"ve\"\nzzz = 1\n"));
    assert_eq!(
        got,
        "images/img.toml:2:1: error[unknown-field]: unknown field `zzz` in an image definition"
    );
    assert!(
        help.as_deref()
            .is_some_and(|h| h.starts_with("expected one of: kind, name, extends")),
        "{help:?}"
    );
}

#[test]
fn unknown_field_in_kiln_toml_and_in_a_feature() {
    let files = [
        (
            "kiln.toml",
            "[defaults]\nkind = \"ve\"\n[defaults.base]\nsuite = \"bookworm\"\n[macro]\n",
        ),
        (
            "features/f/feature.toml",
            "descripton = \"x\"\n[variants.v]\npackges = []\n",
        ),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        [
            "kiln.toml:2:1: error[unknown-field]: field `kind` is not allowed in `[defaults]` of kiln.toml",
            "kiln.toml:5:2: error[unknown-field]: unknown field `macro` in kiln.toml",
            "features/f/feature.toml:1:1: error[unknown-field]: unknown field `descripton` in a feature definition",
            "features/f/feature.toml:3:1: error[unknown-field]: unknown field `packges` in a feature variant",
        ]
    );
}

#[test]
fn field_not_allowed_in_context() {
    assert_one(
        &image("kind = \"ve\"\nrequires = [\"x\"]\n"),
        "images/img.toml:2:1: error[unknown-field]: field `requires` is not allowed in an image definition",
        Some(
            "fields allowed here: kind, name, extends, description, use, lists, tagged, packages, remove, subprofiles, scripts, outputs, version, release, macros_file, base, macros, output, build, subprofile",
        ),
    );
    let files = [
        KILN,
        (
            "features/f/feature.toml",
            "extends = [\"x\"]\n[variants.v]\nkind = \"ve\"\n[subprofile.live]\noverride = []\n",
        ),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        [
            "features/f/feature.toml:1:1: error[unknown-field]: field `extends` is not allowed in a feature definition",
            "features/f/feature.toml:3:1: error[unknown-field]: field `kind` is not allowed in a feature variant",
            "features/f/feature.toml:5:1: error[unknown-field]: field `override` is not allowed in a `[subprofile.NAME]` section",
        ]
    );
}

#[test]
fn wrong_type() {
    let cases = [
        (
            "kind = \"ve\"\npackages = \"vim\"\n",
            "images/img.toml:2:12: error[wrong-type]: `packages` must be an array of strings, not a string",
        ),
        (
            "kind = \"ve\"\npackages = [\"vim\", 1]\n",
            "images/img.toml:2:20: error[wrong-type]: `packages[]` must be a string, not an integer",
        ),
        (
            "kind = \"ve\"\nversion = 1.5\n",
            "images/img.toml:2:11: error[wrong-type]: `version` must be a string, not a float",
        ),
        (
            "kind = \"ve\"\nmacros = [\"a\"]\n",
            "images/img.toml:2:10: error[wrong-type]: `macros` must be a table, not an array",
        ),
        (
            "kind = \"ve\"\n[build]\nnetwork = \"yes\"\n",
            "images/img.toml:3:11: error[wrong-type]: `build.network` must be a boolean, not a string",
        ),
        (
            "kind = \"ve\"\n[macros]\ndist = 1\n",
            "images/img.toml:3:8: error[wrong-type]: `macros.dist` must be a string, not an integer",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnostics(&image(text)), [want], "{text}");
    }
}

// ----- references ---------------------------------------------------------------

#[test]
fn unknown_image() {
    let files = [
        KILN,
        ("images/base.toml", "kind = \"ve\"\n"),
        ("images/img.toml", "kind = \"ve\"\nextends = [\"bsae\"]\n"),
    ];
    assert_one(
        &files,
        "images/img.toml:2:12: error[unknown-image]: unknown image `bsae`",
        Some("did you mean `base`?"),
    );
    // Resolving an image that does not exist: no location.
    assert_eq!(
        diagnostics_for(&files, "nope", &opts("amd64")),
        ["error[unknown-image]: unknown image `nope`"]
    );
}

#[test]
fn unknown_feature() {
    let files = [
        KILN,
        ("features/ssh/feature.toml", ""),
        ("features/net/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"sshd\"]\n"),
    ];
    assert_one(
        &files,
        "images/img.toml:2:9: error[unknown-feature]: unknown feature `sshd`",
        Some("did you mean `ssh`?"),
    );
    // Nothing close: the help lists the features.
    let files = [
        KILN,
        ("features/ssh/feature.toml", ""),
        ("features/net/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"zz/v\"]\n"),
    ];
    assert_one(
        &files,
        "images/img.toml:2:9: error[unknown-feature]: unknown feature `zz`",
        Some("features are folders features/NAME/ with a feature.toml; known: net, ssh"),
    );
    // Through `requires`, pointing into the feature that requires it.
    let files = [
        KILN,
        ("features/ssh/feature.toml", "requires = [\"nett\"]\n"),
        ("features/net/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"ssh\"]\n"),
    ];
    assert_one(
        &files,
        "features/ssh/feature.toml:1:14: error[unknown-feature]: unknown feature `nett`",
        Some("did you mean `net`?"),
    );
}

#[test]
fn unknown_variant() {
    let files = [
        KILN,
        ("features/net/feature.toml", "[variants.dhcp]\n[variants.static]\n"),
        ("features/ssh/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net/dhpc\", \"ssh/x\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        [
            "images/img.toml:2:13: error[unknown-variant]: feature `net` has no variant `dhpc`",
            "images/img.toml:2:25: error[unknown-variant]: feature `ssh` has no variant `x`",
        ]
    );
    let (_, r) = resolution(&files, "img", &opts("amd64"));
    let helps: Vec<Option<&str>> = r.diagnostics.iter().map(|d| d.help.as_deref()).collect();
    assert_eq!(helps, [Some("did you mean `net/dhcp`?"), Some("`ssh` has no variants")]);
}

#[test]
fn unknown_list() {
    let files = [
        KILN,
        ("lists/base", "less\n"),
        ("images/img.toml", "kind = \"ve\"\nlists = [\"bse\"]\n"),
    ];
    assert_one(
        &files,
        "images/img.toml:2:10: error[unknown-list]: unknown package list `bse`",
        Some("did you mean `base`?"),
    );
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    let loc = r.diagnostics[0].location(&repo.snapshot).expect("located");
    assert_eq!((&*loc.file, loc.line, loc.column), ("images/img.toml", 2, 10));
}

// ----- cycles -------------------------------------------------------------------

#[test]
fn extends_cycle_prints_the_cycle() {
    let files = [
        KILN,
        ("images/img.toml", "kind = \"ve\"\nextends = [\"x\"]\n"),
        ("images/x.toml", "extends = [\"y\"]\n"),
        ("images/y.toml", "extends = [\"img\"]\n"),
    ];
    let want = ["images/y.toml:1:12: error[extends-cycle]: `extends` cycle: img → x → y → img"];
    // Reported the same way from every image on the cycle.
    for image in ["img", "x", "y"] {
        assert_eq!(
            diagnostics_for(&files, image, &opts("amd64")),
            want,
            "resolving {image}"
        );
    }
    let (_, r) = resolution(&files, "img", &opts("amd64"));
    assert!(r.plan.is_none());

    let files = [
        KILN,
        ("images/b.toml", "kind = \"ve\"\nextends = [\"a\"]\n"),
        ("images/a.toml", "extends = [\"b\"]\n"),
        ("images/c.toml", "extends = [\"b\"]\n"),
    ];
    assert_eq!(
        diagnostics_for(&files, "c", &opts("amd64")),
        ["images/b.toml:2:12: error[extends-cycle]: `extends` cycle: a → b → a"]
    );
    // An image extending itself.
    assert_eq!(
        diagnostics(&image("kind = \"ve\"\nextends = [\"img\"]\n")),
        ["images/img.toml:2:12: error[extends-cycle]: `extends` cycle: img → img"]
    );
}

#[test]
fn requires_cycle() {
    let files = [
        KILN,
        ("features/a/feature.toml", "requires = [\"b\"]\n"),
        ("features/b/feature.toml", "requires = [\"c\"]\n"),
        ("features/c/feature.toml", "packages = [\"xx\"]\nrequires = [\"a\"]\n"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"a\"]\n"),
    ];
    assert_one(
        &files,
        "features/c/feature.toml:2:13: error[requires-cycle]: `requires` cycle: a → b → c → a",
        None,
    );
}

// ----- files --------------------------------------------------------------------

#[test]
fn file_clash() {
    let files = [
        KILN,
        ("features/a/feature.toml", ""),
        ("features/a/files/etc/motd", "a"),
        ("features/b/feature.toml", "override = [\"etc/issu\"]\n"),
        ("features/b/files/etc/motd", "b"),
        ("features/b/files/etc/issue", "b"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"a\", \"b\"]\n"),
    ];
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert_eq!(
        shorts(&repo, &r.diagnostics),
        [
            "images/img.toml:2:13: error[file-clash]: file clash: `/etc/motd` is shipped by features `a` and `b`",
            "features/b/feature.toml:1:13: error[bad-override]: `override` names `etc/issu`, which feature `b` does not ship",
        ]
    );
    assert_eq!(
        r.diagnostics[0].help.as_deref(),
        Some("if `b` means to replace it, add `override = [\"etc/motd\"]` to features/b/feature.toml")
    );
    let related: Vec<String> = r.diagnostics[0]
        .secondary
        .iter()
        .map(|l| format!("{}: {}", l.span.location(&repo.snapshot), l.text))
        .collect();
    assert_eq!(
        related,
        [
            "features/a/files/etc/motd: shipped by `a`",
            "features/b/files/etc/motd: shipped by `b`"
        ]
    );
}

// ----- macros -------------------------------------------------------------------

const VENDOR: (&str, &str) = (
    "kiln.toml",
    "[defaults.base]\nsuite = \"bookworm\"\n[macros]\nvendor = \"ACME\"\nu = \"<%{missing}>\"\n",
);

#[test]
fn undefined_macro_points_at_the_reference() {
    assert_one(
        &[
            VENDOR,
            ("images/img.toml", "kind = \"ve\"\ndescription = \"My %{vendr} box\"\n"),
        ],
        "images/img.toml:2:19: error[undefined-macro]: undefined macro `vendr`",
        Some("did you mean `%{vendor}`? `%{?vendr}` expands to nothing when undefined"),
    );
    // Columns count characters, not bytes.
    assert_one(
        &[
            VENDOR,
            ("images/img.toml", "kind = \"ve\"\ndescription = \"é — %{vendr}\"\n"),
        ],
        "images/img.toml:2:20: error[undefined-macro]: undefined macro `vendr`",
        Some("did you mean `%{vendor}`? `%{?vendr}` expands to nothing when undefined"),
    );
    // In a `packages` entry and in a list file.
    assert_one(
        &[
            VENDOR,
            ("images/img.toml", "kind = \"ve\"\npackages = [\"ab\", \"x-%{zz}\"]\n"),
        ],
        "images/img.toml:2:22: error[undefined-macro]: undefined macro `zz`",
        Some("define it in a `[macros]` table or with `--define zz=VALUE`; `%{?zz}` expands to nothing when undefined"),
    );
    assert_one(
        &[
            VENDOR,
            ("lists/base", "less\n  kernel-%{flavour}\n"),
            ("images/img.toml", "kind = \"ve\"\nlists = [\"base\"]\n"),
        ],
        "lists/base:2:10: error[undefined-macro]: undefined macro `flavour`",
        Some(
            "define it in a `[macros]` table or with `--define flavour=VALUE`; `%{?flavour}` expands to nothing when undefined",
        ),
    );
    // Through another macro: the error is at the top-level reference.
    let (got, _) = the_diagnostic(&[VENDOR, ("images/img.toml", "kind = \"ve\"\nrelease = \"1%{u}\"\n")]);
    assert_eq!(
        got,
        "images/img.toml:2:13: error[undefined-macro]: undefined macro `missing` (in the expansion of `u`)"
    );
}

#[test]
fn macro_cycle() {
    let files = [
        KILN,
        (
            "images/img.toml",
            "kind = \"ve\"\ndescription = \"v=%{l1}\"\n[macros]\nl1 = \"%{l2}\"\nl2 = \"[%{l1}]\"\n",
        ),
    ];
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert_eq!(
        shorts(&repo, &r.diagnostics),
        ["images/img.toml:2:18: error[macro-cycle]: macro cycle: l1 → l2 → l1"]
    );
    let related: Vec<String> = r.diagnostics[0]
        .secondary
        .iter()
        .map(|l| format!("{}: {}", l.span.location(&repo.snapshot), l.text))
        .collect();
    assert_eq!(
        related,
        [
            "images/img.toml:4:6: `l1` is defined here (image layer)",
            "images/img.toml:5:6: `l2` is defined here (image layer)"
        ]
    );
    // A macro referring to itself, defined outside the repository.
    let o = opts_with("amd64", vec![ext("me", "x%{me}", MacroLayer::Cli)]);
    assert_eq!(
        diagnostics_for(&image("kind = \"ve\"\nversion = \"%{me}\"\n"), "img", &o),
        ["images/img.toml:2:12: error[macro-cycle]: macro cycle: me → me"]
    );
}

#[test]
fn macro_deeper_than_32_levels() {
    let mut text = String::from("kind = \"ve\"\ndescription = \"%{m0}\"\n[macros]\n");
    for i in 0..40 {
        text.push_str(&format!("m{i} = \"%{{m{}}}\"\n", i + 1));
    }
    text.push_str("m40 = \"end\"\n");
    let chain: Vec<String> = (0..=32).map(|i| format!("m{i}")).collect();
    assert_eq!(
        diagnostics(&image(&text)),
        [format!(
            "images/img.toml:2:16: error[macro-cycle]: macro expansion deeper than 32 levels: {}",
            chain.join(" → ")
        )]
    );
    // 32 levels are fine.
    let mut text = String::from("kind = \"ve\"\ndescription = \"%{m0}\"\n[macros]\n");
    for i in 0..31 {
        text.push_str(&format!("m{i} = \"%{{m{}}}\"\n", i + 1));
    }
    text.push_str("m31 = \"end\"\n");
    let p = plan(&image(&text));
    assert_eq!(p.description.map(|d| d.value).as_deref(), Some("end"));
}

#[test]
fn macro_syntax_error() {
    assert_one(
        &image("kind = \"ve\"\ndescription = \"a %{oops\"\n"),
        "images/img.toml:2:18: error[macro-syntax]: unterminated macro reference: `%{` without a matching `}`",
        None,
    );
}

// ----- tag expressions, packages ------------------------------------------------

#[test]
fn bad_tag_expression_points_inside_the_string() {
    let cases = [
        (
            "kind = \"ve\"\ntagged = \"a && (b\"\n",
            "images/img.toml:2:16: error[bad-tag-expression]: bad tag expression: unclosed `(`",
        ),
        (
            "kind = \"ve\"\ntagged = \"a & b\"\n",
            "images/img.toml:2:13: error[bad-tag-expression]: bad tag expression: `&` is not an operator; use `&&`",
        ),
        (
            "kind = \"ve\"\ntagged = \"base server-x\"\n",
            "images/img.toml:2:22: error[bad-tag-expression]: bad tag expression: unexpected character `-`: tags are [A-Za-z0-9_]+",
        ),
        (
            "kind = \"ve\"\ntagged = \"a ||\"\n",
            "images/img.toml:2:15: error[bad-tag-expression]: bad tag expression: expected a tag, `!` or `(` but the expression ends",
        ),
        (
            "kind = \"ve\"\ntagged = \"a)\"\n",
            "images/img.toml:2:12: error[bad-tag-expression]: bad tag expression: unbalanced `)`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnostics(&image(text)), [want], "{text}");
    }
}

#[test]
fn bad_arch_filter_in_a_list_file_and_in_packages() {
    let files = [
        KILN,
        ("lists/base", "less\nfoo@amd46\n"),
        ("images/img.toml", "kind = \"ve\"\nlists = [\"base\"]\n"),
    ];
    assert_one(
        &files,
        "lists/base:2:5: error[bad-arch-filter]: unknown architecture `amd46` in filter",
        Some("did you mean `amd64`?"),
    );
    assert_one(
        &image("kind = \"ve\"\npackages = [\"foo@amd64,!arm64\"]\n"),
        "images/img.toml:2:18: error[bad-arch-filter]: architecture filter `@amd64,!arm64` mixes negated and plain architectures",
        Some("write either `@a,b` (only these) or `@!a,!b` (all but these)"),
    );
    assert_one(
        &image("kind = \"ve\"\npackages = [\"foo@amd64,arm46\"]\n"),
        "images/img.toml:2:24: error[bad-arch-filter]: unknown architecture `arm46` in filter",
        Some("did you mean `arm64`?"),
    );
    assert_one(
        &image("kind = \"ve\"\npackages = [\"foo@\"]\n"),
        "images/img.toml:2:17: error[bad-arch-filter]: empty architecture filter after `@`",
        Some("e.g. `pkg@amd64` or `pkg@!armhf`"),
    );
    assert_one(
        &image("kind = \"ve\"\nremove = [\"foo@amd64\"]\n"),
        "images/img.toml:2:11: error[bad-package]: `remove` takes package names without architecture filters",
        Some("to keep a package off one architecture, filter where it is added: `pkg@!arm64`"),
    );
}

#[test]
fn bad_package_name() {
    let help = Some("Debian package names are lowercase letters, digits and + . -, at least two characters");
    assert_one(
        &image("kind = \"ve\"\npackages = [\"vim\", \"Vim\"]\n"),
        "images/img.toml:2:21: error[bad-package]: bad package name `Vim`",
        help,
    );
    assert_one(
        &image("kind = \"ve\"\npackages = [\"!x\"]\n"),
        "images/img.toml:2:15: error[bad-package]: bad package name `x`",
        help,
    );
    assert_one(
        &[
            KILN,
            ("lists/l", "ok-pkg  bad_pkg\n"),
            ("images/img.toml", "kind = \"ve\"\nlists = [\"l\"]\n"),
        ],
        "lists/l:1:9: error[bad-package]: bad package name `bad_pkg`",
        help,
    );
    assert_one(
        &image("kind = \"ve\"\npackages = [\"libc6=\"]\n"),
        "images/img.toml:2:14: error[bad-package]: bad version `` in `libc6=`",
        None,
    );
}

// ----- image-level checks ---------------------------------------------------------

#[test]
fn subprofiles_on_a_non_distro_image() {
    assert_one(
        &image("kind = \"ve\"\nsubprofiles = [\"live\"]\n"),
        "images/img.toml:2:16: error[subprofiles-not-allowed]: only `distro` images have subprofiles; `img` is a `ve` image",
        Some("set kind = \"distro\" or drop `subprofiles`"),
    );
    assert_one(
        &image("kind = \"distro\"\n[subprofile.live]\npackages = [\"x\"]\n"),
        "images/img.toml:2:13: error[unknown-subprofile]: `[subprofile.live]` names a subprofile the image does not build",
        Some("add \"live\" to `subprofiles`, or remove this section"),
    );
}

#[test]
fn missing_base_and_missing_kind() {
    let (got, help) = the_diagnostic(&[("images/img.toml", "kind = \"ve\"\n")]);
    assert_eq!(got, "images/img.toml: error[missing-base]: image `img` has no base");
    assert!(help.is_some_and(|h| h.contains("[base] suite")));
    let (got, _) = the_diagnostic(&image("description = \"x\"\n"));
    assert_eq!(got, "images/img.toml: error[missing-kind]: image `img` has no `kind`");
}

#[test]
fn base_with_both_from_and_suite() {
    let files = [(
        "images/img.toml",
        "kind = \"ve\"\n[base]\nsuite = \"bookworm\"\nfrom = \"edge-os@2.3.1\"\n",
    )];
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert_eq!(
        shorts(&repo, &r.diagnostics),
        ["images/img.toml:4:1: error[base-conflict]: `[base]` sets both `from` and bootstrap options"]
    );
    let related: Vec<String> = r.diagnostics[0]
        .secondary
        .iter()
        .map(|l| format!("{}: {}", l.span.location(&repo.snapshot), l.text))
        .collect();
    assert_eq!(related, ["images/img.toml:3:1: a bootstrap option"]);
}

#[test]
fn bad_from() {
    let files = image("kind = \"ve\"\n[base]\nfrom = \"edge-os\"\n");
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert!(r.plan.is_none());
    let mut got = shorts(&repo, &r.diagnostics);
    got.dedup(); // see a_bad_from_is_reported_once
    assert_eq!(
        got,
        ["images/img.toml:3:8: error[bad-value]: `base.from` must be NAME@VERSION, not `edge-os`"]
    );
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("e.g. from = \"edge-os@2.3.1\""));
    // After macro expansion.
    let (got, _) = the_diagnostic(&image(
        "kind = \"ve\"\n[base]\nfrom = \"%{src}\"\n[macros]\nsrc = \"edge\"\n",
    ));
    assert_eq!(
        got,
        "images/img.toml:3:8: error[bad-value]: `base.from` must be NAME@VERSION, not `edge`"
    );
}

#[test]
fn bad_base_values() {
    assert_one(
        &image("kind = \"ve\"\n[base]\nsuite = \"b\"\nvariant = \"minbse\"\n"),
        "images/img.toml:4:11: error[bad-value]: `base.variant` cannot be `minbse`",
        Some("did you mean `minbase`?"),
    );
    assert_one(
        &image("kind = \"ve\"\n[base]\nsuite = \"b\"\ndistribution = \"debain\"\n"),
        "images/img.toml:4:16: error[bad-value]: `base.distribution` cannot be `debain`",
        Some("did you mean `debian`?"),
    );
}

#[test]
fn bad_kind_name_version_release() {
    let cases = [
        (
            "kind = \"container\"\n",
            "images/img.toml:1:8: error[bad-value]: `kind` cannot be `container`",
        ),
        (
            "kind = \"ve\"\nrelease = \"1-2\"\n",
            "images/img.toml:2:11: error[bad-value]: `release` must not contain `-` (it separates name, version and release), got `1-2`",
        ),
        (
            "kind = \"ve\"\nversion = \"\"\n",
            "images/img.toml:2:11: error[bad-value]: `version` must not be empty",
        ),
        (
            "kind = \"ve\"\nname = \"my image\"\n",
            "images/img.toml:2:8: error[bad-value]: `name` contains ` `; use letters, digits and . _ + ~",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnostics(&image(text)), [want], "{text}");
    }
}

#[test]
fn unknown_output_format() {
    assert_one(
        &image("kind = \"ve\"\noutputs = [\"tar\", \"squash\"]\n"),
        "images/img.toml:2:19: error[unknown-output]: unknown output format `squash`",
        Some("did you mean `squashfs`?"),
    );
    assert_one(
        &image("kind = \"ve\"\n[output.cpio]\nlevel = 1\n"),
        "images/img.toml:2:9: error[unknown-field]: unknown field `cpio` in `[output]` (output formats)",
        Some("expected one of: squashfs, erofs, tar, tar.zst, tar.xz, tar.gz, ext4, qcow2, dir, iso"),
    );
    assert_one(
        &image("kind = \"ve\"\noutputs = [\"tar\", \"tar\"]\n"),
        "images/img.toml:2:19: error[duplicate-output]: output `tar` is listed twice",
        None,
    );
}

#[test]
fn bad_output_option() {
    let cases = [
        (
            "[output.squashfs]\nlevel = 99\n",
            "images/img.toml:3:9: error[bad-value]: `output.squashfs.level` must be between 1 and 22",
        ),
        (
            "[output.squashfs]\nblock_size = \"3K\"\n",
            "images/img.toml:3:14: error[bad-value]: `output.squashfs.block_size` must be a power of two from 4K to 1M, not `3K`",
        ),
        (
            "[output.squashfs]\ncompression = \"zip\"\n",
            "images/img.toml:3:15: error[bad-value]: `output.squashfs.compression` cannot be `zip` (expected one of: zstd, xz, gzip, lz4, lzo)",
        ),
        (
            "[output.erofs]\ncompression = \"xz\"\n",
            "images/img.toml:3:15: error[bad-value]: `output.erofs.compression` cannot be `xz` (expected one of: lz4, lz4hc, lzma, deflate, zstd)",
        ),
        (
            "[output.tar]\nlevel = 3\n",
            "images/img.toml:3:1: error[unknown-field]: unknown field `level` in `[output.\"tar\"]`",
        ),
        (
            "[output.\"tar.gz\"]\nlevel = 10\n",
            "images/img.toml:3:9: error[bad-value]: `output.tar.gz.level` must be between 0 and 9",
        ),
        (
            "[output.ext4]\nsize = \"big\"\n",
            "images/img.toml:3:8: error[bad-value]: `output.ext4.size` must be a size such as \"2G\" or \"512M\", not `big`",
        ),
        (
            "[output.qcow2]\ncompress = \"yes\"\n",
            "images/img.toml:3:12: error[wrong-type]: `output.qcow2.compress` must be a boolean, not a string",
        ),
        (
            "[output.squashfs]\nlevel = \"15\"\n",
            "images/img.toml:3:9: error[wrong-type]: `output.squashfs.level` must be an integer, not a string",
        ),
        (
            "[build]\ntimeout = \"soon\"\n",
            "images/img.toml:3:11: error[bad-value]: `build.timeout` must be a positive duration such as \"30m\", \"90s\", \"2h\" or a number of seconds",
        ),
    ];
    for (tail, want) in cases {
        let text = format!("kind = \"ve\"\n{tail}");
        assert_eq!(diagnostics(&image(&text)), [want], "{tail}");
    }
}

#[test]
fn bad_scripts() {
    let files = [
        KILN,
        ("scripts/harden.sh", SCRIPT),
        (
            "images/img.toml",
            "kind = \"ve\"\nscripts = [\"scripts/hardn.sh\", \"/etc/x\", \"git+ftp://h/r@v:x\"]\n",
        ),
    ];
    assert_eq!(
        diagnostics(&files),
        [
            "images/img.toml:2:12: error[missing-script]: script `scripts/hardn.sh` does not exist in the profile repository",
            "images/img.toml:2:32: error[bad-script]: script path `/etc/x` must be inside the profile repository",
            "images/img.toml:2:42: error[bad-script]: bad remote script `git+ftp://h/r@v:x`: the URL must start with https://, http://, ssh:// or file://",
        ]
    );
}

#[test]
fn feature_file_attributes_are_checked() {
    let files = [
        KILN,
        (
            "features/f/feature.toml",
            "[files.\"etc/a\"]\nmode = \"0999\"\nowner = \"root\"\n[files.\"etc/none\"]\nmode = \"0600\"\n",
        ),
        ("features/f/files/etc/a", "a"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        [
            "features/f/feature.toml:2:8: error[bad-value]: `mode` must be an octal string such as \"0644\", not `0999`",
            "features/f/feature.toml:3:9: error[bad-value]: `owner` must be USER:GROUP (names or ids), not `root`",
            "features/f/feature.toml:4:8: error[unknown-file]: `[files.\"etc/none\"]`: feature `f` ships no such file",
        ]
    );
}

// ----- check: everything at once --------------------------------------------------

fn broken_repo() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "kiln.toml",
            "[defaults.base]\nsuite = \"bookworm\"\n[macros]\nvendor = \"ACME\"\n",
        ),
        (
            "features/ssh/feature.toml",
            "packages = [\"openssh-server\"]\nlists = [\"nope\"]\n",
        ),
        ("features/net/feature.toml", "pakages = []\n[variants.dhcp]\n"),
        ("lists/base", "less\nfoo@amd46\n"),
        ("lists/tagged/a+b-c", "x\n"),
        (
            "images/one.toml",
            "kind = \"ve\"\nuse = [\"ssh\", \"net/dhpc\"]\nlists = [\"base\"]\ndescription = \"%{vendr}\"\n",
        ),
        (
            "images/two.toml",
            "kind = \"ve\"\nuse = [\"ssh\"]\nextends = [\"nothere\"]\n",
        ),
        ("images/three.toml", "kind = \"ve\"\nuse = [\"ssh\"\n"),
        (
            "images/four.toml",
            "kind = \"ve\"\noutputs = [\"squash\"]\ntagged = \"a &&\"\n",
        ),
    ]
}

#[test]
fn check_reports_every_error_of_a_repository_in_one_run() {
    let (repo, report) = check_report(&broken_repo());
    assert_eq!((report.images, report.features, report.lists), (4, 2, 1));
    assert_eq!(
        shorts(&repo, &report.diagnostics),
        [
            "features/net/feature.toml:1:1: error[unknown-field]: unknown field `pakages` in a feature definition",
            "features/ssh/feature.toml:2:10: error[unknown-list]: unknown package list `nope`",
            "images/four.toml:2:12: error[unknown-output]: unknown output format `squash`",
            "images/four.toml:3:15: error[bad-tag-expression]: bad tag expression: expected a tag, `!` or `(` but the expression ends",
            "images/one.toml:2:20: error[unknown-variant]: feature `net` has no variant `dhpc`",
            "images/one.toml:4:16: error[undefined-macro]: undefined macro `vendr`",
            "images/three.toml:2:13: error[toml-syntax]: TOML syntax error: unclosed array, expected `]`",
            "images/two.toml:3:12: error[unknown-image]: unknown image `nothere`",
            "lists/base:2:5: error[bad-arch-filter]: unknown architecture `amd46` in filter",
            "lists/tagged/a+b-c: error[bad-tagged-list]: bad tag `b-c` in tagged list name `a+b-c`: tags are [A-Za-z0-9_]+ joined by `+`",
        ]
    );
    assert_eq!((report.errors(), report.warnings()), (10, 0));
}

#[test]
fn check_reports_a_problem_shared_by_several_images_once() {
    // ssh's unknown list is found while resolving one, two and three.
    let files = [
        KILN,
        ("features/ssh/feature.toml", "lists = [\"nope\"]\npakages = []\n"),
        ("images/one.toml", "kind = \"ve\"\nuse = [\"ssh\"]\n"),
        ("images/two.toml", "kind = \"ve\"\nuse = [\"ssh\"]\n"),
        ("images/three.toml", "extends = [\"one\"]\n"),
    ];
    assert_eq!(
        check_all(&files),
        [
            "features/ssh/feature.toml:1:10: error[unknown-list]: unknown package list `nope`",
            "features/ssh/feature.toml:2:1: error[unknown-field]: unknown field `pakages` in a feature definition",
        ]
    );
}

#[test]
fn a_bad_from_is_reported_once() {
    let files = image("kind = \"ve\"\n[base]\nfrom = \"edge-os\"\n");
    let want = "images/img.toml:3:8: error[bad-value]: `base.from` must be NAME@VERSION, not `edge-os`";
    // (resolve, check)
    assert_eq!(
        (diagnostics(&files), check_all(&files)),
        (vec![want.to_string()], vec![want.to_string()])
    );
}

#[test]
fn check_reports_a_cycle_once() {
    let files = [
        KILN,
        ("images/a.toml", "kind = \"ve\"\nextends = [\"b\"]\n"),
        ("images/b.toml", "extends = [\"a\"]\n"),
    ];
    assert_eq!(check_all(&files).len(), 1, "{:#?}", check_all(&files));
}

#[test]
fn a_syntax_error_does_not_cascade() {
    // Unknown feature, unknown list, missing kind: none reported, the file is unreadable.
    let files = [
        KILN,
        ("images/img.toml", "use = [\"nope\"\nlists = [\"missing\"]\n"),
        ("images/child.toml", "extends = [\"img\"]\npackages = [\"Bad\"]\n"),
    ];
    let want = "images/img.toml:2:1: error[toml-syntax]: TOML syntax error: missing comma between array elements, expected `,`";
    assert_eq!(diagnostics(&files), [want]);
    assert_eq!(diagnostics_for(&files, "child", &opts("amd64")), [want]);
    assert_eq!(check_all(&files), [want]);
}

const BROKEN_NET: (&str, &str) = (
    "features/net/feature.toml",
    "packages = [\"net-base\"]\n[variants.dhcp\n",
);

#[test]
fn a_broken_feature_reports_only_its_syntax_error() {
    let files = [
        KILN,
        BROKEN_NET,
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        ["features/net/feature.toml:2:15: error[toml-syntax]: TOML syntax error: unclosed table, expected `]`"]
    );
}

#[test]
fn a_broken_feature_used_with_a_variant_fails_the_resolution() {
    let files = [
        KILN,
        BROKEN_NET,
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net/dhcp\"]\n"),
    ];
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert_eq!(
        shorts(&repo, &r.diagnostics),
        ["features/net/feature.toml:2:15: error[toml-syntax]: TOML syntax error: unclosed table, expected `]`"]
    );
    assert!(r.plan.is_none(), "resolved without feature `net`");
}

#[test]
fn an_unrelated_broken_definition_does_not_fail_a_good_image() {
    let mut files = broken_repo();
    files.push(("images/good.toml", "kind = \"ve\"\npackages = [\"vim\"]\n"));
    files.push(("images/bad.toml", "kind = \n"));
    let (repo, r) = resolution(&files, "good", &opts("amd64"));
    assert_eq!(shorts(&repo, &r.diagnostics), Vec::<String>::new());
    let p = r.plan.expect("good resolves");
    assert_eq!(p.package_names(), ["vim"]);
}

#[test]
fn warnings_do_not_prevent_a_plan() {
    let files = [
        KILN,
        ("features/f/feature.toml", ""),
        ("features/f/tagged/image-scripts.d/01+nosuch", SCRIPT),
        ("features/g/scripts.d/x", SCRIPT),
        ("lists/tagged/a", "x1\n"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\ntagged = \"zz\"\n"),
    ];
    let (repo, r) = resolution(&files, "img", &opts("amd64"));
    assert!(r.plan.is_some());
    assert_eq!(
        shorts(&repo, &r.diagnostics),
        ["images/img.toml:3:10: warning[empty-tag-selection]: tag expression `zz` selects no tagged list"]
    );
    let (repo, report) = check_report(&files);
    assert_eq!(
        shorts(&repo, &report.diagnostics),
        [
            "features/f/tagged/image-scripts.d/01+nosuch: warning[unknown-tag]: tagged script `01+nosuch` needs tag `nosuch`, which is neither a feature nor a subprofile: it never runs",
            "features/g: warning[missing-feature-toml]: feature folder `features/g` has no feature.toml; it is not a feature",
            "images/img.toml:3:10: warning[empty-tag-selection]: tag expression `zz` selects no tagged list",
        ]
    );
    assert_eq!((report.errors(), report.warnings()), (0, 3));
}

#[test]
fn a_syntax_error_in_kiln_toml_does_not_cascade() {
    let files = [
        ("kiln.toml", "[defaults.base]\nsuite = \"bookworm\"\n[macros\n"),
        ("images/a.toml", "kind = \"ve\"\n"),
        ("images/b.toml", "kind = \"ve\"\n"),
    ];
    assert_eq!(
        check_all(&files),
        ["kiln.toml:3:8: error[toml-syntax]: TOML syntax error: unclosed table, expected `]`"]
    );
}

#[test]
fn a_syntax_error_in_a_feature_does_not_cascade() {
    let files = [
        KILN,
        ("features/f/feature.toml", "[macros]\nv = \"1\"\npackages = [\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nuse = [\"f\"]\ndescription = \"%{v}\"\n",
        ),
    ];
    assert_eq!(
        diagnostics(&files),
        ["features/f/feature.toml:3:13: error[toml-syntax]: TOML syntax error: unclosed array, expected `]`"]
    );
}

#[test]
fn structural_fields_are_not_expanded() {
    // docs/profiles.md § Macros: structural fields (`kind`, …) are not
    // expanded; `outputs` is a list of strings and is.
    assert_eq!(
        diagnostics(&image("kind = \"%{k}\"\n[macros]\nk = \"ve\"\n")),
        ["images/img.toml:1:8: error[bad-value]: `kind` cannot be `%{k}`"]
    );
    assert_eq!(
        diagnostics(&image("kind = \"ve\"\noutputs = [\"%{f}\"]\n[macros]\nf = \"tar\"\n")),
        Vec::<String>::new()
    );
}

#[test]
fn iso_options_are_checked_where_written() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "boot = [\"bios\", \"uefj\"]\n",
            "images/img.toml:5:17: error[bad-value]: `output.iso.boot` cannot hold `uefj` (expected: bios, uefi)",
            Some("did you mean `uefi`?"),
        ),
        (
            "root = \"lvie\"\n",
            "images/img.toml:5:8: error[unknown-subprofile]: `output.iso.root` names `lvie`, which the image does not build",
            Some("did you mean `live`?"),
        ),
        (
            "extra = [\"rescue\", \"live\"]\n",
            "images/img.toml:5:20: error[bad-value]: `live` is the ISO's root; it cannot also be an extra module",
            Some("remove it from `extra`"),
        ),
        (
            "extra = [\"recsue\"]\n",
            "images/img.toml:5:10: error[unknown-subprofile]: `output.iso.extra` names `recsue`, which the image does not build",
            Some("subprofiles: live, rescue"),
        ),
        (
            "volume_id = \"A VOLUME ID THAT IS MUCH TOO LONG FOR ISO\"\n",
            "images/img.toml:5:13: error[bad-value]: `output.iso.volume_id` must be 1 to 32 characters of A-Z, a-z, 0-9, space, `_`, `-`, `.` or `+`, not `A VOLUME ID THAT IS MUCH TOO LONG FOR ISO`",
            None,
        ),
        (
            "cmdline = \"quiet; reboot\"\n",
            "images/img.toml:5:11: error[bad-value]: `output.iso.cmdline` must be printable ASCII without quotes or any of \\ $ ; { } # ` | & < >, not `quiet; reboot`",
            None,
        ),
        (
            "timeout = 9999\n",
            "images/img.toml:5:11: error[bad-value]: `output.iso.timeout` must be between 0 and 600 seconds",
            None,
        ),
        (
            "boot = []\n",
            "images/img.toml:5:8: error[bad-value]: `output.iso.boot` is empty: the ISO would not boot",
            Some("leave it out for the default, bios and uefi"),
        ),
    ];
    for (body, want, help) in cases {
        let text = format!(
            "kind = \"distro\"\nsubprofiles = [\"live\", \"rescue\"]\noutputs = [\"iso\"]\n[output.iso]\n{body}"
        );
        assert_one(&image(&text), want, *help);
    }
}
