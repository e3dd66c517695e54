//! OAuth: the refresh-token grant, with the access token kept and reused until shortly
//! before it expires. One refresh is shared by every concurrent request (the cache's
//! lock is held across the refresh), so a burst of calls never burns Zoho's quota of
//! 10 new access tokens per refresh token per 10 minutes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

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
    /// Directory of the on-disk token cache, when enabled.
    cache_dir: Option<PathBuf>,
}

/// The on-disk form of a cached token. The file is mode 0600 and named by a hash of the
/// client, the token host and the refresh token, so tokens of different orgs or data
/// centres never mix.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedToken {
    access_token: String,
    api_domain: String,
    expires_at_unix: u64,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, conn: Connection) -> Self {
        TokenSource {
            http,
            conn,
            cached: Mutex::new(None),
            refreshes: Default::default(),
            cache_dir: None,
        }
    }

    pub fn with_cache(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    fn cache_path(&self) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = Sha256::new();
        // The secret is part of the key: a wrong secret must not be papered over by a
        // token cached with the right one.
        for part in [
            self.conn.client_id.as_str(),
            self.conn.client_secret.expose(),
            self.conn.accounts_url.as_str(),
            self.conn.refresh_token.expose(),
            self.conn.api_domain.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = format!("{:x}", h.finalize());
        Some(dir.join(format!("token-{}.json", &digest[..16])))
    }

    fn load_cached(&self) -> Option<AccessToken> {
        let text = std::fs::read_to_string(self.cache_path()?).ok()?;
        let c: CachedToken = serde_json::from_str(&text).ok()?;
        let left = c.expires_at_unix.checked_sub(unix_now())?;
        (left > EXPIRY_MARGIN.as_secs()).then(|| AccessToken {
            token: Secret::new(c.access_token),
            api_domain: c.api_domain,
            expires_at: Instant::now() + Duration::from_secs(left),
        })
    }

    fn store_cached(&self, t: &AccessToken) {
        let Some(path) = self.cache_path() else {
            return;
        };
        let left = t
            .expires_at
            .saturating_duration_since(Instant::now())
            .as_secs();
        let c = CachedToken {
            access_token: t.token.expose().to_string(),
            api_domain: t.api_domain.clone(),
            expires_at_unix: unix_now() + left,
        };
        if let Err(e) = write_private(&path, &serde_json::to_vec(&c).unwrap_or_default()) {
            tracing::warn!("cannot cache the access token in {}: {e}", path.display());
        }
    }

    fn forget_cached(&self) {
        if let Some(p) = self.cache_path() {
            let _ = std::fs::remove_file(p);
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
        if cached.is_none() {
            if let Some(t) = self.load_cached() {
                *cached = Some(t.clone());
                return Ok(t);
            }
        }
        let fresh = self.refresh().await?;
        self.store_cached(&fresh);
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops the cached token if it is still `token` (Zoho said it is invalid), so the
    /// next `get` refreshes once for everyone.
    pub async fn invalidate(&self, token: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| &t.token == token) {
            *cached = None;
            self.forget_cached();
        }
    }

    async fn refresh(&self) -> Result<AccessToken, ZohoError> {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!(
            "{}/oauth/v2/token",
            self.conn.accounts_url.trim_end_matches('/')
        );
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes a file only its owner can read, through a rename so it is never half-written.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".token-{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
        let expires = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
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

    #[tokio::test]
    async fn the_disk_cache_is_private_and_keyed_by_client() {
        let dir = tempfile::tempdir().unwrap();
        let src =
            TokenSource::new(reqwest::Client::new(), conn()).with_cache(dir.path().to_path_buf());
        let t = AccessToken {
            token: Secret::new("1000.abc"),
            api_domain: "https://www.zohoapis.eu".into(),
            expires_at: Instant::now() + Duration::from_secs(3000),
        };
        src.store_cached(&t);
        let path = src.cache_path().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(src.load_cached().unwrap().token.expose(), "1000.abc");
        let mut other = conn();
        other.client_id = "another".into();
        let src2 =
            TokenSource::new(reqwest::Client::new(), other).with_cache(dir.path().to_path_buf());
        assert!(src2.load_cached().is_none());
        // A token about to expire is not reused.
        src.store_cached(&AccessToken {
            expires_at: Instant::now() + Duration::from_secs(10),
            ..t
        });
        assert!(src.load_cached().is_none());
    }

    #[test]
    fn secrets_never_print() {
        let c = conn();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("r3fresh"),
            "{shown}"
        );
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
        let e = parse_token(&json!({"error": "invalid_client"}), "u", &conn())
            .err()
            .unwrap();
        assert!(e.to_string().contains("ZOHO_DC (`eu`)"), "{e}");
        let e = parse_token(&json!({"error": "invalid_code"}), "u", &conn())
            .err()
            .unwrap();
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
