//! Concurrency pacing: how many calls realign keeps in flight.
//!
//! Two gates, as Zoho has two limits: every call holds a slot of the main gate (the
//! edition's concurrency less a margin), and heavy calls (COQL, writes of more than 10
//! records) also hold one of the sub-concurrency gate (10 less a margin). Each gate is
//! AIMD: a 429 halves its limit, and every `limit` successes add one slot back, so
//! realign shares an org with other integrations instead of fighting them.
//!
//! On top of the gates, a governor (GCRA) limiter per class spreads call starts over
//! time, so a burst of ready batches does not land on Zoho in the same millisecond. Its
//! clock is explicit, so tests drive it with a fake one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::edition::{Edition, SUB_CONCURRENCY};

/// Which of Zoho's pools a call draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    Light,
    Heavy,
}

/// Slots kept free below Zoho's limit, for other integrations and the UI.
pub fn with_margin(limit: usize) -> usize {
    (limit - (limit / 5).max(1)).max(1)
}

struct GateState {
    limit: usize,
    /// Permits to swallow as they come back, after a decrease.
    debt: usize,
    successes: usize,
    last_decrease: Option<Instant>,
}

struct Gate {
    sem: Arc<Semaphore>,
    max: usize,
    state: Mutex<GateState>,
}

/// Halving again within this window counts as the same burst of 429s.
const DECREASE_COOLDOWN: Duration = Duration::from_secs(1);

impl Gate {
    fn new(max: usize) -> Self {
        Gate {
            sem: Arc::new(Semaphore::new(max)),
            max,
            state: Mutex::new(GateState {
                limit: max,
                debt: 0,
                successes: 0,
                last_decrease: None,
            }),
        }
    }

    fn limit(&self) -> usize {
        self.state.lock().expect("gate lock").limit
    }

    fn decrease(&self) {
        let mut s = self.state.lock().expect("gate lock");
        let now = Instant::now();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < DECREASE_COOLDOWN)
        {
            return;
        }
        s.last_decrease = Some(now);
        let new = (s.limit / 2).max(1);
        s.debt += s.limit - new;
        s.limit = new;
        s.successes = 0;
    }

    fn success(&self) {
        let mut s = self.state.lock().expect("gate lock");
        s.successes += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.successes = 0;
            s.limit += 1;
            if s.debt > 0 {
                s.debt -= 1;
            } else {
                self.sem.add_permits(1);
            }
        }
    }

    /// Called as a permit is returned: swallow it if the limit was lowered.
    fn give_back(&self, permit: OwnedSemaphorePermit) {
        let mut s = self.state.lock().expect("gate lock");
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        }
    }
}

/// Decides whether a call may start now, or how long until it may.
pub trait RateGate: Send + Sync {
    fn try_start(&self) -> Result<(), Duration>;
}

struct Governed<C: Clock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C> RateGate for Governed<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn try_start(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// A limiter of `per_second` starts with bursts of up to `burst`, on `clock`.
pub fn rate_gate<C>(per_second: u32, burst: u32, clock: C) -> Box<dyn RateGate>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    let one = std::num::NonZeroU32::MIN;
    let quota = Quota::per_second(std::num::NonZeroU32::new(per_second).unwrap_or(one))
        .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(one));
    Box::new(Governed {
        limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
        clock,
    })
}

/// Call starts per second by default, for light calls; heavy ones get a fifth.
pub const DEFAULT_CALLS_PER_SECOND: u32 = 50;

/// The pacer shared by every call of one client.
pub struct Pacer {
    main: Gate,
    heavy: Gate,
    light_rate: Box<dyn RateGate>,
    heavy_rate: Box<dyn RateGate>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Held for the duration of one call.
pub struct Slot<'a> {
    pacer: &'a Pacer,
    main: Option<OwnedSemaphorePermit>,
    heavy: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.pacer.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.main.take() {
            self.pacer.main.give_back(p);
        }
        if let Some(p) = self.heavy.take() {
            self.pacer.heavy.give_back(p);
        }
    }
}

