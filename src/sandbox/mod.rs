//! The embedded Zoho CRM v8-compatible server.
//!
//! [`serve`] runs the sandbox on a listener until a shutdown future resolves; [`start`]
//! binds `127.0.0.1:0`, spawns it and returns a [`SandboxHandle`]. The CLI runs it as
//! `realign sandbox`, and `demo`, `plan` and `apply` run it in-process when no Zoho
//! credentials are set; the integration tests start one per test.
//!
//! It is built from the reference (`zoho-crm-api.md` and Zoho's OpenAPI files), never from
//! realign's client, so a misreading on either side shows up as a failing test:
//!
//! - `routes` is the HTTP edge: authentication, limits, faults, Zoho's status codes and
//!   bodies.
//! - `store` holds the org (modules, fields, records, territories) with no HTTP types.
//! - `coql` parses and evaluates the COQL subset; `limits` holds the concurrency gates
//!   and the credit ledger; `faults` the seeded fault stream; `auth` the tokens; `seed`
//!   the generated orgs; `state_file` persistence; `bulk` the Bulk APIs.
//!
//! What is emulated and how each unconfirmed fact was decided is in `docs/sandbox.md`.

pub(crate) mod auth;
pub(crate) mod bulk;
pub(crate) mod coql;
pub(crate) mod faults;
pub(crate) mod limits;
pub(crate) mod routes;
pub(crate) mod seed;
pub(crate) mod state_file;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::edition::Edition;
pub use faults::Faults;

/// Default credentials of the sandbox org (printed by `realign sandbox`).
pub const CLIENT_ID: &str = "realign-sandbox";
pub const CLIENT_SECRET: &str = "realign-sandbox-secret";
pub const REFRESH_TOKEN: &str = "realign-sandbox-refresh";

/// Accounts in the `demo` and `native` seeds.
pub const DEMO_ACCOUNTS: usize = 2_500;
/// Accounts in the `large` seed when [`SandboxConfig::accounts`] is not set.
pub const LARGE_ACCOUNTS: usize = 100_000;

/// Which org the sandbox starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// 2,500 Accounts with a `Territory` picklist field, drifted from the example spec.
    Demo,
    /// The same org using Zoho Territory Management (`Territories` lists, some rule-assigned).
    Native,
    /// The `demo` layout with many accounts (generated on demand).
    Large { accounts: usize },
}

impl FromStr for Seed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "demo" => Ok(Seed::Demo),
            "native" => Ok(Seed::Native),
            "large" => Ok(Seed::Large {
                accounts: LARGE_ACCOUNTS,
            }),
            _ => Err(format!("unknown seed `{s}`: use demo, native or large")),
        }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seed::Demo => "demo",
            Seed::Native => "native",
            Seed::Large { .. } => "large",
        })
    }
}

/// Which rate-limit headers the sandbox sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderProfile {
    /// v8: `X-API-CREDITS-REMAINING` once half the daily credits are used.
    #[default]
    Standard,
    /// Also `X-RATELIMIT-LIMIT`, `-REMAINING`, `-RESET`, and `Retry-After` on 429.
    Legacy,
}

impl FromStr for HeaderProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" => Ok(HeaderProfile::Standard),
            "legacy" => Ok(HeaderProfile::Legacy),
            _ => Err(format!(
                "unknown header profile `{s}`: use standard or legacy"
            )),
        }
    }
}

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub seed: Seed,
    pub edition: Edition,
    /// Where the org is persisted; loaded at start when it exists, seeded otherwise.
    pub state_file: Option<PathBuf>,
    pub headers: HeaderProfile,
    pub faults: Faults,
    /// Lifetime of an access token.
    pub token_ttl: Duration,
    /// Daily credit allowance; defaults to the edition's base allowance.
    pub daily_credits: Option<u64>,
    /// Accounts in the `large` seed (overrides the count inside [`Seed::Large`]).
    pub accounts: Option<usize>,
    /// Lifetime of a Get Records `page_token` (Zoho: 24 h).
    pub page_token_ttl: Duration,
    /// New access tokens per refresh token per 10 minutes (Zoho: 10).
    pub tokens_per_window: usize,
    /// Answer territory assign/remove with 202 `SCHEDULED` and apply them later.
    pub schedule_territory_jobs: bool,
    /// How long a scheduled territory or bulk job takes to finish.
    pub job_delay: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: Seed::Demo,
            edition: Edition::Enterprise,
            state_file: None,
            headers: HeaderProfile::Standard,
            faults: Faults::default(),
            token_ttl: Duration::from_secs(3600),
            daily_credits: None,
            accounts: None,
            page_token_ttl: Duration::from_secs(24 * 60 * 60),
            tokens_per_window: auth::TOKENS_PER_WINDOW,
            schedule_territory_jobs: false,
            job_delay: Duration::from_millis(300),
        }
    }
}

impl SandboxConfig {
    pub(crate) fn seed_spec(&self) -> store::SeedSpec {
        let (layout, accounts) = match self.seed {
            Seed::Demo => (seed::Layout::Field, DEMO_ACCOUNTS),
            Seed::Native => (seed::Layout::Native, DEMO_ACCOUNTS),
            Seed::Large { accounts } => (seed::Layout::Field, self.accounts.unwrap_or(accounts)),
        };
        store::SeedSpec {
            name: self.seed.to_string(),
            layout,
            accounts,
        }
    }
}

