//! Zoho CRM editions and the per-org limits each one sets.
//!
//! Figures from the reference, section 8: concurrent active calls per edition, the
//! sub-concurrency pool of 10 shared by all editions for heavy calls, and the base
//! daily credit allowance (before per-licence additions).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Zoho CRM edition, which fixes the org's concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    Free,
    Standard,
    Professional,
    #[default]
    Enterprise,
    Ultimate,
}

/// Calls in the "complex API" group (COQL, writes of more than 10 records, ...) that may
/// run at once, in every edition.
pub const SUB_CONCURRENCY: usize = 10;

impl Edition {
    pub const ALL: [Edition; 5] = [
        Edition::Free,
        Edition::Standard,
        Edition::Professional,
        Edition::Enterprise,
        Edition::Ultimate,
    ];

    /// Concurrent active calls allowed per org and client app.
    pub fn concurrency(self) -> usize {
        match self {
            Edition::Free => 5,
            Edition::Standard => 10,
            Edition::Professional => 15,
            Edition::Enterprise => 20,
            Edition::Ultimate => 25,
        }
    }

    /// Daily credits with no user licences or add-ons counted.
    pub fn base_daily_credits(self) -> u64 {
        match self {
            Edition::Free => 5_000,
            _ => 50_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Free => "free",
            Edition::Standard => "standard",
            Edition::Professional => "professional",
            Edition::Enterprise => "enterprise",
            Edition::Ultimate => "ultimate",
        }
    }
}

impl fmt::Display for Edition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Edition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        let wanted = match wanted.as_str() {
            "starter" => "standard",
            "zoho one" | "zoho_one" => "enterprise",
            "crm plus" | "crm_plus" => "ultimate",
            other => other,
        };
        Edition::ALL
            .into_iter()
            .find(|e| e.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown edition `{s}`: use free, standard, professional, enterprise or ultimate")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_follows_the_reference_table() {
        let got: Vec<usize> = Edition::ALL.iter().map(|e| e.concurrency()).collect();
        assert_eq!(got, vec![5, 10, 15, 20, 25]);
    }

    #[test]
    fn parses_aliases_and_rejects_unknown_names() {
        assert_eq!("Starter".parse::<Edition>().unwrap(), Edition::Standard);
        assert_eq!(" ultimate ".parse::<Edition>().unwrap(), Edition::Ultimate);
        assert!("gold".parse::<Edition>().unwrap_err().contains("`gold`"));
    }
}
