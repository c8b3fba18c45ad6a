//! A call's arguments bound to a method's parameters the way Python binds
//! them (positional first, then by keyword; unknown or repeated names
//! refused), and the conversions Koji's hub applies to them. Every refusal
//! is a `ParameterError` fault (1019), as Koji's argument check gives.

use std::collections::BTreeMap;

use super::wire::{Call, Fault, Value, truthy};

/// A call's arguments, each under its parameter's name.
pub struct Args {
    method: String,
    values: BTreeMap<&'static str, Value>,
}

impl Args {
    /// Binds `call` to the parameters `names` (in order).
    pub fn bind(call: &Call, names: &[&'static str]) -> Result<Args, Fault> {
        let method = call.method.clone();
        if call.args.len() > names.len() {
            return Err(Fault::parameter(format!(
                "{method}() takes at most {} arguments ({} given)",
                names.len(),
                call.args.len()
            )));
        }
        let mut values: BTreeMap<&'static str, Value> = names.iter().copied().zip(call.args.iter().cloned()).collect();
        for (k, v) in &call.kwargs {
            let Some(name) = names.iter().find(|n| *n == k) else {
                return Err(Fault::parameter(format!(
                    "{method}() got an unexpected keyword argument '{}'",
                    super::values::printable(k)
                )));
            };
            if values.insert(name, v.clone()).is_some() {
                return Err(Fault::parameter(format!(
                    "{method}() got multiple values for argument '{k}'"
                )));
            }
        }
        Ok(Args { method, values })
    }

    /// A parameter's value, `None` when absent or nil.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !matches!(v, Value::Nil))
    }

    /// A parameter that must be there.
    pub fn need(&self, name: &str) -> Result<&Value, Fault> {
        self.get(name).ok_or_else(|| {
            Fault::parameter(format!(
                "{}() missing 1 required positional argument: '{name}'",
                self.method
            ))
        })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(truthy)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, Fault> {
        self.get(name).map(|v| int(v, name)).transpose()
    }

    pub fn need_int(&self, name: &str) -> Result<i64, Fault> {
        int(self.need(name)?, name)
    }

    pub fn str(&self, name: &str) -> Result<Option<String>, Fault> {
        self.get(name).map(|v| text(v, name)).transpose()
    }

    pub fn need_str(&self, name: &str) -> Result<String, Fault> {
        text(self.need(name)?, name)
    }

    /// A struct parameter (an empty one when absent).
    pub fn map(&self, name: &str) -> Result<BTreeMap<String, Value>, Fault> {
        match self.get(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Struct(m)) => Ok(m.clone()),
            Some(_) => Err(Fault::parameter(format!("{name} must be a struct"))),
        }
    }

    /// A list parameter; a single value is a list of one, as Koji allows.
    pub fn list(&self, name: &str) -> Vec<Value> {
        match self.get(name) {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
        }
    }

    pub fn method(&self) -> &str {
        &self.method
    }
}

/// An integer argument: an integer, or a string of one (Koji's
/// `decode_int`), or a boolean.
pub fn int(v: &Value, name: &str) -> Result<i64, Fault> {
    match v {
        Value::Integer(i) => Ok(i64::from(*i)),
        Value::Long(i) => Ok(*i),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::String(s) => s.trim().parse().map_err(|_| {
            Fault::parameter(format!(
                "invalid literal for int() with base 10: {:?}",
                super::values::printable(s)
            ))
        }),
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Ok(*d as i64),
        _ => Err(Fault::parameter(format!("{name} must be an integer"))),
    }
}

/// A text argument (numbers are turned into their text, as Python's `str`).
pub fn text(v: &Value, name: &str) -> Result<String, Fault> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Long(i) => Ok(i.to_string()),
        _ => Err(Fault::parameter(format!("{name} must be a string"))),
    }
}

