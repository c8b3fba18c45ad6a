//! Property tests of the small languages: tag expressions, macros and
//! package entries. Each property runs at most 256 cases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kiln_core::macros::{MacroError, escape, expand, references};
use kiln_core::packages::{parse_pkg, tokenize_list};
use kiln_core::tags::TagExpr;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config() -> Config {
    Config {
        cases: 256,
        // Do not write regression files next to the sources.
        failure_persistence: None,
        ..Config::default()
    }
}

// ----- tag expressions ----------------------------------------------------------

const TAGS: &[&str] = &["a", "b", "c", "net", "x1", "_y", "Z9"];

fn tag_expr() -> impl Strategy<Value = TagExpr> {
    let leaf = prop::sample::select(TAGS).prop_map(|t| TagExpr::Tag(t.to_string()));
    leaf.prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| TagExpr::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| TagExpr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| TagExpr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn tag_set() -> impl Strategy<Value = BTreeSet<&'static str>> {
    prop::collection::btree_set(prop::sample::select(TAGS), 0..=TAGS.len())
}

/// The reference semantics: a word is true when it is in the set.
fn reference_eval(e: &TagExpr, tags: &BTreeSet<&str>) -> bool {
    match e {
        TagExpr::Tag(t) => tags.contains(t.as_str()),
        TagExpr::Not(e) => !reference_eval(e, tags),
        TagExpr::And(a, b) => reference_eval(a, tags) && reference_eval(b, tags),
        TagExpr::Or(a, b) => reference_eval(a, tags) || reference_eval(b, tags),
    }
}

/// Prints with every operand parenthesized, AND written as `&&` or as
/// juxtaposition and with or without spaces, chosen by `style` bits.
fn print_parenthesized(e: &TagExpr, style: &mut impl Iterator<Item = u8>) -> String {
    let mut pick = || style.next().unwrap_or(0);
    match e {
        TagExpr::Tag(t) => t.clone(),
        TagExpr::Not(e) => {
            let sp = if pick() % 2 == 0 { "" } else { " " };
            format!("!{sp}({})", print_parenthesized(e, style))
        }
        TagExpr::And(a, b) => {
            let sep = [" && ", "&&", " ", "", "\t&& "][usize::from(pick() % 5)];
            let a = print_parenthesized(a, style);
            let b = print_parenthesized(b, style);
            format!("({a}){sep}({b})")
        }
        TagExpr::Or(a, b) => {
            let sep = [" || ", "||", "  ||\n"][usize::from(pick() % 3)];
            let a = print_parenthesized(a, style);
            let b = print_parenthesized(b, style);
            format!("({a}){sep}({b})")
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tag_display_parses_back_to_the_same_tree(e in tag_expr()) {
        let printed = e.to_string();
        let parsed = TagExpr::parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "printed as {:?}", printed);
    }

    #[test]
    fn tag_parsed_evaluation_matches_the_reference(
        e in tag_expr(),
        style in prop::collection::vec(any::<u8>(), 0..64),
        sets in prop::collection::vec(tag_set(), 1..8),
    ) {
        let written = print_parenthesized(&e, &mut style.into_iter().cycle());
        let parsed = TagExpr::parse(&written).map_err(|err| TestCaseError::fail(format!("{written:?}: {err:?}")))?;
        prop_assert_eq!(&parsed, &e, "written as {:?}", written);
        let canonical = TagExpr::parse(&e.to_string()).map_err(|err| TestCaseError::fail(format!("{err:?}")))?;
        for set in &sets {
            prop_assert_eq!(parsed.eval(set), reference_eval(&e, set), "{:?} on {:?}", written, set);
            prop_assert_eq!(canonical.eval(set), reference_eval(&e, set), "{} on {:?}", e, set);
        }
    }

    #[test]
    fn tag_parse_never_panics_and_errors_point_into_the_input(
        input in prop_oneof![
            "[!&|() a-z_0-9\t]{0,40}",
            "[!&|()xyé ]{0,16}",
            any::<String>(),
        ]
    ) {
        match TagExpr::parse(&input) {
            Ok(e) => {
                // A parsed expression prints canonically and parses back.
                let again = TagExpr::parse(&e.to_string());
                prop_assert_eq!(again.as_ref(), Ok(&e));
            }
            Err(err) => {
                prop_assert!(input.get(err.range.clone()).is_some(), "{:?} in {:?}", err.range, input);
                prop_assert!(!err.message.is_empty());
            }
        }
    }
}

// ----- macros -------------------------------------------------------------------

const PIECES: &[&str] = &[
    "%{", "}", "{", "%%", "%", "?", "!?", ":", "a", "b", "c", "x", " ", "é", "%{a}", "%{?b:", "%{!?c:", "%{?a}",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..14).prop_map(|v| v.concat())
}

