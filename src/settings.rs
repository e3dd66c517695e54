//! Resolves the environment and `realign.yaml` into where and how realign connects.
//!
//! Credentials come from the environment only, never from the YAML; with none set,
//! realign targets its embedded sandbox.

use std::path::PathBuf;

use crate::edition::Edition;
use crate::spec::types::{DataCentre, OrgFile};
use crate::zoho::hosts::hosts;
use crate::zoho::{Connection, Secret};

/// Where plans and applies go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Zoho org (or a sandbox started elsewhere, through the URL overrides).
    Zoho(Connection),
    /// realign's in-process sandbox, its org kept in `state_file`.
    Embedded { state_file: PathBuf },
}

/// Connection settings resolved for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub edition: Edition,
    pub concurrency: Option<usize>,
}

pub const ENV_CLIENT_ID: &str = "ZOHO_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "ZOHO_CLIENT_SECRET";
pub const ENV_REFRESH_TOKEN: &str = "ZOHO_REFRESH_TOKEN";

/// Where the embedded sandbox keeps its org.
pub const EMBEDDED_STATE: &str = ".realign/sandbox-state.json";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Resolves settings from `env` (a lookup, so tests need not touch the process
/// environment) and the org file.
pub fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    org: &OrgFile,
) -> Result<Settings, SettingsError> {
    let get = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let names = [ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN];
    // Set but empty is what CI gives for a secret that is not configured (or a fork's
    // pull request): that must fail, not quietly plan against the embedded sandbox.
    let empty: Vec<&str> = names
        .iter()
        .filter(|k| env(k).is_some_and(|v| v.trim().is_empty()))
        .copied()
        .collect();
    if !empty.is_empty() {
        return Err(SettingsError(format!(
            "{} {} set but empty: give {} a value (in CI, check that the secrets reach this job), or unset all three of ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN to use the embedded sandbox",
            empty.join(", "),
            if empty.len() == 1 { "is" } else { "are" },
            if empty.len() == 1 { "it" } else { "them" }
        )));
    }
    let creds = names.map(|k| (k, get(k)));
    let missing: Vec<&str> = creds
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let edition = org.zoho.edition.unwrap_or_default();
    let concurrency = org.pacing.concurrency;
    if missing.len() == creds.len() {
        return Ok(Settings {
            target: Target::Embedded {
                state_file: PathBuf::from(EMBEDDED_STATE),
            },
            edition,
            concurrency,
        });
    }
    if !missing.is_empty() {
        return Err(SettingsError(format!(
            "Zoho credentials are incomplete: {} {} not set; set all three of ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN, or none to use the embedded sandbox",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        )));
    }
    let dc = match get("ZOHO_DC") {
        Some(v) => v
            .parse::<DataCentre>()
            .map_err(|e| SettingsError(format!("ZOHO_DC: {e}")))?,
        None => org.zoho.dc.unwrap_or_default(),
    };
    let (accounts, api) = hosts(dc);
    let accounts_url = get("ZOHO_ACCOUNTS_URL").unwrap_or_else(|| accounts.to_string());
    let api_domain = get("ZOHO_API_DOMAIN");
    for (k, v) in [
        ("ZOHO_ACCOUNTS_URL", Some(&accounts_url)),
        ("ZOHO_API_DOMAIN", api_domain.as_ref()),
    ] {
        if let Some(v) = v {
            if url::Url::parse(v)
                .map(|u| !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
            {
                return Err(SettingsError(format!(
                    "{k} is `{v}`: give an http(s) URL such as `{api}`"
                )));
            }
        }
    }
    let [(_, id), (_, secret), (_, refresh)] = creds;
    Ok(Settings {
        target: Target::Zoho(Connection {
            client_id: id.expect("checked"),
            client_secret: Secret::new(secret.expect("checked")),
            refresh_token: Secret::new(refresh.expect("checked")),
            accounts_url: accounts_url.trim_end_matches('/').to_string(),
            api_domain: api_domain.map(|a| a.trim_end_matches('/').to_string()),
            dc: dc.to_string(),
        }),
        edition,
        concurrency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn org() -> OrgFile {
        serde_yaml::from_str("field: Territory\nzoho: {dc: eu, edition: standard}\n").unwrap()
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&|k| m.get(k).cloned(), &org())
    }

    #[test]
    fn no_credentials_means_the_embedded_sandbox() {
        let s = with(&[]).unwrap();
        assert!(matches!(s.target, Target::Embedded { .. }));
        assert_eq!(s.edition, Edition::Standard);
    }

    #[test]
    fn empty_credentials_are_an_error_not_the_sandbox() {
        let e = with(&[
            ("ZOHO_CLIENT_ID", ""),
            ("ZOHO_CLIENT_SECRET", " "),
            ("ZOHO_REFRESH_TOKEN", ""),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN are set but empty"),
            "{e}"
        );
    }

    #[test]
    fn partial_credentials_name_what_is_missing() {
        let e = with(&[("ZOHO_CLIENT_ID", "x")]).unwrap_err().to_string();
        assert!(
            e.contains("ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN are not set"),
            "{e}"
        );
    }

    #[test]
    fn data_centre_comes_from_env_then_file() {
        let base = [
            ("ZOHO_CLIENT_ID", "x"),
            ("ZOHO_CLIENT_SECRET", "y"),
            ("ZOHO_REFRESH_TOKEN", "z"),
        ];
        let Target::Zoho(c) = with(&base).unwrap().target else {
            panic!()
        };
        assert_eq!(c.accounts_url, "https://accounts.zoho.eu");
        let mut env = base.to_vec();
        env.push(("ZOHO_DC", "au"));
        let Target::Zoho(c) = with(&env).unwrap().target else {
            panic!()
        };
        assert_eq!(c.accounts_url, "https://accounts.zoho.com.au");
        env.push(("ZOHO_DC", "mars"));
        let mut env = base.to_vec();
        env.push(("ZOHO_DC", "mars"));
        assert!(with(&env).unwrap_err().to_string().contains("`mars`"));
        let mut env = base.to_vec();
        env.push(("ZOHO_API_DOMAIN", "not a url"));
        assert!(with(&env)
            .unwrap_err()
            .to_string()
            .contains("ZOHO_API_DOMAIN"));
    }
}
