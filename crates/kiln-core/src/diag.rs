//! Diagnostics: located, human-readable problems found in a profile repository.
//!
//! A [`Diagnostic`] is plain data (message, labels pointing at byte ranges of
//! repository files, an optional hint). Rendering is done by
//! [`Diagnostic::render`] through `miette`, or by [`Diagnostic::short`] as one
//! `file:line:col: severity: message` line; neither does I/O.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;

use crate::snapshot::Snapshot;

/// How bad a diagnostic is. Errors make `kiln check` fail; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A byte range inside one repository file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: Arc<str>,
    pub range: Range<usize>,
}

impl Span {
    pub fn new(file: &Arc<str>, range: Range<usize>) -> Self {
        Span {
            file: Arc::clone(file),
            range,
        }
    }

    /// A span covering no text: the diagnostic is about the file as a whole.
    pub fn whole_file(file: &Arc<str>) -> Self {
        Span {
            file: Arc::clone(file),
            range: 0..0,
        }
    }

    /// Narrows a span to `sub`, a range relative to the start of this span.
    pub fn sub(&self, sub: Range<usize>) -> Self {
        Span {
            file: Arc::clone(&self.file),
            range: self.range.start + sub.start..self.range.start + sub.end,
        }
    }
}

/// A resolved position, 1-based line and column (column counted in characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// Converts a byte offset in `text` to a 1-based (line, column) pair.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl Span {
    /// Resolves the span's start to a line and column using the snapshot's
    /// text of the file. Files without text (or empty spans at 0) give line 0,
    /// which displays as the bare file name.
    pub fn location(&self, snapshot: &Snapshot) -> Location {
        let (line, column) = if self.range == (0..0) {
            (0, 0)
        } else {
            snapshot.line_col(&self.file, self.range.start).unwrap_or((0, 0))
        };
        Location {
            file: Arc::clone(&self.file),
            line,
            column,
        }
    }
}

/// A span with a short explanation, shown under the caret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem, with where it is and, when known, how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable machine-readable class, e.g. `unknown-field`.
    pub code: &'static str,
    pub message: String,
    /// Where the problem is. `None` only for problems outside any file
    /// (e.g. a `--define` given on the command line).
    pub primary: Option<Label>,
    /// Other places that explain the problem (the earlier definition, the
    /// rest of a cycle), possibly in other files.
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, span: Span, text: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn also(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Where the primary label points, resolved to line and column.
    pub fn location(&self, snapshot: &Snapshot) -> Option<Location> {
        self.primary.as_ref().map(|l| l.span.location(snapshot))
    }

    /// `file:line:col: error[code]: message` — one line, for editors and CI logs.
    pub fn short(&self, snapshot: &Snapshot) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.location(snapshot) {
            Some(loc) => format!("{loc}: {sev}[{}]: {}", self.code, self.message),
            None => format!("{sev}[{}]: {}", self.code, self.message),
        }
    }

    /// A JSON-friendly form with resolved locations.
    pub fn to_json(&self, snapshot: &Snapshot) -> DiagnosticJson {
        let label = |l: &Label| LabelJson {
            location: l.span.location(snapshot),
            text: l.text.clone(),
        };
        DiagnosticJson {
            severity: self.severity,
            code: self.code,
            message: self.message.clone(),
            location: self.primary.as_ref().map(label),
            related: self.secondary.iter().map(label).collect(),
            help: self.help.clone(),
        }
    }

    /// Renders with source excerpts and carets (miette's graphical handler).
    /// `color` selects ANSI colors; `width` the wrap width.
    pub fn render(&self, snapshot: &Snapshot, color: bool, width: usize) -> String {
        let theme = if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_width(width)
            .with_links(false);
        let mut out = String::new();
        let report = MietteView::new(self, snapshot);
        if handler.render_report(&mut out, &report).is_err() {
            return self.short(snapshot);
        }
        out
    }
}

/// Serialized form of a diagnostic (`kiln check --message-format json`).
#[derive(Clone, Debug, Serialize)]
pub struct DiagnosticJson {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub location: Option<LabelJson>,
    pub related: Vec<LabelJson>,
    pub help: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabelJson {
    #[serde(flatten)]
    pub location: Location,
    pub text: String,
}

/// Sorts diagnostics by file and position and drops exact duplicates (the
/// same problem found while resolving several images).
pub fn sort_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            d.primary
                .as_ref()
                .map(|l| (l.span.file.clone(), l.span.range.start, l.span.range.end))
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.message.cmp(&b.message))
            .then_with(|| a.code.cmp(b.code))
    });
    diags.dedup();
}

