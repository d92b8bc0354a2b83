//! Mint rate limits: a token bucket per minting client, or per peer address
//! when minting is unauthenticated.
//!
//! Off unless `MACP_AUTH_RATE_LIMIT_PER_SECOND` is set. Built on `governor`'s
//! keyed GCRA limiter, which keeps one small timestamp per key; keys idle
//! long enough to have a full bucket again are forgotten periodically, so
//! many short-lived peers cannot grow memory without bound.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

/// One bucket per key.
#[derive(Debug)]
pub struct MintRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl MintRateLimiter {
    /// A limiter allowing `limit.per_second` sustained and `limit.burst` at once.
    pub fn new(limit: RateLimit) -> Self {
        let period = Duration::from_secs_f64(1.0 / limit.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        MintRateLimiter {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one mint from `key`'s bucket, or says how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets have refilled, and frees their memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_bucket_refuses_with_a_wait() {
        let limiter = MintRateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("client-a").is_ok());
        }
        let wait = limiter.check("client-a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check("client-b").is_ok(), "buckets are per key");
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
    }
}
