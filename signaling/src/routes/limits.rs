//! Limits under abuse (README "Limits"): what one client, one invite or everybody together may
//! hold or ask for, so that no flood crashes the server or grows its memory without bound.
//! Each one refused gets a clear error: `413 body_too_large`, `408 body_timeout`,
//! `429 rate_limited` (with `Retry-After`), `429 monitor_limit`, `503 server_busy`.
//!
//! The connection settings (header timeout, connection cap) are applied by `routes::server`;
//! the cap on sessions with media lives in the session service (it must be checked atomically
//! with the peer registry).

use crate::error::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time a client gets to send a request's head, counted from when the server waits for
    /// it: a new connection's first request, and the next one on a kept-alive connection (so
    /// this is also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Open HTTP connections at once (WebSockets are counted by the monitor limits instead).
    pub max_connections: usize,
    /// WHIP offers one invite may post per minute (a burst of that many, refilled evenly).
    pub whip_offers_per_invite_per_minute: u32,
    /// WHIP offers one source address (an IPv6 /64) may post per minute.
    pub whip_offers_per_address_per_minute: u32,
    /// Live WebSocket monitors of one session.
    pub max_monitors_per_session: usize,
    /// Live WebSocket monitors in total.
    pub max_monitors: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see `forwarded`).
    pub trusted_proxies: super::forwarded::TrustedProxies,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 2 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            whip_offers_per_invite_per_minute: 10,
            whip_offers_per_address_per_minute: 60,
            max_monitors_per_session: 100,
            max_monitors: 1000,
            trusted_proxies: Default::default(),
        }
    }
}

/// The limits' state, shared by every route.
#[derive(Debug)]
pub struct Limits {
    pub config: HttpLimits,
    pub whip_per_invite: RateLimiter,
    pub whip_per_address: RateLimiter,
    pub monitors: Arc<MonitorSlots>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(HttpLimits::default())
    }
}

impl Limits {
    pub fn new(config: HttpLimits) -> Limits {
        Limits {
            whip_per_invite: RateLimiter::new(config.whip_offers_per_invite_per_minute),
            whip_per_address: RateLimiter::new(config.whip_offers_per_address_per_minute),
            monitors: Arc::new(MonitorSlots::new(
                config.max_monitors_per_session,
                config.max_monitors,
            )),
            config,
        }
    }
}

/// `429 rate_limited` telling when to try again.
fn rate_limited(what: &str, retry_after: Duration) -> ApiError {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many {what}; try again in {secs} s"),
    )
    .with_retry_after(secs)
}

/// The key of a source address: IPv4 as is, IPv6 by its /64 (one subscriber's network: a
/// host picks addresses in it at will, so a per-address key would be no limit at all).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Keys a [`RateLimiter`] tracks at most: a full bucket is the same as none, so the map is
/// swept of those when it reaches this; if every one is still in use, new keys are refused
/// rather than let the map grow.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `capacity` requests at once, refilled evenly over `window` (a
/// minute for [`RateLimiter::new`]).
#[derive(Debug)]
pub struct RateLimiter {
    capacity: u32,
    window: Duration,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter::with_window(per_minute, Duration::from_secs(60))
    }

    /// `capacity` at once, refilled evenly over `window` (at least a millisecond).
    pub fn with_window(capacity: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            capacity: capacity.max(1),
            window: window.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket's size and its refill rate per second.
    fn rate(&self) -> (f64, f64) {
        let capacity = f64::from(self.capacity);
        (capacity, capacity / self.window.as_secs_f64())
    }

    /// Takes one request for `key` now, or refuses with `429 rate_limited`; `what` names the
    /// requests in the message.
    pub fn check(&self, key: &str, what: &str) -> Result<(), ApiError> {
        self.take(key, Instant::now())
            .map_err(|retry| rate_limited(what, retry))
    }

    /// Refuses with `429 rate_limited` when `key` has no request left now, without taking
    /// one (for limits on failures: the caller takes one with [`RateLimiter::check`] when
    /// the request failed).
    pub fn available(&self, key: &str, what: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let (capacity, per_sec) = self.rate();
        let Ok(buckets) = self.buckets.lock() else {
            return Ok(());
        };
        match buckets.get(key).map(|b| refill(*b, now, per_sec, capacity)) {
            Some(b) if b.tokens < 1.0 => Err(rate_limited(
                what,
                Duration::from_secs_f64((1.0 - b.tokens) / per_sec),
            )),
            _ => Ok(()),
        }
    }

    /// Takes one token for `key` at `now`; `Err(wait)` until the next one.
    fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let (capacity, per_sec) = self.rate();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A panic while holding the lock: limiting nobody beats refusing everybody.
            return Ok(());
        };
        if !buckets.contains_key(key) && buckets.len() >= MAX_KEYS {
            buckets.retain(|_, b| refill(*b, now, per_sec, capacity).tokens < capacity);
            if buckets.len() >= MAX_KEYS {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        *bucket = refill(*bucket, now, per_sec, capacity);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }

    /// Keys tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

fn refill(b: Bucket, now: Instant, per_sec: f64, capacity: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * per_sec).min(capacity),
        at: now,
    }
}

