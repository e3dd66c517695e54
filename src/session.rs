//! A connection to one org for one run: the client, and the in-process sandbox behind it
//! when no Zoho credentials are set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::plan::Target as PlanTarget;
use crate::sandbox::{self, SandboxConfig, SandboxHandle};
use crate::settings::{self, Target};
use crate::spec::Spec;
use crate::zoho::{Client, Connection, Secret};

/// A connected client, and the in-process sandbox behind it when there is one.
pub struct Session {
    pub client: Arc<Client>,
    sandbox: Option<SandboxHandle>,
    pub target: PlanTarget,
}

impl Session {
    pub async fn connect(spec: &Spec) -> Result<Session> {
        let settings = settings::resolve(&|k| std::env::var(k).ok(), &spec.org)?;
        let (conn, sandbox) = match settings.target {
            Target::Zoho(conn) => (conn, None),
            Target::Embedded { state_file } => {
                crate::say!(
                    "note: no Zoho credentials in the environment: using the embedded sandbox org in {} (see README to target a real org)",
                    state_file.display()
                );
                if let Some(dir) = state_file.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create `{}`", dir.display()))?;
                }
                let handle = sandbox::start(SandboxConfig {
                    state_file: Some(state_file),
                    edition: settings.edition,
                    ..SandboxConfig::default()
                })
                .await?;
                (sandbox_connection(&handle), Some(handle))
            }
        };
        let pacing = &spec.org.pacing;
        let mut client = Client::new(conn, settings.edition, settings.concurrency)?.with_deadline(
            tokio::time::Instant::now()
                + Duration::from_secs(60 * pacing.deadline_minutes.unwrap_or(60)),
        );
        if let Some(cps) = pacing.calls_per_second {
            client = client.with_pacer(crate::zoho::pacing::Pacer::with_rates(
                settings.edition,
                settings.concurrency,
                cps,
                governor::clock::DefaultClock::default(),
            ));
        }
        if sandbox.is_none() {
            if let Some(dir) = token_cache_dir() {
                client = client.with_token_cache(dir);
            }
        }
        // The first token is fetched here, so bad credentials stop the run before any read.
        let api_domain = client.api_domain().await?;
        Ok(Session {
            client: Arc::new(client),
            target: PlanTarget {
                api_domain,
                org: None,
                sandbox: sandbox.is_some(),
            },
            sandbox,
        })
    }

    pub async fn close(self) -> Result<()> {
        if let Some(h) = self.sandbox {
            h.shutdown().await?;
        }
        Ok(())
    }
}

/// Where access tokens are cached between runs: `REALIGN_CACHE_DIR`, else the user's
/// cache directory. `REALIGN_CACHE_DIR=off` disables the cache.
pub fn token_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match var("REALIGN_CACHE_DIR") {
        Some(p) if p.as_os_str() == "off" => None,
        Some(p) => Some(p),
        None => var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .map(|c| c.join("realign")),
    }
}

pub fn sandbox_connection(handle: &SandboxHandle) -> Connection {
    Connection {
        client_id: sandbox::CLIENT_ID.into(),
        client_secret: Secret::new(sandbox::CLIENT_SECRET),
        refresh_token: Secret::new(sandbox::REFRESH_TOKEN),
        accounts_url: handle.base_url(),
        api_domain: Some(handle.base_url()),
        dc: "sandbox".into(),
    }
}