impl Pacer {
    /// Gates for `edition`, or `concurrency` calls when configured.
    pub fn new(edition: Edition, concurrency: Option<usize>) -> Self {
        Pacer::with_rates(
            edition,
            concurrency,
            DEFAULT_CALLS_PER_SECOND,
            DefaultClock::default(),
        )
    }

    /// As [`Pacer::new`], with `per_second` light call starts (heavy: a fifth) on `clock`.
    pub fn with_rates<C>(
        edition: Edition,
        concurrency: Option<usize>,
        per_second: u32,
        clock: C,
    ) -> Self
    where
        C: Clock + Clone + Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        let main = concurrency.unwrap_or_else(|| with_margin(edition.concurrency()));
        let heavy = with_margin(SUB_CONCURRENCY).min(main);
        let heavy_per_second = (per_second / 5).max(1);
        Pacer {
            light_rate: rate_gate(per_second, (main as u32).max(1), clock.clone()),
            heavy_rate: rate_gate(heavy_per_second, (heavy as u32).max(1), clock),
            main: Gate::new(main.max(1)),
            heavy: Gate::new(heavy.max(1)),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
    }

    pub async fn acquire(&self, class: CallClass) -> Slot<'_> {
        let heavy = match class {
            CallClass::Heavy => Some(
                self.heavy
                    .sem
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("gate never closes"),
            ),
            CallClass::Light => None,
        };
        let main = Some(
            self.main
                .sem
                .clone()
                .acquire_owned()
                .await
                .expect("gate never closes"),
        );
        let rate = match class {
            CallClass::Light => &self.light_rate,
            CallClass::Heavy => &self.heavy_rate,
        };
        while let Err(wait) = rate.try_start() {
            tokio::time::sleep(wait).await;
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        Slot {
            pacer: self,
            main,
            heavy,
        }
    }

    /// A 429: halve the gates the call used.
    pub fn throttled(&self, class: CallClass) {
        self.main.decrease();
        if class == CallClass::Heavy {
            self.heavy.decrease();
        }
    }

    pub fn succeeded(&self, class: CallClass) {
        self.main.success();
        if class == CallClass::Heavy {
            self.heavy.success();
        }
    }

    /// Current (main, heavy) limits.
    pub fn limits(&self) -> (usize, usize) {
        (self.main.limit(), self.heavy.limit())
    }

    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_stay_below_every_edition_limit() {
        for e in Edition::ALL {
            let m = with_margin(e.concurrency());
            assert!(m < e.concurrency() && m >= 1, "{e}: {m}");
        }
        assert_eq!(with_margin(SUB_CONCURRENCY), 8);
    }

    #[test]
    fn the_rate_gate_lets_a_burst_through_then_spaces_starts() {
        let clock = governor::clock::FakeRelativeClock::default();
        let gate = rate_gate(10, 3, clock.clone());
        for _ in 0..3 {
            assert_eq!(gate.try_start(), Ok(()));
        }
        let wait = gate.try_start().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        clock.advance(Duration::from_millis(100));
        assert_eq!(gate.try_start(), Ok(()));
        assert!(gate.try_start().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn halves_on_429_and_recovers_step_by_step() {
        let p = Pacer::new(Edition::Enterprise, None);
        assert_eq!(p.limits(), (16, 8));
        p.throttled(CallClass::Heavy);
        assert_eq!(p.limits(), (8, 4));
        // A second 429 in the same burst does not halve again.
        p.throttled(CallClass::Heavy);
        assert_eq!(p.limits(), (8, 4));
        tokio::time::advance(Duration::from_secs(2)).await;
        p.throttled(CallClass::Light);
        assert_eq!(p.limits(), (4, 4));
        for _ in 0..4 {
            p.succeeded(CallClass::Light);
        }
        assert_eq!(p.limits(), (5, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn never_lets_more_than_the_limit_through() {
        let p = Arc::new(Pacer::new(Edition::Free, None));
        let mut slots = Vec::new();
        for _ in 0..4 {
            slots.push(p.acquire(CallClass::Light).await);
        }
        let p2 = p.clone();
        let waiting = tokio::spawn(async move {
            let _s = p2.acquire(CallClass::Light).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        drop(slots);
        waiting.await.unwrap();
        assert_eq!(p.max_in_flight(), 4);
    }
}
