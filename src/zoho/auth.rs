//! OAuth: the refresh-token grant, with the access token kept and reused until shortly
//! before it expires. One refresh is shared by every concurrent request (the cache's
//! lock is held across the refresh), so a burst of calls never burns Zoho's quota of
//! 10 new access tokens per refresh token per 10 minutes.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ZohoError;

/// A secret that never prints: Debug and Display show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where and as whom to connect. Built from the environment only.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    /// Token host, e.g. `https://accounts.zoho.eu`; the grant goes to `{accounts_url}/oauth/v2/token`.
    pub accounts_url: String,
    /// API host override; otherwise the token answer's `api_domain` is used.
    pub api_domain: Option<String>,
    /// Data centre name, for error messages.
    pub dc: String,
}

#[derive(Clone)]
pub struct AccessToken {
    pub token: Secret,
    pub api_domain: String,
    pub expires_at: Instant,
}

/// Refresh this long before expiry, so no request goes out with a token about to die.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

pub struct TokenSource {
    http: reqwest::Client,
    conn: Connection,
    cached: Mutex<Option<AccessToken>>,
    refreshes: std::sync::atomic::AtomicU64,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, conn: Connection) -> Self {
        TokenSource {
            http,
            conn,
            cached: Mutex::new(None),
            refreshes: Default::default(),
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Token refreshes made so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid access token, refreshing only when none is cached or it is near expiry.
    pub async fn get(&self) -> Result<AccessToken, ZohoError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            if t.expires_at > Instant::now() + EXPIRY_MARGIN {
                return Ok(t.clone());
            }
        }
        let fresh = self.refresh().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops the cached token if it is still `token` (Zoho said it is invalid), so the
    /// next `get` refreshes once for everyone.
    pub async fn invalidate(&self, token: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| &t.token == token) {
            *cached = None;
        }
    }

    async fn refresh(&self) -> Result<AccessToken, ZohoError> {
        self.refreshes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("{}/oauth/v2/token", self.conn.accounts_url.trim_end_matches('/'));
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.conn.client_id.as_str()),
            ("client_secret", self.conn.client_secret.expose()),
            ("refresh_token", self.conn.refresh_token.expose()),
        ];
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| ZohoError::Auth {
                message: format!(
                    "cannot reach the Zoho token endpoint `{url}`: {}; check ZOHO_DC (`{}`) or ZOHO_ACCOUNTS_URL and the network",
                    without_url(&e),
                    self.conn.dc
                ),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).map_err(|_| ZohoError::Auth {
            message: format!(
                "the token endpoint `{url}` answered HTTP {} with something that is not JSON: is ZOHO_ACCOUNTS_URL (or ZOHO_DC `{}`) right?",
                status.as_u16(),
                self.conn.dc
            ),
        })?;
        parse_token(&body, &url, &self.conn)
    }
}

/// reqwest's error text without the URL (the URL of a token call may carry secrets in
/// some setups; ours are in the body, but never risk it).
fn without_url(e: &reqwest::Error) -> String {
    let mut e2 = e.to_string();
    if let Some(u) = e.url() {
        e2 = e2.replace(u.as_str(), "<token endpoint>");
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e2
    }
}

/// Interprets a token-endpoint answer. Zoho signals failure with an `error` key (often
/// with HTTP 200); success is the presence of `access_token` (reference §9.2).
fn parse_token(body: &Value, url: &str, conn: &Connection) -> Result<AccessToken, ZohoError> {
    if let Some(tok) = body.get("access_token").and_then(Value::as_str) {
        let expires = body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let api_domain = conn
            .api_domain
            .clone()
            .or_else(|| body.get("api_domain").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| ZohoError::Auth {
                message: "the token answer has no `api_domain` and ZOHO_API_DOMAIN is not set: set ZOHO_API_DOMAIN".into(),
            })?;
        return Ok(AccessToken {
            token: Secret::new(tok),
            api_domain: api_domain.trim_end_matches('/').to_string(),
            expires_at: Instant::now() + Duration::from_secs(expires),
        });
    }
    let err = body.get("error").and_then(Value::as_str).unwrap_or("");
    let desc = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let lower = format!("{err} {desc}").to_lowercase();
    if lower.contains("too many requests") || lower.contains("access denied") {
        return Err(ZohoError::TokenThrottled {
            detail: format!("`{err}`"),
        });
    }
    let dc = &conn.dc;
    let message = match err {
        "invalid_client" | "invalid_client_secret" => format!(
            "Zoho refused the client (`{err}` from `{url}`): check ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET, and that ZOHO_DC (`{dc}`) is the data centre the client was registered in"
        ),
        "invalid_code" | "invalid_token" => format!(
            "Zoho refused the refresh token (`{err}` from `{url}`): it may be revoked, belong to another client, or to another data centre than ZOHO_DC (`{dc}`); generate a new one with the scopes in the README"
        ),
        "" => format!("the token endpoint `{url}` answered without `access_token` or `error`: is ZOHO_ACCOUNTS_URL right?"),
        other => format!("Zoho refused the token refresh (`{other}` from `{url}`): check the credentials and ZOHO_DC (`{dc}`)"),
    };
    Err(ZohoError::Auth { message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn() -> Connection {
        Connection {
            client_id: "c".into(),
            client_secret: Secret::new("s3cret"),
            refresh_token: Secret::new("r3fresh"),
            accounts_url: "https://accounts.zoho.eu".into(),
            api_domain: None,
            dc: "eu".into(),
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = conn();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("r3fresh"), "{shown}");
    }

    #[test]
    fn reads_a_token_answer() {
        let t = parse_token(
            &json!({"access_token": "1000.x", "api_domain": "https://www.zohoapis.eu", "expires_in": 3600, "token_type": "Bearer"}),
            "u",
            &conn(),
        )
        .ok()
        .unwrap();
        assert_eq!(t.api_domain, "https://www.zohoapis.eu");
        assert_eq!(t.token.expose(), "1000.x");
    }

    #[test]
    fn names_the_likely_cause_of_a_refusal() {
        let e = parse_token(&json!({"error": "invalid_client"}), "u", &conn()).err().unwrap();
        assert!(e.to_string().contains("ZOHO_DC (`eu`)"), "{e}");
        let e = parse_token(&json!({"error": "invalid_code"}), "u", &conn()).err().unwrap();
        assert!(e.to_string().contains("revoked"), "{e}");
        let e = parse_token(
            &json!({"error": "Access Denied", "error_description": "You have made too many requests continuously."}),
            "u",
            &conn(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, ZohoError::TokenThrottled { .. }), "{e}");
    }
}
