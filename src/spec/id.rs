//! Zoho record and territory ids: strings end to end.
//!
//! Ids are up to 19 digits, more than an f64 keeps exactly, so an id is never held as a
//! float. YAML written unquoted (`- 5725767000000400092`) parses as an integer, which
//! fits a u64 exactly and is turned back into the same digits.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// Checks that `s` looks like a Zoho id: 1 to 19 ASCII digits.
    pub fn parse(s: &str) -> Result<Id, String> {
        let t = s.trim();
        if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{s}` is not a Zoho id: ids are 1 to 19 digits"));
        }
        Ok(Id(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Numeric order, which is Zoho's `id` order (equal-length digit strings).
    pub fn numeric_key(&self) -> (usize, &str) {
        (self.0.len(), &self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Zoho id (up to 19 digits, quoted or not)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
                Err(E::custom(format!(
                    "`{v}` is too long to read exactly as a number: quote the id"
                )))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

impl JsonSchema for Id {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Id".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Zoho id: up to 19 digits. Quote it to be safe; unquoted ids are kept exact too.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]{1,19}\\s*$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_nineteen_digit_ids_exact_quoted_or_not() {
        let ids: Vec<Id> = serde_yaml::from_str(
            "[\"5725767000000400092\", 9223372036854775807, 9999999999999999999]",
        )
        .unwrap();
        assert_eq!(ids[0].as_str(), "5725767000000400092");
        assert_eq!(ids[1].as_str(), "9223372036854775807");
        assert_eq!(ids[2].as_str(), "9999999999999999999");
    }

    #[test]
    fn rejects_twenty_digit_ids() {
        let err = serde_yaml::from_str::<Vec<Id>>("[18446744073709551615]").unwrap_err();
        assert!(err.to_string().contains("1 to 19 digits"), "{err}");
    }

    #[test]
    fn rejects_ids_a_float_would_round() {
        let err = serde_yaml::from_str::<Vec<Id>>("[1234567890123456789012345678901234567890]")
            .unwrap_err();
        assert!(err.to_string().contains("quote the id"), "{err}");
    }

    #[test]
    fn rejects_non_digits() {
        assert!(Id::parse("12ab").is_err());
        assert!(Id::parse("").is_err());
    }
}
