//! Reply values in Koji's shapes: integers as `int` or `i8` by size,
//! `nil` for nothing, times as Koji's text (`YYYY-MM-DD HH:MM:SS+00:00`)
//! next to `*_ts` doubles, JSON (tag extra, task requests) as the XML-RPC
//! value Python would have sent.

use std::collections::BTreeMap;

use super::wire::Value;

pub fn int(i: i64) -> Value {
    match i32::try_from(i) {
        Ok(small) => Value::Integer(small),
        Err(_) => Value::Long(i),
    }
}

pub fn opt_int(i: Option<i64>) -> Value {
    i.map_or(Value::Nil, int)
}

pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub fn opt_s(text: Option<impl Into<String>>) -> Value {
    text.map_or(Value::Nil, |t| Value::String(t.into()))
}

pub fn b(v: bool) -> Value {
    Value::Boolean(v)
}

pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(items.into_iter().collect())
}

/// A struct from (key, value) pairs.
pub fn st<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Struct(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Adds members to a struct value.
pub fn extend(v: &mut Value, pairs: impl IntoIterator<Item = (String, Value)>) {
    if let Value::Struct(m) = v {
        m.extend(pairs);
    }
}

/// Seconds since the epoch as Koji's text of a time: the database's
/// timestamp printed by Python (`str(datetime)` in UTC).
pub fn time_text(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn time(secs: i64) -> Value {
    s(time_text(secs))
}

pub fn opt_time(secs: Option<i64>) -> Value {
    secs.map_or(Value::Nil, time)
}

pub fn ts(secs: i64) -> Value {
    Value::Double(secs as f64)
}

pub fn opt_ts(secs: Option<i64>) -> Value {
    secs.map_or(Value::Nil, ts)
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A JSON value as XML-RPC: objects become structs, null nil, numbers
/// integers when they are.
pub fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(x) => Value::Boolean(*x),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => int(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(t) => Value::String(t.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json).collect()),
        serde_json::Value::Object(o) => Value::Struct(o.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
    }
}

/// An XML-RPC value as JSON (what a tag's extra stores).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(x) => serde_json::Value::Bool(*x),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Long(i) => serde_json::Value::from(*i),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(t) => serde_json::Value::String(t.clone()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Struct(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Base64(bytes) => serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
        other => serde_json::Value::String(format!("{other:?}")),
    }
}

/// A struct's members as a map (empty for anything else).
/// A struct value's member `k`.
pub fn member<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
    match v {
        Value::Struct(m) => m.get(k),
        _ => None,
    }
}

pub fn members(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Struct(m) => m,
        _ => BTreeMap::new(),
    }
}

/// The XML-RPC type of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) | Value::Long(_) => "int",
        Value::Boolean(_) => "bool",
        Value::String(_) => "str",
        Value::Double(_) => "float",
        Value::Array(_) => "list",
        Value::Struct(_) => "dict",
        Value::Nil => "NoneType",
        Value::Base64(_) => "bytes",
        _ => "DateTime",
    }
}

/// Text from a call, made safe to quote in a fault: control characters
/// (which XML 1.0 cannot carry) escaped, and cut at 200 characters.
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn integers_pick_their_width() {
        assert_eq!(int(5), Value::Integer(5));
        assert_eq!(int(i64::from(i32::MAX) + 1), Value::Long(2_147_483_648));
        assert_eq!(int(i64::from(i32::MIN)), Value::Integer(i32::MIN));
    }

    #[test]
    fn times_read_as_koji_prints_them() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00+00:00");
        assert_eq!(time_text(1_709_251_199), "2024-02-29 23:59:59+00:00");
        assert_eq!(time_text(951_782_400), "2000-02-29 00:00:00+00:00");
    }

    #[test]
    fn json_round_trips() {
        let j = serde_json::json!({"a": [1, "x", null, true, 2.5], "b": {"c": 9_000_000_000_i64}});
        assert_eq!(to_json(&json(&j)), j);
    }

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\u{1}b"), "a\\u{1}b");
        assert_eq!(printable(&"x".repeat(300)).chars().count(), 201);
    }
}
