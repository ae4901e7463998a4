//! Isolation between destinations, pure: a token bucket (the vendor's rate
//! limit), a circuit breaker (stop hammering a receiver that keeps
//! failing), and the retry horizon (when a failing page stops retrying and
//! fails over). The worker keeps one [`Gate`] per destination and asks it
//! before each send, so one slow, broken or rate-limited destination only
//! ever delays its own work.
//!
//! Time is an argument everywhere (`now` is a [`Duration`] since an
//! arbitrary origin the caller picks), so every path is tested with an
//! explicit clock.

use std::time::Duration;

use crate::rules::DestinationKind;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`. A `burst` under one is raised to one, so a
    /// token can always be had eventually; a rate that is not a positive
    /// finite number is treated as unlimited by [`TokenBucket::try_take`].
    pub fn new(rate_per_sec: f64, burst: f64, now: Duration) -> TokenBucket {
        let burst = if burst.is_finite() {
            burst.max(1.0)
        } else {
            1.0
        };
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::try_from_secs_f64(missing / self.rate_per_sec).unwrap_or(Duration::MAX))
    }
}

/// Where a circuit breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Sending normally.
    Closed,
    /// Failing: nothing is sent until the cooldown ends.
    Open,
    /// The cooldown ended: one probe is allowed; its outcome closes or
    /// re-opens the circuit.
    HalfOpen,
}

impl BreakerState {
    /// The metric value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A circuit breaker: opens after `threshold` consecutive failures, lets
/// one probe through after `cooldown`, closes on the probe's success.
#[derive(Clone, Debug, PartialEq)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    opened_at: Option<Duration>,
    probing: bool,
}

impl Breaker {
    /// A closed breaker. A threshold of 0 never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            failures: 0,
            opened_at: None,
            probing: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Duration) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(at) if now >= at.saturating_add(self.cooldown) => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Whether a send may go now; when not, how long until it may.
    pub fn admit(&mut self, now: Duration) -> Result<(), Duration> {
        match (self.state(now), self.opened_at) {
            (BreakerState::Closed, _) => Ok(()),
            (BreakerState::Open, Some(at)) => {
                Err(at.saturating_add(self.cooldown).saturating_sub(now))
            }
            // One probe at a time; the others wait for its answer.
            (BreakerState::HalfOpen, _) if self.probing => Err(self.cooldown),
            _ => {
                self.probing = true;
                Ok(())
            }
        }
    }

    /// Records a send's result: a success closes, a failure counts (and
    /// re-opens at once after a failed probe).
    pub fn record(&mut self, success: bool, now: Duration) {
        let was_probe = std::mem::take(&mut self.probing);
        if success {
            self.failures = 0;
            self.opened_at = None;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if was_probe || (self.threshold > 0 && self.failures >= self.threshold) {
            self.opened_at = Some(now);
        }
    }
}

/// The limits of one destination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Messages a second; `None` is unlimited.
    pub rate_per_sec: Option<f64>,
    /// Messages that may go at once after a quiet spell.
    pub burst: f64,
}

impl Limits {
    /// The vendor's documented rate by kind, per webhook or key: Slack one
    /// message a second (burst 1); Discord five per two seconds; Teams
    /// connectors four a second and sixty per thirty seconds (2/s, burst
    /// 4); PagerDuty Events API v2 120 events a minute per routing key
    /// (2/s, burst 10); Opsgenie's Alert API on the smallest plan about 60
    /// a minute (1/s, burst 10); `webhook` unlimited.
    pub fn for_kind(kind: DestinationKind, concurrency: usize) -> Limits {
        let (rate, burst) = match kind {
            DestinationKind::Slack => (Some(1.0), 1.0),
            DestinationKind::Discord => (Some(2.5), 5.0),
            DestinationKind::Teams => (Some(2.0), 4.0),
            DestinationKind::PagerDuty => (Some(2.0), 10.0),
            DestinationKind::Opsgenie => (Some(1.0), 10.0),
            DestinationKind::Webhook => (None, 1.0),
        };
        Limits {
            concurrency,
            rate_per_sec: rate,
            burst,
        }
    }
}

/// Why a send may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// The destination has as many requests in flight as it may.
    Busy,
    /// The rate limit: a token is available after this long.
    RateLimited(Duration),
    /// The circuit is open: it half-opens after this long.
    CircuitOpen(Duration),
}

/// One destination's isolation: its concurrency, rate and breaker.
#[derive(Clone, Debug)]
pub struct Gate {
    limits: Limits,
    in_flight: usize,
    bucket: TokenBucket,
    breaker: Breaker,
}

impl Gate {
    /// A gate with these limits and breaker settings.
    pub fn new(limits: Limits, breaker: Breaker, now: Duration) -> Gate {
        Gate {
            bucket: TokenBucket::new(limits.rate_per_sec.unwrap_or(0.0), limits.burst, now),
            limits,
            in_flight: 0,
            breaker,
        }
    }

    /// The limits it was built with (rebuilt when the rules change them).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Lets a send go (counting it in flight) or says why not. The checks
    /// run cheapest and least consuming first, so a held send spends no
    /// token and no probe.
    pub fn admit(&mut self, now: Duration) -> Result<(), Held> {
        if self.in_flight >= self.limits.concurrency.max(1) {
            return Err(Held::Busy);
        }
        if self.breaker.state(now) == BreakerState::Open {
            return Err(Held::CircuitOpen(
                self.breaker.admit(now).err().unwrap_or_default(),
            ));
        }
        // A token is only spent once the breaker lets the send through.
        let mut bucket = self.bucket.clone();
        bucket.try_take(now).map_err(Held::RateLimited)?;
        self.breaker.admit(now).map_err(Held::CircuitOpen)?;
        self.bucket = bucket;
        self.in_flight += 1;
        Ok(())
    }

    /// A send finished: `healthy` says whether the receiver worked (a
    /// delivery, or an answer about the request rather than the receiver).
    pub fn finish(&mut self, healthy: bool, now: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.breaker.record(healthy, now);
    }

    /// The breaker's state at `now`.
    pub fn breaker_state(&self, now: Duration) -> BreakerState {
        self.breaker.state(now)
    }
}

/// How long a delivery keeps retrying before it gives up on its
/// destination, by what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    /// Attempts after which a page or escalation fails over.
    pub page_attempts: u32,
    /// Age after which a page or escalation fails over.
    pub page_age: Duration,
    /// Attempts after which anything else is a dead letter.
    pub notify_attempts: u32,
    /// Age after which anything else is a dead letter.
    pub notify_age: Duration,
}

/// What to do after an attempt that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try the same destination again.
    Retry,
    /// Give up on this destination and send to the severity's fallback.
    FailOver,
    /// Give up: a dead letter.
    Dead,
}

impl Horizon {
    /// Decides after a retryable failure. `urgent` is a page or an
    /// escalation; `attempts_made` counts the one that just failed; `age`
    /// is the time since the delivery was enqueued; `has_fallback` whether
    /// the severity names one (and this is not already a failover).
    ///
    /// An urgent delivery with no fallback keeps retrying on the notify
    /// horizon: quietly dropping a page is worse than a late one.
    pub fn after_failure(
        &self,
        urgent: bool,
        attempts_made: u32,
        age: Duration,
        has_fallback: bool,
    ) -> AfterFailure {
        if urgent && has_fallback && (attempts_made >= self.page_attempts || age >= self.page_age) {
            return AfterFailure::FailOver;
        }
        if attempts_made >= self.notify_attempts || age >= self.notify_age {
            return AfterFailure::Dead;
        }
        AfterFailure::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let mut b = TokenBucket::new(1.0, 2.0, S(100));
        assert_eq!(b.try_take(S(100)), Ok(()));
        assert_eq!(b.try_take(S(100)), Ok(()));
        assert_eq!(b.try_take(S(100)), Err(S(1)));
        assert_eq!(b.try_take(MS(100_500)), Err(MS(500)));
        assert_eq!(b.try_take(S(101)), Ok(()));
        // A long quiet spell refills to the burst, no further.
        assert_eq!(b.try_take(S(200)), Ok(()));
        assert_eq!(b.try_take(S(200)), Ok(()));
        assert!(b.try_take(S(200)).is_err());
    }

    #[test]
    fn discord_rate_allows_five_per_two_seconds() {
        let limits = Limits::for_kind(DestinationKind::Discord, 1);
        let mut b = TokenBucket::new(limits.rate_per_sec.unwrap(), limits.burst, S(0));
        let sent = (0..20).filter(|_| b.try_take(S(0)).is_ok()).count();
        assert_eq!(sent, 5);
        assert_eq!(b.try_take(S(0)), Err(MS(400)));
        assert_eq!(b.try_take(S(2)), Ok(()));
    }

    #[test]
    fn an_unlimited_bucket_never_holds_and_a_clock_going_back_is_harmless() {
        let mut b = TokenBucket::new(0.0, 1.0, S(5));
        assert!((0..1000).all(|_| b.try_take(S(5)).is_ok()));
        let mut b = TokenBucket::new(1.0, 1.0, S(5));
        assert_eq!(b.try_take(S(5)), Ok(()));
        assert_eq!(b.try_take(S(1)), Err(S(1)));
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let mut b = Breaker::new(3, S(30));
        b.record(false, S(0));
        b.record(false, S(1));
        b.record(true, S(2));
        // The success reset the count.
        b.record(false, S(3));
        b.record(false, S(4));
        assert_eq!(b.state(S(4)), BreakerState::Closed);
        b.record(false, S(5));
        assert_eq!(b.state(S(5)), BreakerState::Open);
        assert_eq!(b.admit(S(15)), Err(S(20)));
        assert_eq!(b.state(S(35)), BreakerState::HalfOpen);
        // One probe; the next waits for it.
        assert_eq!(b.admit(S(35)), Ok(()));
        assert!(b.admit(S(35)).is_err());
        // The probe fails: open again for a whole cooldown.
        b.record(false, S(36));
        assert_eq!(b.state(S(40)), BreakerState::Open);
        assert_eq!(b.admit(S(66)), Ok(()));
        b.record(true, S(66));
        assert_eq!(b.state(S(66)), BreakerState::Closed);
        assert_eq!(b.admit(S(66)), Ok(()));
    }

    #[test]
    fn a_breaker_with_threshold_zero_never_opens() {
        let mut b = Breaker::new(0, S(1));
        for t in 0..100 {
            b.record(false, S(t));
        }
        assert_eq!(b.state(S(100)), BreakerState::Closed);
    }

    #[test]
    fn a_gate_holds_for_concurrency_rate_and_an_open_circuit() {
        let limits = Limits {
            concurrency: 1,
            rate_per_sec: Some(1.0),
            burst: 1.0,
        };
        let mut g = Gate::new(limits, Breaker::new(1, S(10)), S(0));
        assert_eq!(g.admit(S(0)), Ok(()));
        assert_eq!(g.admit(S(0)), Err(Held::Busy));
        g.finish(true, S(0));
        assert_eq!(g.admit(S(0)), Err(Held::RateLimited(S(1))));
        assert_eq!(g.admit(S(1)), Ok(()));
        g.finish(false, S(1));
        assert_eq!(g.breaker_state(S(1)), BreakerState::Open);
        assert_eq!(g.admit(S(5)), Err(Held::CircuitOpen(S(6))));
        // The held sends spent no token: the probe finds one.
        assert_eq!(g.admit(S(11)), Ok(()));
        assert_eq!(g.breaker_state(S(11)), BreakerState::HalfOpen);
        g.finish(true, S(11));
        assert_eq!(g.breaker_state(S(11)), BreakerState::Closed);
    }

    #[test]
    fn a_page_fails_over_at_its_horizon_and_a_notification_retries_for_hours() {
        let h = Horizon {
            page_attempts: 3,
            page_age: S(120),
            notify_attempts: 12,
            notify_age: S(6 * 3600),
        };
        let table = [
            // (urgent, attempts, age, fallback) -> decision
            (true, 1, S(5), true, AfterFailure::Retry),
            (true, 3, S(5), true, AfterFailure::FailOver),
            (true, 1, S(120), true, AfterFailure::FailOver),
            // No fallback: a page keeps trying as long as a notification.
            (true, 3, S(5), false, AfterFailure::Retry),
            (true, 12, S(5), false, AfterFailure::Dead),
            (false, 3, S(120), true, AfterFailure::Retry),
            (false, 11, S(3 * 3600), true, AfterFailure::Retry),
            (false, 12, S(5), true, AfterFailure::Dead),
            (false, 2, S(6 * 3600), false, AfterFailure::Dead),
        ];
        for (urgent, attempts, age, fallback, expected) in table {
            assert_eq!(
                h.after_failure(urgent, attempts, age, fallback),
                expected,
                "urgent {urgent}, attempts {attempts}, age {age:?}, fallback {fallback}"
            );
        }
    }
}
