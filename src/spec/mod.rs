//! The desired state: spec types, loading with file:line:col errors, validation and
//! rule matching.
//!
//! All YAML parsing in realign goes through [`load`], so swapping serde_yaml for a
//! maintained fork is a change to that one module.

pub mod error;
pub mod id;
pub mod load;
pub mod matching;
pub mod types;

pub use error::{Diagnostic, SpecError};
pub use id::Id;
pub use load::{load_dir, Spec, Territory};
pub use matching::{Claim, ClaimSource, Resolution};
pub use types::{Mode, Module, OrgFile, TerritoryFile, Unmatched};
