//! Reading Zoho's rate-limit headers into decisions (pure).
//!
//! v8 sends `X-API-CREDITS-REMAINING` once half the day's credits are used. Older APIs
//! sent `X-RATELIMIT-LIMIT`, `-REMAINING` and `-RESET`; users still report them, so when
//! they appear realign pauses before the window runs dry instead of waiting for a 429.

use std::time::Duration;

/// Pause when fewer than this share of the window's calls remain.
pub const LOW_WATER: f64 = 0.10;
/// A reset further away than this is not believed (a misread unit, a clock far off).
pub const MAX_RESET_WAIT: Duration = Duration::from_secs(15 * 60);

/// The headers of one answer that bear on pacing, as text.
#[derive(Debug, Default, Clone)]
pub struct Headers<'a> {
    pub limit: Option<&'a str>,
    pub remaining: Option<&'a str>,
    pub reset: Option<&'a str>,
}

/// How long to hold every call, if the window is nearly used up. `now_unix` is the
/// current time in seconds since the epoch, to read a reset given as an epoch time.
pub fn pause_for(h: &Headers<'_>, now_unix: u64) -> Option<Duration> {
    let limit: f64 = h.limit?.trim().parse().ok()?;
    let remaining: f64 = h.remaining?.trim().parse().ok()?;
    if limit <= 0.0 || remaining >= limit * LOW_WATER {
        return None;
    }
    let reset: u64 = h
        .reset?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)? as u64;
    // Values past a billion are epoch seconds (2001 onwards); smaller ones are a delta.
    let wait = if reset > 1_000_000_000 {
        if reset <= now_unix {
            return None;
        }
        reset - now_unix
    } else {
        reset
    };
    let wait = Duration::from_secs(wait);
    (wait > Duration::ZERO && wait <= MAX_RESET_WAIT).then_some(wait)
}

/// Refuses a job whose cost is more than the credits known to remain.
pub fn check_budget(needed: u64, remaining: Option<u64>) -> Result<(), String> {
    match remaining {
        Some(have) if have < needed => Err(format!(
            "the apply needs about {needed} API credits and Zoho reports {have} left today: wait for credits to free up (the window is a rolling 24 hours) or split the change"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_000_000;

    fn h<'a>(l: &'a str, r: &'a str, reset: &'a str) -> Headers<'a> {
        Headers {
            limit: Some(l),
            remaining: Some(r),
            reset: Some(reset),
        }
    }

    #[test]
    fn pauses_below_ten_percent_until_the_reset() {
        assert_eq!(
            pause_for(&h("100", "9", "30"), NOW),
            Some(Duration::from_secs(30))
        );
        assert_eq!(pause_for(&h("100", "10", "30"), NOW), None);
        assert_eq!(
            pause_for(&h("100", "0", &(NOW + 42).to_string()), NOW),
            Some(Duration::from_secs(42))
        );
    }

    #[test]
    fn never_stalls_on_a_past_or_absurd_reset() {
        assert_eq!(pause_for(&h("100", "1", &(NOW - 5).to_string()), NOW), None);
        assert_eq!(
            pause_for(&h("100", "1", &(NOW + 86_400).to_string()), NOW),
            None
        );
        assert_eq!(pause_for(&h("100", "1", "999999"), NOW), None);
        assert_eq!(pause_for(&h("100", "1", "0"), NOW), None);
        assert_eq!(pause_for(&h("100", "1", "soon"), NOW), None);
        assert_eq!(pause_for(&h("0", "0", "5"), NOW), None);
        assert_eq!(pause_for(&Headers::default(), NOW), None);
    }

    #[test]
    fn budget_refuses_what_cannot_finish() {
        assert!(check_budget(70, Some(69))
            .unwrap_err()
            .contains("needs about 70"));
        assert!(check_budget(70, Some(70)).is_ok());
        assert!(check_budget(70, None).is_ok());
    }
}
