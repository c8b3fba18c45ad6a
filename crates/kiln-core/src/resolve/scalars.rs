//! Scalar settings: each key's winning value across the layers with what it
//! overrode, and its conversion into a typed plan value.

use std::collections::BTreeMap;

use super::{Layer, Resolver};
use crate::model::{Origin, Scalar, Sp};
use crate::plan::{self, Provenance};

#[derive(Clone)]
pub(super) struct ScalarState {
    pub(super) value: Sp<Scalar>,
    overrode: Vec<(Scalar, Origin)>,
    pub(super) default: bool,
}

/// A resolved list scalar and its items as written (for locating errors).
pub(super) type ListScalar = (plan::Value<Vec<String>>, Vec<Sp<String>>);

impl<'a> Resolver<'a> {
    pub(super) fn scalar_prov(&self, st: &ScalarState) -> (Provenance, Vec<(Scalar, Provenance)>) {
        let origin = if st.default {
            Provenance::Default { default: true }
        } else {
            self.span_prov(&st.value.span)
        };
        let overrode = st.overrode.iter().map(|(v, o)| (v.clone(), self.prov(o))).collect();
        (origin, overrode)
    }

    /// A plan value from a scalar's state: `value` is the winner (already
    /// converted), `convert` turns the overridden ones.
    pub(super) fn typed<T>(&self, st: &ScalarState, value: T, convert: impl Fn(&Scalar) -> T) -> plan::Value<T> {
        let (origin, overrode) = self.scalar_prov(st);
        let overrode = overrode
            .into_iter()
            .map(|(v, origin)| plan::Overridden {
                value: convert(&v),
                origin,
            })
            .collect();
        plan::Value {
            value,
            origin,
            overrode,
        }
    }

    fn default_value<T>(value: T) -> plan::Value<T> {
        plan::Value {
            value,
            origin: Provenance::Default { default: true },
            overrode: Vec::new(),
        }
    }

    pub(super) fn expand_scalar_str(&mut self, st: &ScalarState, s: &str) -> Option<String> {
        let sp = Sp {
            v: s.to_string(),
            span: st.value.span.clone(),
            inner: st.value.inner,
        };
        self.expand(&sp)
    }

    pub(super) fn str_value(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        key: &str,
        default: Option<&str>,
    ) -> Option<plan::Value<String>> {
        let Some(st) = scalars.get(key) else {
            return default.map(|d| Self::default_value(d.to_string()));
        };
        let Scalar::Str(raw) = &st.value.v else { return None };
        let value = self.expand_scalar_str(st, raw)?;
        Some(self.typed(st, value, scalar_text))
    }

    pub(super) fn list_value(&mut self, scalars: &BTreeMap<String, ScalarState>, key: &str) -> Option<ListScalar> {
        let st = scalars.get(key)?;
        let Scalar::List(items) = &st.value.v else { return None };
        let mut out = Vec::new();
        for it in items {
            out.push(self.expand(it)?);
        }
        let (origin, overrode) = self.scalar_prov(st);
        let overrode = overrode
            .into_iter()
            .map(|(v, origin)| plan::Overridden {
                value: match v {
                    Scalar::List(l) => l.into_iter().map(|s| s.v).collect(),
                    other => vec![scalar_text(&other)],
                },
                origin,
            })
            .collect();
        Some((
            plan::Value {
                value: out,
                origin,
                overrode,
            },
            items.clone(),
        ))
    }

    pub(super) fn bool_value(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        key: &str,
        default: bool,
    ) -> plan::Value<bool> {
        let as_bool = |v: &Scalar| matches!(v, Scalar::Bool(true));
        match scalars.get(key) {
            Some(st) => self.typed(st, as_bool(&st.value.v), as_bool),
            None => Self::default_value(default),
        }
    }

    pub(super) fn int_value(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        key: &str,
        default: i64,
    ) -> plan::Value<i64> {
        let as_int = |v: &Scalar| if let Scalar::Int(i) = v { *i } else { default };
        match scalars.get(key) {
            Some(st) => self.typed(st, as_int(&st.value.v), as_int),
            None => Self::default_value(default),
        }
    }
}

/// Every scalar's state after applying the layers in order.
pub(super) fn compose_scalars(layers: &[Layer<'_>]) -> BTreeMap<String, ScalarState> {
    let mut scalars: BTreeMap<String, ScalarState> = BTreeMap::new();
    for layer in layers {
        for set in &layer.def.scalars {
            apply_scalar(&mut scalars, &set.key, &set.value);
        }
    }
    scalars
}

fn apply_scalar(scalars: &mut BTreeMap<String, ScalarState>, key: &str, value: &Sp<Scalar>) {
    let origin = |st: &ScalarState| {
        if st.default {
            Origin::Default
        } else {
            Origin::Source(st.value.span.clone())
        }
    };
    let mut overrode = Vec::new();
    // A source image replaces a bootstrap, and the other way round.
    let conflicting: Vec<String> = if key == "base.from" {
        scalars
            .keys()
            .filter(|k| k.starts_with("base.") && *k != "base.from")
            .cloned()
            .collect()
    } else if key.starts_with("base.") {
        scalars.keys().filter(|k| *k == "base.from").cloned().collect()
    } else {
        Vec::new()
    };
    for k in conflicting {
        if let Some(st) = scalars.remove(&k) {
            overrode.push((Scalar::Str(format!("{k} = {}", st.value.v)), origin(&st)));
        }
    }
    if let Some(old) = scalars.remove(key) {
        overrode.insert(0, (old.value.v.clone(), origin(&old)));
        overrode.extend(old.overrode);
    }
    scalars.insert(
        key.to_string(),
        ScalarState {
            value: value.clone(),
            overrode,
            default: false,
        },
    );
}

pub(super) fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn scalar_json(v: &Scalar) -> serde_json::Value {
    match v {
        Scalar::Str(s) => serde_json::Value::String(s.clone()),
        Scalar::Int(i) => serde_json::Value::from(*i),
        Scalar::Bool(b) => serde_json::Value::Bool(*b),
        Scalar::List(l) => serde_json::Value::Array(l.iter().map(|s| serde_json::Value::String(s.v.clone())).collect()),
    }
}
