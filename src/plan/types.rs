//! Plan and org-state types. The plan is also a file format (`plan --out`), versioned by
//! [`FORMAT_VERSION`], with a JSON Schema in `schemas/plan.schema.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::{Id, Mode, Module};

/// Bumped whenever a field changes meaning or goes away; apply refuses other versions.
pub const FORMAT_VERSION: u32 = 1;

/// What the org holds now, as read by the client.
#[derive(Debug, Clone, Default)]
pub struct OrgState {
    pub records: Vec<Record>,
    /// Native mode: the org's territories (`GET /settings/territories`).
    pub territories: Vec<OrgTerritory>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub id: Id,
    pub name: Option<String>,
    /// Field mode: the territory field's current value.
    pub territory: Option<String>,
    /// The fields rules read, as Zoho returned them.
    pub fields: Map<String, Value>,
    pub modified_time: Option<String>,
    /// Native mode: the record's territory memberships.
    pub memberships: Vec<Membership>,
}

/// A territory of the org, as `GET /settings/territories` lists it (native mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgTerritory {
    pub id: Id,
    pub name: String,
    /// `reporting_to`; None for the org's root territory.
    pub parent: Option<TerritoryRef>,
}

/// A territory named by id and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerritoryRef {
    pub id: Id,
    pub name: String,
}

/// Who put a record in a territory (Zoho's `$assigned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Assigned {
    /// By hand or through the API: realign may change it.
    Manually,
    /// By a Zoho territory rule: the API cannot remove it, so realign never tries.
    Automatically,
    /// The read did not say.
    Unknown,
}

/// One membership of a record in a territory (native mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub id: Id,
    pub name: String,
    pub assigned: Assigned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Version of this file format.
    pub format_version: u32,
    /// Version of realign that wrote the plan.
    pub realign_version: String,
    pub spec: SpecInfo,
    pub target: Target,
    pub module: Module,
    pub mode: Mode,
    /// Field mode: the API name of the territory field.
    #[serde(default)]
    pub field: Option<String>,
    pub summary: Summary,
    pub cost: Cost,
    /// One entry per record to change, grouped by destination territory, then by id.
    pub changes: Vec<Change>,
    /// Native mode: memberships the spec does not want but a Zoho territory rule holds;
    /// realign leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by_rules: Vec<HeldByRule>,
    /// Things found while planning that change nothing: hierarchy mismatches, records
    /// that would exceed Zoho's membership cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Native mode: the Zoho territories the spec declares, as resolved when planning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared: Vec<TerritoryRef>,
    /// Records in each declared territory before and after the plan.
    #[serde(default)]
    pub territories: Vec<TerritoryCount>,
}

/// How many records a declared territory holds before and after the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerritoryCount {
    pub name: String,
    pub before: u64,
    pub after: u64,
    /// `protected: true` in the spec: a plan that would empty it is refused.
    #[serde(default)]
    pub protected: bool,
}

/// A membership held by a Zoho territory rule, which the spec would otherwise remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldByRule {
    pub account_id: Id,
    #[serde(default)]
    pub name: Option<String>,
    pub territory: TerritoryRef,
    /// What the spec wants for the record instead.
    pub wanted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecInfo {
    /// The spec directory as given.
    pub dir: String,
    /// sha256 over every spec file's path and bytes.
    pub digest: String,
    /// HEAD of the git repository holding the spec, when there is one.
    #[serde(default)]
    pub git_commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The API host the plan was made against.
    pub api_domain: String,
    /// The org id, when known.
    #[serde(default)]
    pub org: Option<String>,
    /// True when the target is realign's embedded sandbox.
    pub sandbox: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Records read from the org.
    pub records: u64,
    /// Records to change (moves + assigns + clears).
    pub changes: u64,
    pub moves: u64,
    pub assigns: u64,
    pub clears: u64,
    pub unchanged: u64,
    /// Records no territory claims, left as they are (`unmatched: keep`).
    pub unmatched_kept: u64,
    /// Native mode: memberships held by Zoho territory rules that the spec does not want.
    #[serde(default)]
    pub held_by_rules: u64,
    /// Native mode: all memberships in declared territories that Zoho rules hold
    /// (realign never removes one), whether or not the spec agrees with them.
    #[serde(default)]
    pub rule_assigned: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// Calls to read the org (one full read).
    pub read_calls: u64,
    /// Calls to write the changes.
    pub write_calls: u64,
    /// Records per write call.
    pub batch_size: u64,
    /// Zoho API credits for the reads and the writes.
    pub credits: u64,
    /// Of which the writes.
    pub write_credits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// From one territory to another.
    Move,
    /// From none to a territory.
    Assign,
    /// From a territory to none.
    Clear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub account_id: Id,
    #[serde(default)]
    pub name: Option<String>,
    pub kind: ChangeKind,
    pub before: Before,
    /// The territory after the change; null clears it. Native mode: the declared
    /// territories the record ends in, joined with `, `.
    pub after: Option<String>,
    /// The file and rule or explicit id that put the record there, or why it is cleared.
    pub reason: String,
    /// Native mode: territories to assign (sent first, so a moved record is never in none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assign: Vec<TerritoryRef>,
    /// Native mode: manual memberships to remove (sent after the assigns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<TerritoryRef>,
}

/// The state a change was planned against; apply skips records that moved since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Before {
    /// Field mode: the field's value. Native mode: the declared territories, joined.
    pub value: Option<String>,
    #[serde(default)]
    pub modified_time: Option<String>,
    /// Native mode: every membership the record had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub territories: Vec<Membership>,
}
