//! One API call: paced, authenticated, retried with backoff, counted.
//!
//! Retried: 429, 500, 502, 503, 504, timeouts and connection errors, and one 401
//! `INVALID_TOKEN` (after a refresh). Everything else goes back to the caller, which
//! reads per-record results. Retrying is safe because every write realign sends is
//! idempotent by construction: it sets a field to a value (or assigns/removes one
//! territory), so sending it twice leaves the record as sending it once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::auth::{Connection, TokenSource};
use super::error::ZohoError;
use super::pacing::{CallClass, Pacer};
use super::retry::{parse_retry_after, RetryPolicy};
use crate::edition::Edition;

/// What the client did, for the cost report.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    pub server_errors: AtomicU64,
    /// Last `X-API-CREDITS-REMAINING` seen, or u64::MAX when none was.
    pub credits_remaining: AtomicU64,
    /// Every backoff delay chosen, in order (what was asked for, before any test scaling).
    pub delays: std::sync::Mutex<Vec<Duration>>,
}

impl ClientStats {
    pub fn get(&self, f: impl Fn(&ClientStats) -> &AtomicU64) -> u64 {
        f(self).load(Ordering::Relaxed)
    }
}

/// A decoded answer: status and JSON body (None for an empty body such as a 204).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
}

pub struct Client {
    http: reqwest::Client,
    auth: TokenSource,
    pacer: Pacer,
    policy: RetryPolicy,
    timeout: Duration,
    deadline: Option<Instant>,
    /// Retries left for the whole run, shared by every call.
    retry_budget: AtomicU64,
    /// No call is sent before this instant (set by nearly-exhausted rate-limit windows).
    hold_until: std::sync::Mutex<Option<Instant>>,
    /// Multiplies every wait; tests set 0 to run retries instantly yet see the delays.
    time_scale: f64,
    pub stats: Arc<ClientStats>,
}

/// Retries one run may spend across all its calls before it stops.
pub const DEFAULT_RETRY_BUDGET: u64 = 500;

impl Client {
    pub fn new(
        conn: Connection,
        edition: Edition,
        concurrency: Option<usize>,
    ) -> Result<Client, ZohoError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("realign/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| ZohoError::Config(format!("cannot set up the HTTP client: {e}")))?;
        let stats = ClientStats::default();
        stats.credits_remaining.store(u64::MAX, Ordering::Relaxed);
        Ok(Client {
            auth: TokenSource::new(http.clone(), conn),
            http,
            pacer: Pacer::new(edition, concurrency),
            policy: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            deadline: None,
            retry_budget: AtomicU64::new(DEFAULT_RETRY_BUDGET),
            hold_until: std::sync::Mutex::new(None),
            time_scale: 1.0,
            stats: Arc::new(stats),
        })
    }

    /// Replaces the pacer, e.g. with other call rates.
    pub fn with_pacer(mut self, pacer: Pacer) -> Self {
        self.pacer = pacer;
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The test switch: waits are recorded in [`ClientStats::delays`] and slept for
    /// `scale` times as long (0 for no waiting at all).
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale.max(0.0);
        self
    }

    pub fn with_retry_budget(self, retries: u64) -> Self {
        self.retry_budget.store(retries, Ordering::Relaxed);
        self
    }

    /// Keeps the access token in `dir` (mode 0600) between runs.
    pub fn with_token_cache(mut self, dir: std::path::PathBuf) -> Self {
        self.auth = self.auth.with_cache(dir);
        self
    }

    /// The last `X-API-CREDITS-REMAINING` Zoho sent, if any.
    pub fn credits_remaining(&self) -> Option<u64> {
        Some(self.stats.credits_remaining.load(Ordering::Relaxed)).filter(|c| *c != u64::MAX)
    }

