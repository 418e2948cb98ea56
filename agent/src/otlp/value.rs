//! `AnyValue` ↔ JSON. Attributes live as JSON values in the event model (file logs, parsed
//! JSON and OTLP attributes are the same kind of thing there).
//!
//! Mapping: string, bool, int (i64), double as themselves; arrays and key-value lists as JSON
//! arrays and objects; bytes as lowercase hex text (JSON has no bytes); an empty value as null.
//! Going back, integers that fit i64 become `intValue` and every other number `doubleValue`.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use serde_json::Value;

use crate::event::Attributes;

/// OTLP attributes → JSON map, moving the strings. A repeated key keeps its last value.
pub fn attributes_to_json(kvs: Vec<KeyValue>) -> Attributes {
    let mut map = Attributes::new();
    for kv in kvs {
        map.insert(kv.key, any_to_json(kv.value));
    }
    map
}

pub fn any_to_json(v: Option<AnyValue>) -> Value {
    let Some(v) = v.and_then(|v| v.value) else {
        return Value::Null;
    };
    match v {
        any_value::Value::StringValue(s) => Value::String(s),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::Number(i.into()),
        // Non-finite doubles have no JSON form: null.
        any_value::Value::DoubleValue(d) => Value::from(d),
        any_value::Value::ArrayValue(a) => {
            Value::Array(a.values.into_iter().map(|v| any_to_json(Some(v))).collect())
        }
        any_value::Value::KvlistValue(kv) => Value::Object(attributes_to_json(kv.values)),
        any_value::Value::BytesValue(b) => Value::String(hex(&b)),
        // Dictionary references belong to profiles only; a plain export never has them.
        any_value::Value::StringValueStrindex(_) => Value::Null,
    }
}

/// A tag value (metric dimensions are strings): strings as they are, others as JSON text.
pub fn any_to_tag(v: Option<AnyValue>) -> String {
    match any_to_json(v) {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Limits a backend puts on attribute values, and what cutting to them cost.
#[derive(Debug, Clone, Copy)]
pub struct ValueLimits {
    /// Longest string value, in characters.
    pub max_chars: usize,
    /// Most entries in an array value.
    pub max_array: usize,
}

impl ValueLimits {
    pub const NONE: ValueLimits = ValueLimits {
        max_chars: usize::MAX,
        max_array: usize::MAX,
    };
}

/// How many values were cut while encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cuts {
    pub strings: u64,
    pub arrays: u64,
}

/// JSON → `AnyValue`, cutting strings and arrays to `limits` (counted in `cuts`).
pub fn json_to_any(v: &Value, limits: ValueLimits, cuts: &mut Cuts) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(cut_string(s, limits, cuts))),
        Value::Array(a) => {
            if a.len() > limits.max_array {
                cuts.arrays += 1;
            }
            Some(any_value::Value::ArrayValue(ArrayValue {
                values: a
                    .iter()
                    .take(limits.max_array)
                    .map(|v| json_to_any(v, limits, cuts))
                    .collect(),
            }))
        }
        Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: json_to_attributes(o, limits, cuts),
        })),
    };
    AnyValue { value }
}

pub fn json_to_attributes(map: &Attributes, limits: ValueLimits, cuts: &mut Cuts) -> Vec<KeyValue> {
    map.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(json_to_any(v, limits, cuts)),
            key_strindex: 0,
        })
        .collect()
}

/// As [`json_to_any`], consuming the value (no copies of strings that fit).
pub fn json_into_any(v: Value, limits: ValueLimits, cuts: &mut Cuts) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(mut s) => {
            cut_in_place(&mut s, limits, cuts);
            Some(any_value::Value::StringValue(s))
        }
        Value::Array(mut a) => {
            if a.len() > limits.max_array {
                cuts.arrays += 1;
                a.truncate(limits.max_array);
            }
            Some(any_value::Value::ArrayValue(ArrayValue {
                values: a
                    .into_iter()
                    .map(|v| json_into_any(v, limits, cuts))
                    .collect(),
            }))
        }
        Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: json_into_attributes(o, limits, cuts),
        })),
    };
    AnyValue { value }
}

pub fn json_into_attributes(
    map: Attributes,
    limits: ValueLimits,
    cuts: &mut Cuts,
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        out.push(KeyValue {
            key,
            value: Some(json_into_any(v, limits, cuts)),
            key_strindex: 0,
        });
    }
    out
}

/// Cuts `s` to `max_chars` characters in place.
pub fn cut_in_place(s: &mut String, limits: ValueLimits, cuts: &mut Cuts) {
    if s.len() <= limits.max_chars {
        return;
    }
    if let Some((at, _)) = s.char_indices().nth(limits.max_chars) {
        cuts.strings += 1;
        s.truncate(at);
    }
}

/// A string value cut to `max_chars` characters (at a character boundary).
pub fn cut_string(s: &str, limits: ValueLimits, cuts: &mut Cuts) -> String {
    // Fast path: a string with no more bytes than the limit has no more characters either.
    if s.len() <= limits.max_chars {
        return s.to_owned();
    }
    match s.char_indices().nth(limits.max_chars) {
        Some((at, _)) => {
            cuts.strings += 1;
            s[..at].to_owned()
        }
        None => s.to_owned(),
    }
}

pub fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_and_cuts_to_limits() {
        let json = serde_json::json!({
            "s": "héllo", "b": true, "i": -7, "d": 1.5, "n": null,
            "a": [1, "x", [2.5]], "o": {"k": "v"}
        });
        let mut cuts = Cuts::default();
        let kvs = json_to_attributes(json.as_object().unwrap(), ValueLimits::NONE, &mut cuts);
        assert_eq!(cuts, Cuts::default());
        assert_eq!(Value::Object(attributes_to_json(kvs)), json);

        let limits = ValueLimits {
            max_chars: 3,
            max_array: 2,
        };
        let long = serde_json::json!({"s": "héllo", "a": [1, 2, 3], "short": "abc"});
        let kvs = json_to_attributes(long.as_object().unwrap(), limits, &mut cuts);
        assert_eq!(
            cuts,
            Cuts {
                strings: 1,
                arrays: 1
            }
        );
        assert_eq!(
            Value::Object(attributes_to_json(kvs)),
            serde_json::json!({"s": "hél", "a": [1, 2], "short": "abc"})
        );
    }

    #[test]
    fn bytes_become_hex_and_non_finite_doubles_null() {
        let v = AnyValue {
            value: Some(any_value::Value::BytesValue(vec![0, 0xab, 0x10])),
        };
        assert_eq!(any_to_json(Some(v)), Value::String("00ab10".into()));
        let v = AnyValue {
            value: Some(any_value::Value::DoubleValue(f64::NAN)),
        };
        assert_eq!(any_to_json(Some(v)), Value::Null);
        assert_eq!(any_to_tag(None), "");
    }
}