// ----- miette adapter -------------------------------------------------------

/// A diagnostic viewed through miette's traits: the primary file is the
/// source code, labels in other files become related diagnostics.
struct MietteView<'a> {
    diag: &'a Diagnostic,
    source: Option<miette::NamedSource<String>>,
    labels: Vec<miette::LabeledSpan>,
    related: Vec<MietteRelated>,
    /// Labels about whole files, shown as lines under the help.
    notes: Vec<String>,
}

#[derive(Debug)]
struct MietteRelated {
    text: String,
    source: miette::NamedSource<String>,
    span: miette::LabeledSpan,
}

impl fmt::Display for MietteRelated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl std::error::Error for MietteRelated {}
impl miette::Diagnostic for MietteRelated {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(self.span.clone())))
    }
}

fn miette_span(text: &str, range: &Range<usize>, label: &str) -> miette::LabeledSpan {
    let start = range.start.min(text.len());
    let len = range.end.min(text.len()).saturating_sub(start);
    let label = if label.is_empty() {
        None
    } else {
        Some(label.to_string())
    };
    miette::LabeledSpan::new(label, start, len)
}

impl<'a> MietteView<'a> {
    fn new(diag: &'a Diagnostic, snapshot: &Snapshot) -> Self {
        let mut source = None;
        let mut labels = Vec::new();
        let mut related = Vec::new();
        let mut notes = Vec::new();
        if let Some(primary) = &diag.primary
            && let Some(text) = snapshot
                .text(&primary.span.file)
                .filter(|_| primary.span.range != (0..0))
        {
            source = Some(miette::NamedSource::new(&*primary.span.file, text.to_string()));
            labels.push(miette_span(text, &primary.span.range, &primary.text));
        }
        for l in &diag.secondary {
            let same_file = diag.primary.as_ref().is_some_and(|p| p.span.file == l.span.file);
            match snapshot.text(&l.span.file) {
                Some(text) if same_file && source.is_some() => {
                    labels.push(miette_span(text, &l.span.range, &l.text));
                }
                Some(text) if l.span.range != (0..0) => related.push(MietteRelated {
                    text: format!("{}: {}", l.span.location(snapshot), l.text),
                    source: miette::NamedSource::new(&*l.span.file, text.to_string()),
                    span: miette_span(text, &l.span.range, ""),
                }),
                _ => notes.push(format!("note: {}: {}", l.span.file, l.text)),
            }
        }
        MietteView {
            diag,
            source,
            labels,
            related,
            notes,
        }
    }
}

impl fmt::Debug for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl fmt::Display for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)?;
        if self.source.is_none()
            && let Some(p) = &self.diag.primary
        {
            write!(f, "\n  in {}", p.span.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for MietteView<'_> {}

impl miette::Diagnostic for MietteView<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        match (&self.diag.help, self.notes.is_empty()) {
            (None, true) => None,
            (Some(h), true) => Some(Box::new(h)),
            (h, false) => {
                let mut text = self.notes.join("\n");
                if let Some(h) = h {
                    text = format!("{h}\n{text}");
                }
                Some(Box::new(text))
            }
        }
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
        }
    }
}

/// Suggests the closest of `candidates` to `word`, if it is close enough:
/// within a third of its length in edits (transpositions count as one),
/// ties broken by Jaro-Winkler similarity.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, f64, &str)> = None;
    for c in candidates {
        let dist = strsim::damerau_levenshtein(word, c);
        if dist > limit || dist == 0 {
            continue;
        }
        let sim = strsim::jaro_winkler(word, c);
        if best.is_none_or(|(d, s, _)| dist < d || (dist == d && sim > s)) {
            best = Some((dist, sim, c));
        }
    }
    best.map(|(_, _, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 6 + "bé = ".len()), (2, 6));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("pakages", ["packages", "lists"]).as_deref(),
            Some("packages")
        );
        assert_eq!(did_you_mean("zzz", ["packages", "lists"]), None);
    }
}
