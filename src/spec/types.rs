//! The YAML file types, as users write them: `realign.yaml` and one file per territory.
//!
//! Every type denies unknown keys: a misspelled key silently dropped could make an apply
//! destructive. `#[serde(flatten)]` would defeat that, so conditions are one struct with
//! every operator optional, checked into a [`Expr`](super::matching::Expr) after parsing.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::id::Id;
use crate::edition::Edition;

/// `realign.yaml`: org-level settings. Holds no secrets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgFile {
    /// The Zoho module whose records are assigned.
    #[serde(default)]
    pub module: Module,
    /// `field`: a field on the record holds the territory. `native`: Zoho Territory Management.
    #[serde(default)]
    pub mode: Mode,
    /// API name of the field that holds the territory (field mode), e.g. `Territory`.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub zoho: ZohoSettings,
    /// Keep one declared territory per record (native mode; field mode always holds one).
    #[serde(default = "yes")]
    pub exclusive: bool,
    /// What to do with records that no territory claims.
    #[serde(default)]
    pub unmatched: Unmatched,
    #[serde(default)]
    pub guardrails: Guardrails,
    #[serde(default)]
    pub pacing: Pacing,
    /// Date ranges in which `watch` applies nothing (e.g. quarter-end close).
    #[serde(default)]
    pub freeze: Vec<Freeze>,
}

/// A change freeze: from `from` to `to`, both dates (YYYY-MM-DD, UTC) included.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Freeze {
    /// The dates, checked at load time.
    pub fn dates(&self) -> Result<(chrono::NaiveDate, chrono::NaiveDate), String> {
        let parse = |k: &str, v: &str| {
            chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map_err(|_| format!("freeze `{k}` is `{v}`: write a date as YYYY-MM-DD"))
        };
        let (a, b) = (parse("from", &self.from)?, parse("to", &self.to)?);
        if b < a {
            return Err(format!(
                "freeze ends (`{}`) before it starts (`{}`)",
                self.to, self.from
            ));
        }
        Ok((a, b))
    }

    /// Whether `day` falls in the freeze.
    pub fn covers(&self, day: chrono::NaiveDate) -> bool {
        self.dates().is_ok_and(|(a, b)| a <= day && day <= b)
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZohoSettings {
    /// Data centre of the org; `ZOHO_DC` overrides it.
    #[serde(default)]
    pub dc: Option<DataCentre>,
    /// Edition of the org; sets the concurrency realign stays under.
    #[serde(default)]
    pub edition: Option<Edition>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Refuse an apply that changes more records than this.
    #[serde(default)]
    pub max_changes: Option<u64>,
    /// Refuse an apply that changes more than this share (0 to 1) of all records.
    #[serde(default)]
    pub max_change_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pacing {
    /// Most calls in flight at once; defaults to the edition's limit less a margin.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Records per write call; defaults to (and is capped at) the endpoint's maximum.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Call starts per second (light calls; heavy ones get a fifth). Default 50.
    #[serde(default)]
    pub calls_per_second: Option<u32>,
    /// No retry starts after this many minutes of one run. Default 60.
    #[serde(default)]
    pub deadline_minutes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Module {
    #[default]
    Accounts,
    Contacts,
    Leads,
    Deals,
}

impl Module {
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Accounts => "Accounts",
            Module::Contacts => "Contacts",
            Module::Leads => "Leads",
            Module::Deals => "Deals",
        }
    }

    /// The field that names a record in this module.
    pub fn name_field(self) -> &'static str {
        match self {
            Module::Accounts => "Account_Name",
            Module::Deals => "Deal_Name",
            Module::Contacts | Module::Leads => "Last_Name",
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Field,
    Native,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Leave the record's territory as it is.
    #[default]
    Keep,
    /// Clear the record's territory.
    Clear,
}

/// Zoho data centres (reference §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataCentre {
    #[default]
    Us,
    Eu,
    In,
    Au,
    Jp,
    Cn,
    Ca,
    Sa,
}

impl DataCentre {
    pub const ALL: [DataCentre; 8] = [
        DataCentre::Us,
        DataCentre::Eu,
        DataCentre::In,
        DataCentre::Au,
        DataCentre::Jp,
        DataCentre::Cn,
        DataCentre::Ca,
        DataCentre::Sa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataCentre::Us => "us",
            DataCentre::Eu => "eu",
            DataCentre::In => "in",
            DataCentre::Au => "au",
            DataCentre::Jp => "jp",
            DataCentre::Cn => "cn",
            DataCentre::Ca => "ca",
            DataCentre::Sa => "sa",
        }
    }
}

impl FromStr for DataCentre {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let want = s.trim().to_ascii_lowercase();
        DataCentre::ALL
            .into_iter()
            .find(|d| d.as_str() == want)
            .ok_or_else(|| {
                format!("unknown data centre `{s}`: use us, eu, in, au, jp, cn, ca or sa")
            })
    }
}

impl fmt::Display for DataCentre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One territory file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerritoryFile {
    /// The territory's name; in field mode, the value written to the field.
    pub name: String,
    /// Name of the parent territory (checked against Zoho's `reporting_to` in native mode).
    #[serde(default)]
    pub parent: Option<String>,
    /// A higher priority wins when two territories' rules claim one record.
    #[serde(default)]
    pub priority: i32,
    /// Pin the Zoho territory id (native mode), instead of resolving by name.
    #[serde(default)]
    pub id: Option<Id>,
    /// Refuse a plan that would leave this territory empty.
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Required (`accounts: {}` for a territory that holds no records itself), so a file
    /// cut off after its first lines is an error, never a territory that claims nothing.
    #[serde(default)]
    pub accounts: Option<AccountsSpec>,
}

/// Which records belong to the territory.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountsSpec {
    /// Records held by id; explicit ids beat every rule.
    #[serde(default)]
    pub ids: Vec<Id>,
    /// A record matching any of these rules is claimed.
    #[serde(default)]
    pub rules: Vec<Condition>,
    /// Records never claimed by this territory's rules.
    #[serde(default)]
    pub exclude: Exclude,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    #[serde(default)]
    pub ids: Vec<Id>,
    #[serde(default)]
    pub rules: Vec<Condition>,
}

/// A field condition, or a combination of conditions with `all`, `any` or `not`.
///
/// Exactly one of `all`, `any`, `not` or `field` (with one operator) is given. String
/// comparisons ignore case and surrounding white space.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A name for the rule, used in plans and errors (top-level rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API name of the record field to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Scalar>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<Scalar>,
    /// `true`: the field has a non-empty value; `false`: it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Condition>>,
}

/// A value in a condition: text, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}
