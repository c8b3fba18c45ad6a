//! Koji's XML-RPC conventions on the wire (docs/koji.md): a call's
//! keyword arguments travel as a trailing struct marked `__starstar`;
//! `nil` is allowed everywhere; integers past 32 bits are `i8`; every
//! error is a fault with one of Koji's codes. Pure: bytes in, bytes out.

use std::collections::BTreeMap;

pub use dxr::Value;

/// Koji's fault codes (the client turns each into its exception class).
pub mod code {
    pub const GENERIC: i32 = 1000;
    pub const LOCK: i32 = 1001;
    pub const AUTH: i32 = 1002;
    pub const TAG: i32 = 1003;
    pub const NOT_ALLOWED: i32 = 1004;
    pub const BUILD: i32 = 1005;
    pub const AUTH_EXPIRED: i32 = 1007;
    pub const SEQUENCE: i32 = 1008;
    pub const RETRY: i32 = 1009;
    pub const PARAMETER: i32 = 1019;
    pub const NAME: i32 = 1024;
}

/// A fault: one of Koji's codes and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }
    pub fn generic(message: impl Into<String>) -> Fault {
        Fault::new(code::GENERIC, message)
    }
    pub fn parameter(message: impl Into<String>) -> Fault {
        Fault::new(code::PARAMETER, message)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault {}: {}", self.code, self.message)
    }
}

/// One call: the method, its positional arguments and its keyword
/// arguments (the `__starstar` struct, marker removed).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
}

/// The longest method name a call may have.
const MAX_METHOD: usize = 200;
/// The deepest nesting of arrays and structs a call may have (the XML
/// reader refuses a little past 40).
pub const MAX_DEPTH: usize = 32;
/// What a struct member's empty or blank name is read as, then restored:
/// the XML reader takes an element of only blanks for no text at all, and
/// a member needs a name. Two private-use characters no client sends.
const BLANK_NAME: &str = "\u{E000}\u{E001}";

/// Reads a `methodCall` document. Anything else (not UTF-8, not XML-RPC,
/// a DTD, nesting past [`MAX_DEPTH`]) is a fault, never a panic.
pub fn parse_call(body: &[u8]) -> Result<Call, Fault> {
    let text = std::str::from_utf8(body).map_err(|e| Fault::generic(format!("the request is not UTF-8: {e}")))?;
    if nesting(text) > MAX_DEPTH {
        return Err(Fault::generic(format!(
            "the request nests arrays and structs deeper than {MAX_DEPTH} levels"
        )));
    }
    let marked = mark_blank_names(text);
    let call =
        dxr::MethodCall::from_xml(&marked).map_err(|_| Fault::generic("the request is not an XML-RPC method call"))?;
    let method = call.name.trim().to_string();
    if method.is_empty() || method.len() > MAX_METHOD || !method.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Fault::generic("the request's method name is not a method name"));
    }
    let params = if marked.len() == text.len() {
        call.params
    } else {
        call.params.into_iter().map(unmark_blank_names).collect()
    };
    Ok(split(method, params))
}

/// `text` with [`BLANK_NAME`] before the blanks of every `<name>` that
/// holds nothing else (`<name></name>`, `<name> </name>`, `<name/>`).
/// A document with CDATA or comments is left alone: there `<name` may be
/// text.
fn mark_blank_names(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("<name") || text.contains("<![CDATA[") || text.contains("<!--") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find("<name") {
        let (before, tail) = rest.split_at(i);
        out.push_str(before);
        if let Some(after) = tail.strip_prefix("<name/>") {
            out.push_str("<name>");
            out.push_str(BLANK_NAME);
            out.push_str("</name>");
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("<name>") {
            out.push_str("<name>");
            if inner
                .trim_start_matches(|c: char| c.is_ascii_whitespace())
                .starts_with("</name>")
            {
                out.push_str(BLANK_NAME);
            }
            rest = inner;
        } else {
            out.push_str("<name");
            rest = &tail["<name".len()..];
        }
    }
    out.push_str(rest);
    out.into()
}

/// `v` with the marks of [`mark_blank_names`] taken off its struct names.
fn unmark_blank_names(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(unmark_blank_names).collect()),
        Value::Struct(m) => Value::Struct(
            m.into_iter()
                .map(|(k, v)| {
                    let k = match k.strip_prefix(BLANK_NAME) {
                        Some(blank) if blank.chars().all(|c| c.is_ascii_whitespace()) => blank.to_string(),
                        _ => k,
                    };
                    (k, unmark_blank_names(v))
                })
                .collect(),
        ),
        v => v,
    }
}

/// A call from its method and flat parameter list: a trailing struct whose
/// `__starstar` is true holds the keyword arguments.
pub fn split(method: String, mut args: Vec<Value>) -> Call {
    let mut kwargs = BTreeMap::new();
    if let Some(Value::Struct(last)) = args.last()
        && last.get("__starstar").is_some_and(truthy)
        && let Some(Value::Struct(mut last)) = args.pop()
    {
        last.remove("__starstar");
        kwargs = last;
    }
    Call { method, args, kwargs }
}

