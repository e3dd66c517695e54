//! The backoff policy: pure, so it is tested without a clock or a network.
//!
//! Exponential backoff with full jitter (a uniform draw between zero and the capped
//! exponential), with a server-given Retry-After as a floor.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Longest Retry-After realign will honour; beyond it the run stops.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
            max_attempts: 8,
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy with no waiting, for tests.
    pub fn immediate() -> Self {
        RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            ..RetryPolicy::default()
        }
    }

    /// Delay before retry number `attempt` (1 for the first retry). `unit` is a uniform
    /// draw in [0, 1); `retry_after` a server hint, taken as a floor.
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let jittered = exp.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered,
        }
    }
}

/// Parses a Retry-After value: delta-seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn grows_exponentially_within_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.999_999, None).as_millis(), 249);
        assert_eq!(p.delay(3, 0.999_999, None).as_millis(), 999);
        assert_eq!(p.delay(30, 0.999_999, None), p.cap.mul_f64(0.999_999));
        assert_eq!(p.delay(5, 0.0, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        let floor = Duration::from_secs(7);
        assert_eq!(p.delay(1, 0.5, Some(floor)), floor);
        assert_eq!(
            p.delay(10, 0.999_999, Some(Duration::from_secs(1))),
            p.cap.mul_f64(0.999_999)
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(" 12 ", now),
            Some(Duration::from_secs(12))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        let _ = SystemTime::now();
    }
}
