//! Zoho's request limits: the concurrency gates and the rolling 24-hour credit ledger.
//!
//! A call arriving when its gate is full is refused at once (Zoho does not queue), and a
//! call that would overdraw the credit allowance is refused before it does anything.
//! Costs follow the reference, section 8.1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a call was refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Concurrency,
    SubConcurrency,
    /// Credits exhausted; enough of them free up after this long.
    Credits(Duration),
}

#[derive(Default)]
struct GateState {
    in_flight: usize,
    heavy_in_flight: usize,
    max_in_flight: usize,
}

/// The concurrency gate and the sub-concurrency gate for heavy calls.
#[derive(Default)]
pub struct Gates {
    state: Mutex<GateState>,
}

/// A slot in the gate, released on drop.
pub struct Slot {
    gates: Arc<Gates>,
    heavy: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.gates.state.lock().unwrap();
        s.in_flight -= 1;
        if self.heavy {
            s.heavy_in_flight -= 1;
        }
    }
}

impl Gates {
    /// Takes a slot when one is free in the gate (`capacity`) and, for heavy calls, in
    /// the sub-concurrency gate (`heavy_capacity`).
    pub fn enter(
        self: &Arc<Self>,
        heavy: bool,
        capacity: usize,
        heavy_capacity: usize,
    ) -> Result<Slot, Refusal> {
        let mut s = self.state.lock().unwrap();
        if s.in_flight >= capacity {
            return Err(Refusal::Concurrency);
        }
        if heavy && s.heavy_in_flight >= heavy_capacity {
            return Err(Refusal::SubConcurrency);
        }
        s.in_flight += 1;
        if heavy {
            s.heavy_in_flight += 1;
        }
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        Ok(Slot {
            gates: Arc::clone(self),
            heavy,
        })
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn reset_peak(&self) {
        let mut s = self.state.lock().unwrap();
        s.max_in_flight = s.in_flight;
    }
}

/// Credits spent in the last 24 hours, in one-second buckets.
pub struct Ledger {
    pub daily: u64,
    spent: VecDeque<(Instant, u64)>,
    total: u64,
    neighbour_since: Instant,
    neighbour_carry: f64,
}

impl Ledger {
    pub fn new(daily: u64, now: Instant) -> Ledger {
        Ledger {
            daily,
            spent: VecDeque::new(),
            total: 0,
            neighbour_since: now,
            neighbour_carry: 0.0,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, cost)) = self.spent.front() {
            if now.duration_since(at) >= WINDOW {
                self.total -= cost;
                self.spent.pop_front();
            } else {
                break;
            }
        }
    }

    fn record(&mut self, now: Instant, cost: u64) {
        if cost == 0 {
            return;
        }
        match self.spent.back_mut() {
            Some((at, sum)) if now.duration_since(*at) < Duration::from_secs(1) => *sum += cost,
            _ => self.spent.push_back((now, cost)),
        }
        self.total += cost;
    }

    /// Books what the other integration spent since the last look.
    pub fn accrue_neighbour(&mut self, per_min: u64, now: Instant) {
        let elapsed = now.duration_since(self.neighbour_since).as_secs_f64();
        self.neighbour_since = now;
        if per_min == 0 {
            self.neighbour_carry = 0.0;
            return;
        }
        self.neighbour_carry += elapsed * per_min as f64 / 60.0;
        let whole = self.neighbour_carry.floor();
        self.neighbour_carry -= whole;
        let room = self.daily.saturating_sub(self.total);
        self.record(now, (whole as u64).min(room));
    }

    /// Spends `cost` credits, or says how long until they would be available.
    pub fn charge(&mut self, cost: u64, now: Instant) -> Result<(), Refusal> {
        self.expire(now);
        if self.total + cost > self.daily {
            let mut need = self.total + cost - self.daily;
            let mut wait = WINDOW;
            for &(at, spent) in &self.spent {
                wait = WINDOW.saturating_sub(now.duration_since(at));
                if spent >= need {
                    break;
                }
                need -= spent;
            }
            return Err(Refusal::Credits(wait.max(Duration::from_secs(1))));
        }
        self.record(now, cost);
        Ok(())
    }

    pub fn used(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.total
    }

    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.daily.saturating_sub(self.used(now))
    }

    /// Time until the oldest spent credit frees up.
    pub fn next_release(&mut self, now: Instant) -> Duration {
        self.expire(now);
        match self.spent.front() {
            Some(&(at, _)) => WINDOW.saturating_sub(now.duration_since(at)),
            None => Duration::ZERO,
        }
    }

    pub fn clear(&mut self, now: Instant) {
        self.spent.clear();
        self.total = 0;
        self.neighbour_since = now;
        self.neighbour_carry = 0.0;
    }
}

/// Credits a COQL query costs by its LIMIT (reference section 6).
pub fn coql_cost(limit: usize) -> u64 {
    match limit {
        0..=200 => 1,
        201..=1000 => 2,
        _ => 3,
    }
}

/// Credits an insert or update of `records` records costs: one per ten, rounded up.
pub fn write_cost(records: usize) -> u64 {
    (records.max(1) as u64).div_ceil(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_refuses_when_full_and_frees_on_drop() {
        let gates = Arc::new(Gates::default());
        let a = gates.enter(false, 2, 1).unwrap();
        let b = gates.enter(true, 2, 1).unwrap();
        assert_eq!(gates.enter(false, 2, 1).err(), Some(Refusal::Concurrency));
        drop(a);
        assert_eq!(gates.enter(true, 2, 1).err(), Some(Refusal::SubConcurrency));
        drop(b);
        assert!(gates.enter(true, 2, 1).is_ok());
        assert_eq!(gates.max_in_flight(), 2);
    }

    #[test]
    fn credits_free_up_after_a_day() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut ledger = Ledger::new(10, t0);
        ledger.charge(6, t0).unwrap();
        ledger.charge(4, t0 + hour).unwrap();
        let Err(Refusal::Credits(wait)) = ledger.charge(1, t0 + hour) else {
            panic!("should be exhausted")
        };
        assert_eq!(wait, WINDOW - hour);
        assert_eq!(ledger.remaining(t0 + WINDOW), 6);
        assert_eq!(ledger.remaining(t0 + WINDOW + hour), 10);
    }

    #[test]
    fn neighbours_drain_the_same_allowance() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(1000, t0);
        ledger.accrue_neighbour(120, t0 + Duration::from_secs(30));
        assert_eq!(ledger.used(t0 + Duration::from_secs(30)), 60);
    }

    #[test]
    fn costs_follow_the_reference() {
        assert_eq!(
            [1, 200, 201, 1000, 1001, 2000].map(coql_cost),
            [1, 1, 2, 2, 3, 3]
        );
        assert_eq!([1, 10, 11, 100].map(write_cost), [1, 1, 2, 10]);
    }
}
