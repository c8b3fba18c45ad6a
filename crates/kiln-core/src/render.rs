//! The readable form of a plan (`kiln show`, default): valid TOML, with the
//! provenance of every value as an aligned trailing comment.

use std::fmt::Write as _;

use crate::plan::{Base, FileEntry, Package, Plan, Provenance, Script, Value};

/// Quotes a string as a TOML basic string (JSON escapes are valid TOML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

fn q_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Lines of `code  # comment`, aligned per block.
#[derive(Default)]
struct Out {
    text: String,
    block: Vec<(String, String)>,
}

const MAX_ALIGN: usize = 44;

impl Out {
    fn line(&mut self, code: impl Into<String>, comment: impl Into<String>) {
        self.block.push((code.into(), comment.into()));
    }

    fn flush(&mut self) {
        let width = self
            .block
            .iter()
            .map(|(c, _)| c.chars().count())
            .filter(|w| *w <= MAX_ALIGN)
            .max()
            .unwrap_or(0);
        for (code, comment) in self.block.drain(..) {
            if comment.is_empty() {
                let _ = writeln!(self.text, "{code}");
            } else {
                let pad = width.saturating_sub(code.chars().count());
                let _ = writeln!(self.text, "{code}{}  # {comment}", " ".repeat(pad));
            }
        }
    }

    fn section(&mut self, header: &str) {
        self.flush();
        let _ = writeln!(self.text, "\n{header}");
    }
}

fn value_comment<T>(v: &Value<T>, show: impl Fn(&T) -> String) -> String {
    let mut c = v.origin.to_string();
    if let Some(o) = v.overrode.first() {
        let _ = write!(c, " (over {} from {}", show(&o.value), o.origin);
        if v.overrode.len() > 1 {
            let _ = write!(c, " and {} more", v.overrode.len() - 1);
        }
        c.push(')');
    }
    c
}

fn str_line(out: &mut Out, key: &str, v: &Value<String>) {
    out.line(format!("{key} = {}", q(&v.value)), value_comment(v, |s| q(s)));
}

fn package_comment(p: &Package) -> String {
    let mut c = p.origin.to_string();
    if let Some(via) = &p.via {
        let _ = write!(c, " via {via}");
    }
    if let Some(e) = p.overrode.first() {
        let _ = write!(c, " (over {} at {})", e.action, e.origin);
    }
    c
}

fn package_item(p: &Package) -> String {
    match &p.arch {
        Some(a) => format!("  {{ name = {}, arch = {} }},", q(&p.name), q(a)),
        None => format!("  {},", q(&p.name)),
    }
}

fn packages(out: &mut Out, key: &str, pkgs: &[Package]) {
    out.flush();
    if pkgs.is_empty() {
        out.line(format!("{key} = []"), "");
        return;
    }
    out.line(format!("{key} = ["), "");
    for p in pkgs {
        out.line(package_item(p), package_comment(p));
    }
    out.line("]", "");
}

fn scripts(out: &mut Out, header: &str, list: &[Script]) {
    for s in list {
        out.section(header);
        out.line(format!("name = {}", q(&s.name)), "");
        if let Some(p) = &s.path {
            out.line(format!("path = {}", q(p)), "");
        }
        if let Some(g) = &s.git {
            out.line(
                format!(
                    "git = {{ url = {}, ref = {}, path = {} }}",
                    q(&g.url),
                    q(&g.rev),
                    q(&g.path)
                ),
                "",
            );
        }
        if let Some(f) = &s.feature {
            out.line(format!("feature = {}", q(f)), "");
        }
        if !s.tags.is_empty() {
            out.line(format!("tags = {}", q_list(&s.tags)), "");
        }
        if s.feature.is_none() {
            out.line(format!("origin = {}", q(&s.origin.to_string())), "");
        }
    }
}

fn files(out: &mut Out, header: &str, list: &[FileEntry]) {
    for f in list {
        out.section(header);
        out.line(format!("path = {}", q(&f.path)), "");
        out.line(format!("source = {}", q(&f.source)), "");
        match &f.target {
            Some(t) => out.line(format!("symlink = {}", q(t)), ""),
            None => out.line(format!("mode = {}", q(f.mode.as_deref().unwrap_or(""))), ""),
        }
        out.line(format!("owner = {}", q(&f.owner)), "");
        if let Some(o) = &f.overrode {
            out.line(format!("overrides = {}", q(o)), "");
        }
    }
}

fn removals(out: &mut Out, key: &str, list: &[crate::plan::Removal]) {
    if list.is_empty() {
        return;
    }
    out.flush();
    out.line(format!("{key} = ["), "");
    for r in list {
        let undone: Vec<String> = r.removed.iter().map(Provenance::to_string).collect();
        out.line(
            format!("  {},", q(&r.name)),
            format!("{} (added at {})", r.origin, undone.join(", ")),
        );
    }
    out.line("]", "");
}

