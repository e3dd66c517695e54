//! The pure planner: diff org state against the spec, price the result, render it.
//!
//! Nothing here does IO or reads the clock; the same spec and org state always give
//! the same plan, byte for byte.

pub mod diff;
pub mod explain;
pub mod native;
pub mod render;
pub mod types;

pub use diff::{check_guardrails, check_protected, diff, PlanContext};
pub use types::{
    Assigned, Before, Change, ChangeKind, Cost, HeldByRule, Membership, OrgState, OrgTerritory,
    Plan, Record, SpecInfo, Summary, Target, TerritoryRef, FORMAT_VERSION,
};
