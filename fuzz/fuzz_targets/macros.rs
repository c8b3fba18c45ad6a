//! Macro expansion and tag expressions on arbitrary text: they must never
//! panic, and the documented round trips must hold.
//!
//! The input (lossy UTF-8) is split at the first NUL: the part before is a
//! set of macro definitions, one `name=value` per line (as `--define` takes
//! them); the part after is expanded against them. The whole input is also
//! parsed as a tag expression.

#![no_main]

use std::collections::BTreeSet;

use kiln_core::external::parse_define;
use kiln_core::macros::{self, MacroTable};
use kiln_core::tags::TagExpr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (defs_text, input) = text.split_once('\0').unwrap_or(("", &text));

    // Macros.
    let defs: Vec<_> = defs_text.lines().filter_map(|l| parse_define(l).ok()).collect();
    let table = MacroTable::from_defs(defs);
    for candidate in [input, defs_text] {
        if let Err(e) = table.expand(candidate) {
            // The error's range must lie inside the string that was expanded.
            let r = e.range();
            assert!(r.start <= r.end && r.end <= candidate.len(), "range {r:?} outside {} bytes", candidate.len());
            let _ = e.to_string();
        }
        let _ = macros::references(candidate);
        let empty = |_: &str| None;
        let _ = macros::expand(candidate, &empty);
        // escape() makes text expand to itself, with or without macros.
        let escaped = macros::escape(candidate);
        assert_eq!(macros::expand(&escaped, &empty).as_deref(), Ok(candidate));
        assert_eq!(table.expand(&escaped).as_deref(), Ok(candidate));
    }
    for (_, entry) in table.iter() {
        let _ = table.expand(&entry.winner.value);
    }

    // Tag expressions.
    for candidate in [&*text, input] {
        if let Ok(expr) = TagExpr::parse(candidate) {
            // Display prints an expression that parses back to the same tree.
            let printed = expr.to_string();
            let again = TagExpr::parse(&printed);
            assert_eq!(again.as_ref(), Ok(&expr), "`{candidate}` printed as `{printed}`");
            let tags = expr.tags();
            let all: BTreeSet<&str> = tags.iter().copied().collect();
            let _ = expr.eval(&all);
            let _ = expr.eval(&BTreeSet::new());
            let first: BTreeSet<&str> = tags.iter().take(1).copied().collect();
            let _ = expr.eval(&first);
        } else if let Err(e) = TagExpr::parse(candidate) {
            assert!(e.range.start <= e.range.end && e.range.end <= candidate.len());
        }
    }
});