/// Renders the plan as commented TOML.
pub fn plan_toml(plan: &Plan) -> String {
    let mut out = Out::default();
    out.line(
        format!(
            "# kiln plan of {} for {} (schema {})",
            plan.image, plan.arch, plan.schema
        ),
        "",
    );
    out.line(format!("image = {}", q(&plan.image)), "");
    out.line(format!("arch = {}", q(&plan.arch)), "");
    out.line(format!("nvr = {}", q(&plan.nvr)), "");
    str_line(&mut out, "name", &plan.name);
    str_line(&mut out, "kind", &plan.kind);
    if let Some(d) = &plan.description {
        str_line(&mut out, "description", d);
    }
    str_line(&mut out, "version", &plan.version);
    str_line(&mut out, "release", &plan.release);
    if let Some(m) = &plan.macros_file {
        str_line(&mut out, "macros_file", m);
    }
    let chain: Vec<String> = plan.chain.iter().map(|c| c.image.clone()).collect();
    out.line(format!("chain = {}", q_list(&chain)), "extends, parents first");
    out.flush();

    out.line("features = [", "");
    for f in &plan.features {
        let variants = if f.variants.is_empty() {
            String::new()
        } else {
            format!(", variants = {}", q_list(&f.variants))
        };
        out.line(
            format!("  {{ name = {}{variants} }},", q(&f.name)),
            format!("requested at {}", f.requested_by),
        );
    }
    out.line("]", "");

    let outputs: Vec<String> = plan.outputs.iter().map(|o| o.file.clone()).collect();
    out.line(format!("outputs = {}", q_list(&outputs)), "");

    out.section("[base]");
    match &plan.base {
        Base::Bootstrap {
            distribution,
            suite,
            variant,
            mirror,
            components,
        } => {
            out.line("mode = \"bootstrap\"", "mmdebstrap");
            str_line(&mut out, "distribution", distribution);
            str_line(&mut out, "suite", suite);
            if let Some(v) = variant {
                str_line(&mut out, "variant", v);
            }
            match mirror {
                Some(m) => str_line(&mut out, "mirror", m),
                None => out.line("# mirror: mmdebstrap's default", ""),
            }
            out.line(
                format!("components = {}", q_list(&components.value)),
                value_comment(components, |v| q_list(v)),
            );
        }
        Base::Source { from, .. } => {
            out.line("mode = \"source\"", "a source image from the catalog");
            str_line(&mut out, "from", from);
        }
    }

    out.section("[build]");
    out.line(
        format!("network = {}", plan.build.network.value),
        value_comment(&plan.build.network, bool::to_string),
    );
    out.line(
        format!("timeout = {}", plan.build.timeout.value),
        value_comment(&plan.build.timeout, i64::to_string),
    );
    out.line(
        format!("cleanup = {}", plan.build.cleanup.value),
        value_comment(&plan.build.cleanup, bool::to_string),
    );

    out.section("[packages]");
    packages(&mut out, "install", &plan.packages);
    removals(&mut out, "removed", &plan.removed);
    if !plan.arch_excluded.is_empty() {
        packages(&mut out, "arch_excluded", &plan.arch_excluded);
    }
    out.flush();
    if !plan.lists.is_empty() {
        out.line("lists = [", "");
        for l in &plan.lists {
            let tagged = if l.tagged { ", tagged = true" } else { "" };
            out.line(
                format!("  {{ name = {}, file = {}{tagged} }},", q(&l.name), q(&l.file)),
                format!("via {}", l.via),
            );
        }
        out.line("]", "");
    }

    out.section("[macros]");
    for m in &plan.macros {
        let mut c = format!("{} layer, {}", m.layer, m.origin);
        if m.raw != m.value {
            let _ = write!(c, "; written {}", q(&m.raw));
        }
        if let Some(o) = m.overrode.first() {
            let _ = write!(c, " (over {} from the {} layer, {})", q(&o.value), o.layer, o.origin);
        }
        out.line(format!("{} = {}", m.name, q(&m.value)), c);
    }

    output_sections(&mut out, plan);

    files(&mut out, "[[files]]", &plan.files);
    scripts(&mut out, "[[image_scripts]]", &plan.image_scripts);
    scripts(&mut out, "[[scripts]]", &plan.scripts);

    for s in &plan.subprofiles {
        out.section(&format!("[subprofiles.{}]", q(&s.name)));
        out.line(format!("file = {}", q(&s.file)), format!("declared at {}", s.origin));
        packages(&mut out, "install", &s.packages);
        removals(&mut out, "removed", &s.removed);
        let sub = format!("subprofiles.{}", q(&s.name));
        files(&mut out, &format!("[[{sub}.files]]"), &s.files);
        scripts(&mut out, &format!("[[{sub}.image_scripts]]"), &s.image_scripts);
        scripts(&mut out, &format!("[[{sub}.scripts]]"), &s.scripts);
    }
    out.flush();
    out.text
}

/// The `[output."FORMAT"]` sections: each output's file and options, and
/// for an ISO what goes where on the medium.
fn output_sections(out: &mut Out, plan: &Plan) {
    for o in &plan.outputs {
        out.section(&format!("[output.{}]", q(&o.format)));
        out.line(format!("file = {}", q(&o.file)), "");
        for (k, v) in &o.options {
            let shown = match v.value.as_array() {
                Some(items) => q_list(
                    &items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect::<Vec<_>>(),
                ),
                None => v.value.to_string(),
            };
            out.line(format!("{k} = {shown}"), value_comment(v, serde_json::Value::to_string));
        }
        if o.format == "iso"
            && let Ok(opts) = crate::iso::IsoOptions::of(o)
        {
            for d in crate::iso::describe(&opts, &plan.nvr, &plan.arch) {
                out.line(format!("# {d}"), "");
            }
        }
    }
}