    async fn wait_for_window(&self) {
        let until = *self.hold_until.lock().expect("hold lock");
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                let wait = t - now;
                self.stats.delays.lock().expect("delays lock").push(wait);
                tokio::time::sleep(wait.mul_f64(self.time_scale)).await;
                let mut hold = self.hold_until.lock().expect("hold lock");
                if *hold == Some(t) {
                    *hold = None;
                }
            }
        }
    }

    fn note_window(&self, headers: &reqwest::header::HeaderMap) {
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let h = super::ratelimit::Headers {
            limit: get("x-ratelimit-limit"),
            remaining: get("x-ratelimit-remaining"),
            reset: get("x-ratelimit-reset"),
        };
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Some(wait) = super::ratelimit::pause_for(&h, now_unix) {
            let until = Instant::now() + wait;
            let mut hold = self.hold_until.lock().expect("hold lock");
            if hold.is_none_or(|t| t < until) {
                tracing::info!(
                    seconds = wait.as_secs(),
                    "rate-limit window nearly used up: pausing until it resets"
                );
                *hold = Some(until);
            }
        }
    }

    /// No retry starts after `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    pub fn connection(&self) -> &Connection {
        self.auth.connection()
    }

    pub fn token_refreshes(&self) -> u64 {
        self.auth.refreshes()
    }

    /// The API host in use (after the first token, the token answer's `api_domain`).
    pub async fn api_domain(&self) -> Result<String, ZohoError> {
        Ok(self.auth.get().await?.api_domain)
    }

    /// Sends one call, retrying transient failures; returns the first non-transient answer.
    pub async fn call(
        &self,
        class: CallClass,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, ZohoError> {
        self.call_with_headers(class, method, path, query, body, &[])
            .await
    }

    /// [`Client::call`] with extra request headers (e.g. `If-Unmodified-Since`).
    pub async fn call_with_headers(
        &self,
        class: CallClass,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, ZohoError> {
        let what = format!("{method} {path}");
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.auth.get().await?;
            let url = format!("{}{}", token.api_domain, path);
            let outcome = {
                let _slot = self.pacer.acquire(class).await;
                self.wait_for_window().await;
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                let mut req = self
                    .http
                    .request(method.clone(), &url)
                    .header(
                        "Authorization",
                        format!("Zoho-oauthtoken {}", token.token.expose()),
                    )
                    .timeout(self.timeout)
                    .query(query);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                if let Some(b) = body {
                    req = req.json(b);
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        self.note_window(resp.headers());
                        let retry_after = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        if let Some(c) = resp
                            .headers()
                            .get("x-api-credits-remaining")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                        {
                            self.stats.credits_remaining.store(c, Ordering::Relaxed);
                        }
                        match resp.bytes().await {
                            Ok(bytes) => Ok((status, bytes, retry_after)),
                            Err(e) => Err(transport(&e)),
                        }
                    }
                    Err(e) => Err(transport(&e)),
                }
            };
            let (status, bytes, retry_after) = match outcome {
                Ok(x) => x,
                Err(last) => {
                    self.backoff(&what, attempt, None, last).await?;
                    continue;
                }
            };
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => Some(v),
                    Err(_) if status.is_server_error() => None,
                    Err(e) => {
                        return Err(ZohoError::Garbage {
                            what,
                            detail: format!("HTTP {}, body is not JSON: {e}", status.as_u16()),
                        })
                    }
                }
            };
            let code = body
                .as_ref()
                .and_then(|b| b.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match status.as_u16() {
                429 => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    self.pacer.throttled(class);
                    self.backoff(&what, attempt, retry_after, format!("HTTP 429 `{code}`"))
                        .await?;
                }
                500 | 502 | 503 | 504 => {
                    self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
                    self.backoff(
                        &what,
                        attempt,
                        retry_after,
                        format!("HTTP {}", status.as_u16()),
                    )
                    .await?;
                }
                401 if (code == "INVALID_TOKEN" || code == "INVALID_OAUTHTOKEN") && !refreshed => {
                    refreshed = true;
                    self.auth.invalidate(&token.token).await;
                }
                401 => {
                    let message = body
                        .as_ref()
                        .and_then(|b| b.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let hint = match code.as_str() {
                        "OAUTH_SCOPE_MISMATCH" => "the refresh token lacks a scope realign needs: generate one with the scopes listed in the README",
                        "INVALID_TOKEN" | "INVALID_OAUTHTOKEN" => "a fresh access token was refused too: the token may be revoked, or ZOHO_API_DOMAIN may point at another data centre than the token's",
                        _ => "check ZOHO_DC and ZOHO_API_DOMAIN: a token from one data centre is refused by the others",
                    };
                    return Err(ZohoError::Auth {
                        message: format!("Zoho refused the credentials on {what} (HTTP 401 `{code}` {message}): {hint}"),
                    });
                }
                _ => {
                    self.pacer.succeeded(class);
                    return Ok(Answer { status, body });
                }
            }
        }
    }

    /// Waits before the next attempt, or gives up when attempts or time run out.
    async fn backoff(
        &self,
        what: &str,
        attempt: u32,
        retry_after: Option<Duration>,
        last: String,
    ) -> Result<(), ZohoError> {
        if attempt >= self.policy.max_attempts {
            return Err(ZohoError::GaveUp {
                what: what.to_string(),
                attempts: attempt,
                last,
            });
        }
        if let Some(ra) = retry_after {
            if ra > self.policy.max_retry_after {
                let at = SystemTime::now() + ra;
                return Err(ZohoError::WaitTooLong {
                    what: what.to_string(),
                    seconds: ra.as_secs(),
                    cap: self.policy.max_retry_after.as_secs(),
                    retry_at: httpdate::fmt_http_date(at),
                });
            }
        }
        if self
            .retry_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_err()
        {
            return Err(ZohoError::GaveUp {
                what: what.to_string(),
                attempts: attempt,
                last: format!("{last}; the run's retry budget is spent"),
            });
        }
        let unit: f64 = rand::rng().random();
        let delay = self.policy.delay(attempt, unit, retry_after);
        if let Some(deadline) = self.deadline {
            if Instant::now() + delay > deadline {
                return Err(ZohoError::GaveUp {
                    what: what.to_string(),
                    attempts: attempt,
                    last: format!("{last}; the run's deadline is reached"),
                });
            }
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.stats.delays.lock().expect("delays lock").push(delay);
        tracing::info!(
            "retrying {what} in {:.1} s after {last} (attempt {attempt})",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay.mul_f64(self.time_scale)).await;
        Ok(())
    }
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // Without the URL: query strings can carry ids, never secrets, but keep logs short.
        let mut s = e.to_string();
        if let Some(u) = e.url() {
            s = s.replace(u.as_str(), "<url>");
        }
        format!("connection error: {s}")
    }
}
