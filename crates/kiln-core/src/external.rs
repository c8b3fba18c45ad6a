//! Macro layers that come from outside the profile repository: `--define`
//! (layer 1) and the builder's config file (layer 3). Target (2) and build
//! tag (4) macros come from the hub as plain definitions.

use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Span, line_col};
use crate::macros::{MacroDef, MacroLayer, is_macro_name};
use crate::model::{Origin, parse_toml};

/// Parses one `--define name=value`.
pub fn parse_define(arg: &str) -> Result<MacroDef, String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`--define {arg}`: expected NAME=VALUE"))?;
    let name = name.trim();
    if !is_macro_name(name) {
        return Err(format!(
            "`--define {arg}`: bad macro name `{name}`: names are [A-Za-z0-9_]+"
        ));
    }
    Ok(MacroDef {
        name: name.to_string(),
        value: value.to_string(),
        layer: MacroLayer::Cli,
        origin: Origin::External(format!("--define {name}")),
    })
}

/// Reads the `[macros]` table of a builder config (`/etc/kiln/builder.toml`).
/// Other tables belong to the builder and are not checked here.
pub fn builder_macros(path: &str, text: &str) -> (Vec<MacroDef>, Vec<Diagnostic>) {
    let file: Arc<str> = path.into();
    let mut diags = Vec::new();
    let mut defs = Vec::new();
    let Some(table) = parse_toml(&file, text, &mut diags) else {
        return (defs, diags);
    };
    let Some(macros) = table.get_ref().get("macros") else {
        return (defs, diags);
    };
    let DeValue::Table(t) = macros.get_ref() else {
        diags.push(
            Diagnostic::error("wrong-type", "`macros` must be a table")
                .at(Span::new(&file, macros.span()), "expected a table"),
        );
        return (defs, diags);
    };
    for (k, v) in t.iter() {
        let name = k.get_ref().as_ref();
        if !is_macro_name(name) {
            diags.push(
                Diagnostic::error(
                    "bad-macro-name",
                    format!("bad macro name `{name}`: names are [A-Za-z0-9_]+"),
                )
                .at(Span::new(&file, k.span()), "bad name"),
            );
            continue;
        }
        let DeValue::String(s) = v.get_ref() else {
            diags.push(
                Diagnostic::error("wrong-type", format!("`macros.{name}` must be a string"))
                    .at(Span::new(&file, v.span()), "expected a string"),
            );
            continue;
        };
        let (line, col) = line_col(text, k.span().start);
        defs.push(MacroDef {
            name: name.to_string(),
            value: s.to_string(),
            layer: MacroLayer::Builder,
            origin: Origin::External(format!("builder config {path}:{line}:{col}")),
        });
    }
    (defs, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defines() {
        let d = parse_define("dist=.el9=x").expect("ok");
        assert_eq!((d.name.as_str(), d.value.as_str()), ("dist", ".el9=x"));
        assert!(parse_define("dist").is_err());
        assert!(parse_define("a b=1").is_err());
        assert_eq!(parse_define("empty=").expect("ok").value, "");
    }

    #[test]
    fn builder_config() {
        let (defs, diags) = builder_macros(
            "/etc/kiln/builder.toml",
            "[builder]\nname = \"b1\"\n[macros]\nvendor = \"ACME\"\nbad = 1\n",
        );
        assert_eq!(defs.len(), 1);
        assert_eq!(
            defs[0].origin,
            Origin::External("builder config /etc/kiln/builder.toml:4:1".into())
        );
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].message, "`macros.bad` must be a string");
    }
}