/// What names a thing in Koji's calls: its id, or its name (a struct
/// with `id` or `name`, as `getTag` and friends accept, counts too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref {
    Id(i64),
    Name(String),
}

impl Ref {
    pub fn from_value(v: &Value, what: &str) -> Result<Ref, Fault> {
        match v {
            Value::Integer(i) => Ok(Ref::Id(i64::from(*i))),
            Value::Long(i) => Ok(Ref::Id(*i)),
            Value::String(s) => Ok(Ref::Name(s.clone())),
            Value::Struct(m) => {
                if let Some(id) = m.get("id").filter(|v| !matches!(v, Value::Nil)) {
                    Ok(Ref::Id(int(id, what)?))
                } else if let Some(Value::String(n)) = m.get("name") {
                    Ok(Ref::Name(n.clone()))
                } else {
                    Err(Fault::parameter(format!(
                        "Invalid {what} info: the struct has neither id nor name"
                    )))
                }
            }
            _ => Err(Fault::parameter(format!(
                "Invalid type for {what}: {}",
                super::values::kind(v)
            ))),
        }
    }

    /// How Koji's messages show the reference (`repr` of the value).
    pub fn shown(&self) -> String {
        match self {
            Ref::Id(i) => i.to_string(),
            Ref::Name(n) => format!("'{}'", super::values::printable(n)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(args: Vec<Value>, kwargs: &[(&str, Value)]) -> Call {
        Call {
            method: "m".into(),
            args,
            kwargs: kwargs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    #[test]
    fn binds_positional_then_keyword() {
        let c = call(vec![Value::String("t".into())], &[("event", Value::Integer(5))]);
        let a = Args::bind(&c, &["tag", "event", "strict"]).unwrap();
        assert_eq!(a.need_str("tag").unwrap(), "t");
        assert_eq!(a.int("event").unwrap(), Some(5));
        assert!(!a.flag("strict"));
    }

    #[test]
    fn python_binding_errors_are_parameter_faults() {
        let too_many = call(vec![Value::Nil, Value::Nil], &[]);
        assert_eq!(Args::bind(&too_many, &["a"]).err().unwrap().code, 1019);
        let unknown = call(vec![], &[("zz", Value::Nil)]);
        let f = Args::bind(&unknown, &["a"]).err().unwrap();
        assert!(f.message.contains("unexpected keyword argument 'zz'"), "{f}");
        let twice = call(vec![Value::Integer(1)], &[("a", Value::Integer(2))]);
        assert!(
            Args::bind(&twice, &["a"])
                .err()
                .unwrap()
                .message
                .contains("multiple values")
        );
        let a = Args::bind(&call(vec![], &[]), &["a"]).unwrap();
        assert_eq!(a.need("a").unwrap_err().code, 1019);
    }

    #[test]
    fn ints_accept_what_decode_int_accepts() {
        assert_eq!(int(&Value::String(" 12 ".into()), "x").unwrap(), 12);
        assert_eq!(int(&Value::Long(1 << 40), "x").unwrap(), 1 << 40);
        assert_eq!(int(&Value::String("x".into()), "x").unwrap_err().code, 1019);
        assert_eq!(int(&Value::Array(vec![]), "x").unwrap_err().code, 1019);
    }

    #[test]
    fn refs_by_id_name_or_struct() {
        assert_eq!(Ref::from_value(&Value::Integer(3), "tag").unwrap(), Ref::Id(3));
        assert_eq!(
            Ref::from_value(&Value::String("a".into()), "tag").unwrap(),
            Ref::Name("a".into())
        );
        let s = Value::Struct([("name".to_string(), Value::String("b".into()))].into_iter().collect());
        assert_eq!(Ref::from_value(&s, "tag").unwrap(), Ref::Name("b".into()));
        assert!(Ref::from_value(&Value::Boolean(true), "tag").is_err());
        assert_eq!(Ref::Name("x".into()).shown(), "'x'");
    }
}