/// What the sandbox served, as `GET /__sandbox/stats` reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// API and token requests (not `/__sandbox/*`).
    pub requests: u64,
    /// Requests by `"METHOD /path"`, record and job ids replaced by `{id}`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// 429 answers sent.
    pub throttled: u64,
    pub credits_used: u64,
    /// Peak of API calls in flight at once (admitted ones).
    pub max_in_flight: u64,
    /// Answers by HTTP status (`"reset"` for dropped connections).
    pub by_status: BTreeMap<String, u64>,
    pub credits_by_endpoint: BTreeMap<String, u64>,
}

/// Everything that stops the sandbox from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on `{addr}`")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the sandbox server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot read the sandbox state file `{path}`: {reason}; fix its permissions or delete it to start again from the seed")]
    StateUnreadable { path: PathBuf, reason: String },
    #[error("the sandbox state file `{path}` is corrupt ({reason}); delete it to start again from the seed")]
    StateCorrupt { path: PathBuf, reason: String },
    #[error("the sandbox state file `{path}` holds seed `{found}`, not `{wanted}`; delete it or ask for seed `{found}`")]
    StateSeedMismatch {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("cannot write the sandbox state file `{path}`: {reason}")]
    StateWrite { path: PathBuf, reason: String },
    #[error("cannot read the faults file `{path}`: {reason}")]
    FaultsFile { path: PathBuf, reason: String },
    #[error("cannot change record `{id}`: {reason}")]
    Edit { id: String, reason: String },
    #[error("the sandbox's token endpoint did not give a token: {0}")]
    Token(String),
    #[error("the sandbox task stopped unexpectedly: {0}")]
    Task(String),
}

/// The `export` lines that point realign (or any Zoho client) at a sandbox.
pub fn env_lines(base_url: &str) -> String {
    format!(
        "export ZOHO_CLIENT_ID={CLIENT_ID}\n\
         export ZOHO_CLIENT_SECRET={CLIENT_SECRET}\n\
         export ZOHO_REFRESH_TOKEN={REFRESH_TOKEN}\n\
         export ZOHO_ACCOUNTS_URL={base_url}\n\
         export ZOHO_API_DOMAIN={base_url}\n"
    )
}

/// Runs the sandbox on `listener` until `shutdown` resolves, then flushes the state file.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    serve_when_ready(listener, config, shutdown, || {}).await
}

/// [`serve`], calling `ready` once the org is loaded (or seeded) and requests are about
/// to be served, so a caller announces the server only when it really is up.
pub async fn serve_when_ready(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(),
) -> Result<(), SandboxError> {
    let app = routes::App::new(config, &listener)?;
    ready();
    routes::run(app, listener, shutdown).await
}

/// Binds `127.0.0.1:0` and runs the sandbox in the background.
pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
    let addr = "127.0.0.1:0";
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: addr.into(),
            source,
        })?;
    let local = listener.local_addr().map_err(SandboxError::Serve)?;
    let app = routes::App::new(config, &listener)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(routes::run(Arc::clone(&app), listener, async {
        let _ = rx.await;
    }));
    Ok(SandboxHandle {
        addr: local,
        app,
        stop: Some(tx),
        task: Some(task),
    })
}

/// A running sandbox started by [`start`].
pub struct SandboxHandle {
    addr: SocketAddr,
    app: Arc<routes::App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), SandboxError>>>,
}

impl SandboxHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: both the accounts URL and the API domain.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stats(&self) -> Stats {
        self.app.stats()
    }

    /// A record as the org holds it; not counted in the stats.
    pub fn record(&self, module: &str, id: &str) -> Option<serde_json::Value> {
        let store = self.app.store.lock().unwrap();
        let module = store.module(module).ok()?;
        store
            .get(module, id.parse().ok()?)
            .map(serde_json::Value::Object)
    }

    /// Changes a record as a person in the CRM would (same checks as the UI, a new
    /// `Modified_Time`); not counted in the stats. `PATCH /__sandbox/records/...` over HTTP.
    pub fn edit_record(
        &self,
        module: &str,
        id: &str,
        fields: serde_json::Value,
    ) -> Result<serde_json::Value, SandboxError> {
        let edit = |reason: String| SandboxError::Edit {
            id: id.to_string(),
            reason,
        };
        let serde_json::Value::Object(fields) = fields else {
            return Err(edit("give a JSON object of fields".into()));
        };
        let mut store = self.app.store.lock().unwrap();
        let module = store.module(module).map_err(|e| edit(e.to_string()))?;
        let rid = id.parse().map_err(|_| edit("not a record id".into()))?;
        store
            .edit(module, rid, &fields)
            .map(serde_json::Value::Object)
            .map_err(|e| edit(e.to_string()))
    }

    /// An access token from the sandbox's own token endpoint, for callers that speak raw
    /// HTTP (benchmarks, conformance tests). Counted like any token request.
    pub async fn access_token(&self) -> Result<String, SandboxError> {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/oauth/v2/token", self.base_url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("refresh_token", REFRESH_TOKEN),
            ])
            .send()
            .await
            .map_err(|e| SandboxError::Token(e.to_string()))?
            .json()
            .await
            .map_err(|e| SandboxError::Token(e.to_string()))?;
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SandboxError::Token(answer.to_string()))
    }

    /// Stops the server and writes the state file one last time.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| SandboxError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
