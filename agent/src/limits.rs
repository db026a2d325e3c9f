//! Rate-limit obligations: one GCRA limiter (governor) per quota, keyed by the counter the
//! evaluator names (API, operation, scope and caller). Limiters outlive bundle swaps, so a
//! new revision does not hand every caller a fresh allowance.

use dashmap::DashMap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use policy::evaluate::RateLimitKey;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

type Limiter = DefaultKeyedRateLimiter<String>;

#[derive(Default)]
pub struct RateLimits {
    /// By (requests, window seconds).
    limiters: DashMap<(u32, u32), Arc<Limiter>>,
}

impl RateLimits {
    fn limiter(&self, requests: u32, window_seconds: u32) -> Option<Arc<Limiter>> {
        if let Some(found) = self.limiters.get(&(requests, window_seconds)) {
            return Some(found.clone());
        }
        let burst = NonZeroU32::new(requests)?;
        // `requests` per window: the whole allowance at once, refilled evenly over the window.
        let period = (Duration::from_secs(u64::from(window_seconds.max(1))) / requests)
            .max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(
            self.limiters
                .entry((requests, window_seconds))
                .or_insert_with(|| Arc::new(RateLimiter::keyed(quota)))
                .clone(),
        )
    }

    /// Takes one from every counter; `Err` with how long until the most exhausted one
    /// allows again.
    pub fn check(&self, keys: &[RateLimitKey]) -> Result<(), Duration> {
        let mut wait: Option<Duration> = None;
        for key in keys {
            // A zero quota cannot be compiled; were one to arrive, it refuses nothing here
            // rather than everything.
            let Some(limiter) = self.limiter(key.requests, key.window_seconds) else {
                continue;
            };
            if let Err(not_until) = limiter.check_key(&key.key) {
                let until = not_until.wait_time_from(limiter.clock().now());
                wait = Some(wait.map_or(until, |w| w.max(until)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Forgets counters that are full again, so memory follows active callers only.
    pub fn prune(&self) {
        for limiter in self.limiters.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, requests: u32) -> RateLimitKey {
        RateLimitKey {
            key: name.into(),
            requests,
            window_seconds: 60,
        }
    }

    #[test]
    fn each_counter_allows_its_quota_then_says_when_to_retry() {
        let limits = RateLimits::default();
        assert!(limits.check(&[key("a", 2)]).is_ok());
        assert!(limits.check(&[key("a", 2)]).is_ok());
        let wait = limits.check(&[key("a", 2)]).unwrap_err();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(
            limits.check(&[key("b", 2)]).is_ok(),
            "another caller has its own counter"
        );
        assert!(
            limits.check(&[key("b", 2), key("a", 2)]).is_err(),
            "any exhausted counter refuses"
        );
        assert!(limits.check(&[key("c", 0)]).is_ok());
        limits.prune();
    }
}
