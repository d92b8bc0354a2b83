//! Mint rate limits: a token bucket per minting client, or per peer address
//! when minting is unauthenticated.
//!
//! Off unless `MACP_AUTH_RATE_LIMIT_PER_SECOND` is set. Built on `governor`'s
//! keyed GCRA limiter, which keeps one small timestamp per key; keys idle
//! long enough to have a full bucket again are forgotten periodically, so
//! many short-lived peers cannot grow memory without bound.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

/// One bucket per key.
#[derive(Debug)]
pub(crate) struct MintRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl MintRateLimiter {
    /// A limiter allowing `limit.per_second` sustained and `limit.burst` at
    /// once. `None` when the limiter cannot represent the pair: its clock
    /// counts nanoseconds in a `u64`, so refilling a whole bucket must take
    /// less than [`RateLimit::MAX_REFILL_SECONDS`]. Configuration refuses such pairs first
    /// ([`RateLimit::refill_fits`]), so serving and `check-config` agree.
    pub(crate) fn new(limit: RateLimit) -> Option<Self> {
        if !limit.refill_fits() {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / limit.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(MintRateLimiter {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one mint from `key`'s bucket, or says how long until one is free.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets have refilled, and frees their memory.
    pub(crate) fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// The bucket a caller without credentials is counted in: its IPv4 address,
/// or the /64 network of its IPv6 address, since one host usually holds a
/// whole /64 and could otherwise take a fresh bucket per address. An
/// IPv4-mapped IPv6 address counts as the IPv4 address.
pub(crate) fn peer_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
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
        })
        .unwrap();
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
    fn pairs_the_limiter_cannot_represent_are_refused_not_wrapped() {
        for (per_second, burst) in [(4e-11, 1), (1e-6, 1_000_000), (1e-9, 100)] {
            let limit = RateLimit { per_second, burst };
            assert!(!limit.refill_fits(), "{per_second} {burst}");
            assert!(
                MintRateLimiter::new(limit).is_none(),
                "{per_second} {burst}"
            );
        }
        let slow = RateLimit {
            per_second: 1e-6,
            burst: 1,
        };
        assert!(MintRateLimiter::new(slow).unwrap().check("a").is_ok());
    }

    #[test]
    fn unauthenticated_buckets_are_per_ipv4_address_and_per_ipv6_slash_64() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
        ];
        for (ip, bucket) in cases {
            assert_eq!(peer_bucket(ip.parse().unwrap()), bucket, "{ip}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
    }
}