/// Python's truth of a value, as Koji tests flags.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Boolean(b) => *b,
        Value::Integer(i) => *i != 0,
        Value::Long(i) => *i != 0,
        Value::Double(d) => *d != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Base64(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Struct(s) => !s.is_empty(),
        Value::DateTime(_) => true,
        Value::Nil => false,
        _ => true,
    }
}

/// How deep `<array>` and `<struct>` elements nest in `text` (an upper
/// bound: a tag name inside a string is escaped, so it never counts).
fn nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let closing = rest.starts_with('/');
        let name = rest.trim_start_matches('/');
        let is_container = ["array", "struct"].iter().any(|n| {
            name.starts_with(n) && name[n.len()..].starts_with(|c: char| c == '>' || c == '/' || c.is_whitespace())
        });
        if !is_container {
            continue;
        }
        let empty = rest.find('>').is_some_and(|e| rest[..e].ends_with('/'));
        if closing {
            depth = depth.saturating_sub(1);
        } else if !empty {
            depth += 1;
            max = max.max(depth);
        }
    }
    max
}

/// A successful reply's document. Written directly (a large listing's
/// reply is a megabyte of XML; this is several times faster than going
/// through serde); a value this writer does not know goes through dxr.
pub fn reply(value: Value) -> String {
    if let Some(v) = value_xml(&value) {
        return reply_encoded(&v);
    }
    let r = dxr::MethodResponse { value };
    r.to_xml()
        .unwrap_or_else(|e| fault_xml(&Fault::generic(format!("the reply could not be encoded: {e}"))))
}

/// `v` as an XML-RPC `<value>` element (`None` for a kind only dxr
/// writes).
pub fn value_xml(v: &Value) -> Option<String> {
    let mut out = String::with_capacity(4096);
    write_value(&mut out, v).ok()?;
    Some(out)
}

/// A successful reply's document around a `<value>` already encoded.
pub fn reply_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 96);
    out.push_str(REPLY_HEAD);
    out.push_str(value);
    out.push_str(REPLY_TAIL);
    out
}

const REPLY_HEAD: &str = "<?xml version=\"1.0\"?><methodResponse><params><param>";
const REPLY_TAIL: &str = "</param></params></methodResponse>";

/// A value of a kind `write_value` does not know.
struct Unknown;