fn table() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(&["a", "b", "c"][..]).prop_map(str::to_string),
        soup(),
        0..=3,
    )
}

fn check_error(input: &str, e: &MacroError) -> Result<(), TestCaseError> {
    prop_assert!(
        input.get(e.range()).is_some(),
        "range {:?} outside {:?} ({})",
        e.range(),
        input,
        e
    );
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn macro_expand_never_panics(input in soup(), defs in table()) {
        let lookup = |n: &str| defs.get(n).map(String::as_str);
        if let Err(e) = expand(&input, &lookup) {
            check_error(&input, &e)?;
        }
        let _ = references(&input);
    }

    #[test]
    fn macro_expand_never_panics_on_arbitrary_text(input in any::<String>(), defs in table()) {
        let lookup = |n: &str| defs.get(n).map(String::as_str);
        if let Err(e) = expand(&input, &lookup) {
            check_error(&input, &e)?;
        }
        let _ = references(&input);
    }

    #[test]
    fn macro_self_reference_is_an_error_not_a_hang(name in "[a-z_]{1,6}", before in "[a-z ]{0,4}", after in "[a-z ]{0,4}") {
        let value = format!("{before}%{{{name}}}{after}");
        let lookup = |n: &str| (n == name).then_some(value.as_str());
        let input = format!("<%{{{name}}}>");
        match expand(&input, &lookup) {
            Err(MacroError::Cycle { chain, range }) => {
                prop_assert_eq!(chain, vec![name.clone(), name.clone()]);
                prop_assert_eq!(range, 1..input.len() - 1);
            }
            other => prop_assert!(false, "expected a cycle, got {:?}", other),
        }
    }

    #[test]
    fn macro_escape_expands_to_the_text(s in any::<String>(), defs in table()) {
        let lookup = |n: &str| defs.get(n).map(String::as_str);
        prop_assert_eq!(expand(&escape(&s), &lookup), Ok(s.clone()));
        let soup_like = s.replace('x', "%{a}");
        prop_assert_eq!(expand(&escape(&soup_like), &lookup), Ok(soup_like));
    }

    #[test]
    fn macro_text_without_percent_is_unchanged(s in "[^%]{0,40}", defs in table()) {
        let lookup = |n: &str| defs.get(n).map(String::as_str);
        prop_assert_eq!(expand(&s, &lookup), Ok(s.clone()));
    }
}

// ----- package entries ------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn list_tokenizer_never_panics_and_spans_match(
        text in prop_oneof![any::<String>(), "[a-z@!,#= \n\t-]{0,60}"]
    ) {
        let file: Arc<str> = "lists/x".into();
        for tok in tokenize_list(&file, &text) {
            prop_assert_eq!(text.get(tok.span.range.clone()), Some(tok.v.as_str()));
            prop_assert!(!tok.v.is_empty());
            prop_assert!(!tok.v.contains('#'));
            prop_assert!(!tok.v.chars().any(|c| c.is_ascii_whitespace()));
            let _ = parse_pkg(&tok.v);
        }
    }

    #[test]
    fn parse_pkg_never_panics_and_round_trips(
        entry in prop_oneof![
            any::<String>(),
            "!?[a-z0-9+.-]{0,8}(=[0-9a-z.:~+-]{0,4})?(@!?(amd64|arm64|armhf|i386|amd46|)(,!?(amd64|arm64|s390x|))?)?",
        ]
    ) {
        match parse_pkg(&entry) {
            Ok(spec) => {
                let arch = spec.arch.as_ref().map(|a| format!("@{a}")).unwrap_or_default();
                let bang = if spec.remove { "!" } else { "" };
                let printed = format!("{bang}{}{arch}", spec.name);
                prop_assert_eq!(parse_pkg(&printed), Ok(spec));
            }
            Err(e) => {
                prop_assert!(entry.get(e.range.clone()).is_some(), "{:?} in {:?}", e.range, entry);
                prop_assert!(matches!(e.code, "bad-package" | "bad-arch-filter"));
            }
        }
    }
}
