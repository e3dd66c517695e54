//! OAuth for the sandbox: the refresh-token grant, access-token expiry and revocation,
//! and Zoho's limit of new access tokens per refresh token.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// New access tokens one refresh token may mint per window (reference section 9.3).
pub const TOKENS_PER_WINDOW: usize = 10;
pub const TOKEN_WINDOW: Duration = Duration::from_secs(600);
/// Active access tokens per refresh token; minting one more drops the oldest.
pub const ACTIVE_TOKENS: usize = 15;

#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// `grant_type` missing or not `refresh_token`.
    UnsupportedGrant,
    /// Unknown client id or wrong secret.
    InvalidClient,
    /// Unknown refresh token.
    InvalidCode,
    /// Too many new tokens in the window.
    TooMany,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No `Authorization: Zoho-oauthtoken ...` header.
    Missing,
    /// Unknown, revoked or expired.
    Invalid,
}

pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

pub struct Auth {
    credentials: Credentials,
    ttl: Duration,
    per_window: usize,
    active: VecDeque<(String, Instant)>,
    minted: VecDeque<Instant>,
}

impl Auth {
    pub fn new(credentials: Credentials, ttl: Duration, per_window: usize) -> Auth {
        Auth {
            credentials,
            ttl,
            per_window,
            active: VecDeque::new(),
            minted: VecDeque::new(),
        }
    }

    /// The refresh-token grant; returns the new access token.
    pub fn grant(
        &mut self,
        params: &HashMap<String, String>,
        now: Instant,
    ) -> Result<String, GrantError> {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "refresh_token" {
            return Err(GrantError::UnsupportedGrant);
        }
        if get("client_id") != self.credentials.client_id
            || get("client_secret") != self.credentials.client_secret
        {
            return Err(GrantError::InvalidClient);
        }
        if get("refresh_token") != self.credentials.refresh_token {
            return Err(GrantError::InvalidCode);
        }
        while self
            .minted
            .front()
            .is_some_and(|&t| now.duration_since(t) >= TOKEN_WINDOW)
        {
            self.minted.pop_front();
        }
        if self.minted.len() >= self.per_window {
            return Err(GrantError::TooMany);
        }
        self.minted.push_back(now);
        let mut rng = rand::rng();
        let token = format!(
            "1000.{:032x}.{:032x}",
            rng.random::<u128>(),
            rng.random::<u128>()
        );
        self.active.push_back((token.clone(), now + self.ttl));
        while self.active.len() > ACTIVE_TOKENS {
            self.active.pop_front();
        }
        Ok(token)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>, now: Instant) -> Result<(), TokenError> {
        let token = header
            .and_then(|h| h.strip_prefix("Zoho-oauthtoken "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        match self.active.iter().find(|(t, _)| t == token) {
            Some((_, expires)) if *expires > now => Ok(()),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Invalidates every access token (the refresh token stays valid).
    pub fn revoke_all(&mut self) {
        self.active.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            Credentials {
                client_id: "c".into(),
                client_secret: "s".into(),
                refresh_token: "r".into(),
            },
            Duration::from_secs(60),
            TOKENS_PER_WINDOW,
        )
    }

    fn params(secret: &str) -> HashMap<String, String> {
        [
            ("grant_type", "refresh_token"),
            ("client_id", "c"),
            ("client_secret", secret),
            ("refresh_token", "r"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn tokens_expire_and_are_rate_limited() {
        let t0 = Instant::now();
        let mut a = auth();
        assert_eq!(a.grant(&params("x"), t0), Err(GrantError::InvalidClient));
        let token = a.grant(&params("s"), t0).unwrap();
        let header = format!("Zoho-oauthtoken {token}");
        assert_eq!(a.check(Some(&header), t0), Ok(()));
        assert_eq!(a.check(Some("Bearer x"), t0), Err(TokenError::Missing));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(a.check(Some(&header), later), Err(TokenError::Invalid));
        for _ in 1..TOKENS_PER_WINDOW {
            a.grant(&params("s"), later).unwrap();
        }
        assert_eq!(a.grant(&params("s"), later), Err(GrantError::TooMany));
        assert!(a.grant(&params("s"), t0 + TOKEN_WINDOW).is_ok());
    }
}