/// Live monitor sockets per session and in total.
#[derive(Debug)]
pub struct MonitorSlots {
    per_session: usize,
    total: usize,
    /// (sockets in total, sockets per session); a session leaves the map with its last one.
    held: Mutex<(usize, HashMap<String, usize>)>,
}

/// One monitor's place; released when dropped (the socket's task ended, or the upgrade
/// never happened).
#[derive(Debug)]
pub struct MonitorSlot {
    slots: Arc<MonitorSlots>,
    session_id: String,
}

impl MonitorSlots {
    pub fn new(per_session: usize, total: usize) -> MonitorSlots {
        MonitorSlots {
            per_session,
            total,
            held: Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for one more monitor of `session_id`: `429 monitor_limit` when the session has
    /// all it may have, `503 server_busy` when the server has.
    pub fn acquire(self: &Arc<Self>, session_id: &str) -> Result<MonitorSlot, ApiError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| ApiError::internal("monitor slots", "lock poisoned"))?;
        let (total, sessions) = &mut *held;
        let mine = sessions.get(session_id).copied().unwrap_or(0);
        if mine >= self.per_session {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "monitor_limit",
                format!("this session already has {mine} live monitors, the most it may have"),
            )
            .with_retry_after(10));
        }
        if *total >= self.total {
            return Err(ApiError::server_busy("live monitors").with_retry_after(10));
        }
        *total += 1;
        sessions.insert(session_id.to_string(), mine + 1);
        Ok(MonitorSlot {
            slots: self.clone(),
            session_id: session_id.to_string(),
        })
    }

    /// Monitors held in total.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.0).unwrap_or(0)
    }
}

impl Drop for MonitorSlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.held.lock() {
            let (total, sessions) = &mut *held;
            *total = total.saturating_sub(1);
            if let Some(n) = sessions.get_mut(&self.session_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    sessions.remove(&self.session_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_one_per_refill() {
        let limiter = RateLimiter::new(6); // one every 10 s
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(limiter.take("a", t0), Ok(()));
        }
        let wait = limiter.take("a", t0).expect_err("burst used");
        assert!((9.9..=10.0).contains(&wait.as_secs_f64()), "{wait:?}");
        assert_eq!(limiter.take("b", t0), Ok(()), "other keys are not affected");
        assert!(limiter.take("a", t0 + Duration::from_secs(9)).is_err());
        assert_eq!(limiter.take("a", t0 + Duration::from_secs(10)), Ok(()));
        assert!(limiter.take("a", t0 + Duration::from_secs(11)).is_err());
        // A minute later the burst is back.
        let later = t0 + Duration::from_secs(80);
        for _ in 0..6 {
            assert_eq!(limiter.take("a", later), Ok(()));
        }
        let e = limiter.check("a", "offers").expect_err("limited");
        assert_eq!((e.status.as_u16(), e.code), (429, "rate_limited"));
        assert!(e.retry_after.is_some_and(|s| s >= 1));
    }

    #[test]
    fn a_window_of_an_hour_refills_over_the_hour() {
        let limiter = RateLimiter::with_window(20, Duration::from_secs(3600));
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(limiter.take("a", t0), Ok(()));
        }
        let wait = limiter.take("a", t0).expect_err("burst used");
        assert!((179.9..=180.0).contains(&wait.as_secs_f64()), "{wait:?}");
        assert_eq!(limiter.take("a", t0 + Duration::from_secs(180)), Ok(()));
    }

    #[test]
    fn the_key_map_is_bounded() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(limiter.take(&i.to_string(), t0).is_ok());
        }
        // Every bucket is empty (in use): a new key is refused, the map does not grow.
        assert!(limiter.take("new", t0).is_err());
        assert_eq!(limiter.tracked(), MAX_KEYS);
        // A minute later they are all full again and swept.
        assert!(limiter.take("new", t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1");
    }

    #[test]
    fn monitor_slots_per_session_and_in_total() {
        let slots = Arc::new(MonitorSlots::new(2, 3));
        let a1 = slots.acquire("a").unwrap();
        let _a2 = slots.acquire("a").unwrap();
        assert_eq!(slots.acquire("a").unwrap_err().code, "monitor_limit");
        let _b1 = slots.acquire("b").unwrap();
        let e = slots.acquire("c").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "server_busy"));
        drop(a1);
        assert_eq!(slots.held(), 2);
        let _c1 = slots.acquire("c").unwrap();
        assert_eq!(slots.acquire("a").unwrap_err().code, "server_busy");
    }
}
