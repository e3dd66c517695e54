//! Injected latency and failures: what a flaky network and a busy org do to a client.
//!
//! Every decision comes from one ChaCha stream seeded by [`Faults::seed`], drawn once per
//! API request in arrival order, so a run with the same requests in the same order sees
//! the same faults.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SandboxError;

/// Faults to inject; every key is optional and all default to "off".
#[derive(Default, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Seed of the fault stream.
    pub seed: u64,
    /// Added to every API answer.
    pub latency_ms: u64,
    /// Up to this much more, drawn uniformly per request.
    pub jitter_ms: u64,
    /// Share of API calls answered 500/502/503/504.
    pub error_rate: f64,
    /// Share of API calls answered 429 `TOO_MANY_REQUESTS` (each one starts a burst).
    pub throttle_rate: f64,
    /// Calls in a row answered 429 once a throttle fault fires (0 or 1: just that one).
    pub throttle_burst: usize,
    /// Share of API calls whose connection is dropped after the headers were sent.
    pub reset_rate: f64,
    /// Share of API calls answered only after [`Faults::stall_ms`].
    pub stall_rate: f64,
    /// How long a stalled call waits before answering (0 means 60 s).
    pub stall_ms: u64,
    /// Concurrency slots held permanently by another integration.
    pub neighbour_concurrency: usize,
    /// Credits another integration spends per minute from the same daily allowance.
    pub neighbour_credits_per_min: u64,
}

impl Faults {
    /// Reads a faults JSON object from `path`.
    pub fn from_file(path: &Path) -> Result<Faults, SandboxError> {
        let text = std::fs::read_to_string(path).map_err(|source| SandboxError::FaultsFile {
            path: path.to_path_buf(),
            reason: source.to_string(),
        })?;
        let faults: Faults =
            serde_json::from_str(&text).map_err(|source| SandboxError::FaultsFile {
                path: path.to_path_buf(),
                reason: source.to_string(),
            })?;
        faults
            .validate()
            .map_err(|reason| SandboxError::FaultsFile {
                path: path.to_path_buf(),
                reason,
            })?;
        Ok(faults)
    }

    /// Checks that every rate is a share between 0 and 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("reset_rate", self.reset_rate),
            ("stall_rate", self.stall_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("`{name}` is `{rate}`: use a share between 0 and 1"));
            }
        }
        Ok(())
    }

    pub(crate) fn stall(&self) -> Duration {
        if self.stall_ms == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(self.stall_ms)
        }
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer with this 5xx status.
    ServerError(u16),
    Throttle,
    Reset,
    Stall,
}

/// The seeded stream of fault decisions.
pub struct FaultPlan {
    pub faults: Faults,
    rng: ChaCha8Rng,
    /// Calls still to throttle in the current burst.
    burst_left: usize,
}

impl FaultPlan {
    pub fn new(faults: Faults) -> FaultPlan {
        let rng = ChaCha8Rng::seed_from_u64(faults.seed);
        FaultPlan {
            faults,
            rng,
            burst_left: 0,
        }
    }

    /// Draws the delay and the fault for the next request.
    pub fn draw(&mut self) -> (Duration, Fault) {
        let f = &self.faults;
        let jitter = if f.jitter_ms > 0 {
            self.rng.random_range(0..=f.jitter_ms)
        } else {
            0
        };
        let delay = Duration::from_millis(f.latency_ms + jitter);
        let roll: f64 = self.rng.random();
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return (delay, Fault::Throttle);
        }
        let error_edge = f.error_rate;
        let throttle_edge = error_edge + f.throttle_rate;
        let reset_edge = throttle_edge + f.reset_rate;
        let stall_edge = reset_edge + f.stall_rate;
        let fault = if roll < error_edge {
            let statuses = [500, 502, 503, 504];
            Fault::ServerError(statuses[self.rng.random_range(0..statuses.len())])
        } else if roll < throttle_edge {
            self.burst_left = f.throttle_burst.saturating_sub(1);
            Fault::Throttle
        } else if roll < reset_edge {
            Fault::Reset
        } else if roll < stall_edge {
            Fault::Stall
        } else {
            Fault::None
        };
        (delay, fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_faults() {
        let faults = Faults {
            seed: 7,
            error_rate: 0.2,
            throttle_rate: 0.2,
            reset_rate: 0.1,
            stall_rate: 0.1,
            jitter_ms: 30,
            ..Faults::default()
        };
        let mut a = FaultPlan::new(faults.clone());
        let mut b = FaultPlan::new(faults);
        let xs: Vec<_> = (0..200).map(|_| a.draw()).collect();
        let ys: Vec<_> = (0..200).map(|_| b.draw()).collect();
        assert_eq!(xs, ys);
        let errors = xs
            .iter()
            .filter(|(_, f)| matches!(f, Fault::ServerError(_)))
            .count();
        assert!((20..=60).contains(&errors), "{errors} errors in 200");
        assert!(xs.iter().any(|(_, f)| *f == Fault::Stall));
    }

    #[test]
    fn a_throttle_fault_can_come_as_a_burst() {
        let mut plan = FaultPlan::new(Faults {
            seed: 1,
            throttle_rate: 0.05,
            throttle_burst: 4,
            ..Faults::default()
        });
        let xs: Vec<bool> = (0..400).map(|_| plan.draw().1 == Fault::Throttle).collect();
        let first = xs
            .iter()
            .position(|t| *t)
            .expect("some throttling in 400 calls");
        assert!(
            xs[first..first + 4].iter().all(|t| *t),
            "{:?}",
            &xs[first..first + 5]
        );
    }

    #[test]
    fn no_faults_by_default() {
        let mut plan = FaultPlan::new(Faults::default());
        assert!((0..100).all(|_| plan.draw() == (Duration::ZERO, Fault::None)));
    }

    #[test]
    fn unknown_keys_and_bad_rates_are_refused() {
        assert!(serde_json::from_str::<Faults>(r#"{"eror_rate":0.1}"#).is_err());
        let f: Faults = serde_json::from_str(r#"{"error_rate":1.5}"#).unwrap();
        assert!(f.validate().unwrap_err().contains("`error_rate`"));
    }
}