/// `v` as an XML-RPC `<value>`, appended to `out`.
fn write_value(out: &mut String, v: &Value) -> Result<(), Unknown> {
    use std::fmt::Write;
    out.push_str("<value>");
    match v {
        Value::Integer(i) => {
            let _ = write!(out, "<int>{i}</int>");
        }
        Value::Long(i) => {
            let _ = write!(out, "<i8>{i}</i8>");
        }
        Value::Boolean(b) => out.push_str(if *b {
            "<boolean>1</boolean>"
        } else {
            "<boolean>0</boolean>"
        }),
        Value::String(t) => {
            out.push_str("<string>");
            escape_into(out, t);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d}</double>");
        }
        Value::DateTime(d) => {
            let _ = write!(out, "<dateTime.iso8601>{d}</dateTime.iso8601>");
        }
        Value::Base64(b) => {
            use base64::Engine;
            out.push_str("<base64>");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push_str("</base64>");
        }
        Value::Struct(m) => {
            out.push_str("<struct>");
            for (k, v) in m {
                out.push_str("<member><name>");
                escape_into(out, k);
                out.push_str("</name>");
                write_value(out, v)?;
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(a) => {
            out.push_str("<array><data>");
            for v in a {
                write_value(out, v)?;
            }
            out.push_str("</data></array>");
        }
        Value::Nil => out.push_str("<nil/>"),
        _ => return Err(Unknown),
    }
    out.push_str("</value>");
    Ok(())
}

/// `text` with XML's special characters escaped; a carriage return as a
/// character reference, so that the reader's line-end normalisation keeps
/// it.
fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '\r']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => "&#13;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// A fault's document.
pub fn fault_xml(f: &Fault) -> String {
    let r = dxr::FaultResponse {
        fault: dxr::Fault::new(f.code, f.message.clone()),
    };
    r.to_xml().unwrap_or_else(|_| {
        // Not reached: a fault is an integer and a string.
        format!(
            "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>{}</int></value>\
             </member></struct></value></fault></methodResponse>",
            f.code
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(params: &str) -> String {
        format!(
            "<?xml version='1.0'?>\n<methodCall>\n<methodName>getTag</methodName>\n<params>{params}</params></methodCall>"
        )
    }

    #[test]
    fn keyword_arguments_come_from_the_starstar_struct() {
        let x = call(
            "<param><value><string>f40</string></value></param><param><value><struct>\
             <member><name>__starstar</name><value><boolean>1</boolean></value></member>\
             <member><name>event</name><value><nil/></value></member></struct></value></param>",
        );
        let c = parse_call(x.as_bytes()).unwrap();
        assert_eq!(c.method, "getTag");
        assert_eq!(c.args, vec![Value::String("f40".into())]);
        assert_eq!(c.kwargs.get("event"), Some(&Value::Nil));
        assert!(!c.kwargs.contains_key("__starstar"));
    }

    #[test]
    fn a_struct_without_the_marker_is_an_argument() {
        let x = call(
            "<param><value><struct><member><name>a</name><value><i8>8589934592</i8></value></member></struct></value></param>",
        );
        let c = parse_call(x.as_bytes()).unwrap();
        assert_eq!(c.args.len(), 1);
        assert!(c.kwargs.is_empty());
        let x = call(
            "<param><value><struct><member><name>__starstar</name><value><boolean>0</boolean></value></member></struct></value></param>",
        );
        assert_eq!(parse_call(x.as_bytes()).unwrap().args.len(), 1);
    }

    #[test]
    fn hostile_documents_are_faults() {
        for bad in [
            &b"\xff\xfe"[..],
            b"",
            b"<methodCall>",
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e \"boom\">]><methodCall><methodName>&e;</methodName></methodCall>",
            b"<methodCall><methodName></methodName></methodCall>",
            b"<methodCall><methodName>a b</methodName></methodCall>",
            b"<methodResponse><params/></methodResponse>",
        ] {
            let f = parse_call(bad).unwrap_err();
            assert_eq!(f.code, code::GENERIC, "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<value><array><data>".repeat(MAX_DEPTH + 1);
        let f = parse_call(call(&format!("<param>{deep}</param>")).as_bytes()).unwrap_err();
        assert!(f.message.contains("deeper"), "{f}");
        // Just within the limit, the reader takes it.
        let ok = format!(
            "{}<nil/>{}",
            "<value><array><data>".repeat(MAX_DEPTH),
            "</data></array></value>".repeat(MAX_DEPTH)
        );
        assert!(parse_call(call(&format!("<param>{ok}</param>")).as_bytes()).is_ok());
        let deep = "<value><array><data>".repeat(MAX_DEPTH + 1);
        let f = parse_call(call(&format!("<param>{deep}</param>")).as_bytes()).unwrap_err();
        assert!(f.message.contains("deeper"), "{f}");
    }

    #[test]
    fn replies_read_back_as_the_values_written() {
        let mut m = BTreeMap::new();
        m.insert(String::new(), Value::Nil);
        m.insert("a <&> b\r\n".into(), Value::String("x <&> ]]> \r\n\t ünï 𝄞".into()));
        m.insert(
            "n".into(),
            Value::Array(vec![Value::Integer(-1), Value::Long(1 << 40), Value::Boolean(false)]),
        );
        m.insert("d".into(), Value::Double(1796399343.25));
        m.insert("b".into(), Value::Base64(vec![0, 1, 255]));
        m.insert("e".into(), Value::Struct(BTreeMap::new()));
        m.insert("f".into(), Value::Array(vec![]));
        let v = Value::Struct(m);
        let doc = reply(v.clone());
        let back = dxr::MethodResponse::from_xml(&mark_blank_names(&doc)).unwrap();
        assert_eq!(unmark_blank_names(back.value), v, "{doc}");
    }

    #[test]
    fn blank_member_names_are_names() {
        let member = |name: &str| {
            format!("<param><value><struct><member>{name}<value><i4>1</i4></value></member></struct></value></param>")
        };
        for (name, want) in [
            ("<name></name>", ""),
            ("<name>  </name>", "  "),
            ("<name/>", ""),
            ("<name> a </name>", " a "),
        ] {
            let c = parse_call(call(&member(name)).as_bytes()).unwrap();
            let Value::Struct(m) = &c.args[0] else { panic!("{c:?}") };
            assert_eq!(m.keys().collect::<Vec<_>>(), [want], "{name}");
        }
        // In a string, `<name>` is text, never changed.
        let cdata = "<param><value><string><![CDATA[<name></name>]]></string></value></param>";
        if let Ok(c) = parse_call(call(cdata).as_bytes()) {
            assert_eq!(c.args, [Value::String("<name></name>".into())]);
        }
        let escaped = "<param><value><string>&lt;name&gt;&lt;/name&gt;</string></value></param>";
        let c = parse_call(call(escaped).as_bytes()).unwrap();
        assert_eq!(c.args, [Value::String("<name></name>".into())]);
    }

    #[test]
    fn nesting_counts_containers_only() {
        assert_eq!(
            nesting("<struct><member><value><array><data/></array></value></member></struct>"),
            2
        );
        assert_eq!(nesting("<array/><struct/>"), 0);
        assert_eq!(nesting("<structure><arrays>"), 0);
    }

    #[test]
    fn replies_and_faults_encode() {
        let v = Value::Struct(
            [
                ("n".to_string(), Value::Nil),
                ("big".to_string(), Value::Long(1 << 40)),
                ("s".to_string(), Value::String("<&>".into())),
            ]
            .into_iter()
            .collect(),
        );
        let x = reply(v);
        assert!(
            x.contains("<i8>1099511627776</i8>") && x.contains("&lt;&amp;&gt;"),
            "{x}"
        );
        let f = fault_xml(&Fault::new(code::TAG, "No such tagInfo: 'x'"));
        assert!(f.contains("<i4>1003</i4>") && f.contains("No such tagInfo"), "{f}");
    }
}
