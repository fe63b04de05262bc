//! Per-connection message rate limits: token buckets that drop what exceeds a sustained rate,
//! and an abuse window that ends a connection dropping far too much. Time is passed in, so the
//! logic is tested without a clock.

use std::time::{Duration, Instant};

/// Length of the window in which dropped messages are counted as abuse.
const ABUSE_WINDOW: Duration = Duration::from_secs(1);

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget.
    Accept,
    /// Over budget: drop it and count it.
    Drop,
    /// So far over budget that the connection should be closed (1008).
    Abuse,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which budget a message draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Player inputs.
    Input,
    /// Everything else (acks, pings).
    Other,
    /// WebSocket control frames: pings and pongs.
    Control,
}

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct Limiter {
    inputs: Bucket,
    other: Bucket,
    control: Bucket,
    abuse_drops: u32,
    window_start: Instant,
    window_drops: u32,
}

impl Limiter {
    /// Inputs at `input_rate` per second with `burst` saved; other messages get the same
    /// budget; `abuse_drops` drops within one second close the connection.
    #[must_use]
    pub fn new(input_rate: u32, burst: u32, abuse_drops: u32, now: Instant) -> Limiter {
        let (rate, burst) = (f64::from(input_rate.max(1)), f64::from(burst.max(1)));
        Limiter {
            inputs: Bucket::new(rate, burst, now),
            other: Bucket::new(rate, burst, now),
            control: Bucket::new(rate, burst, now),
            abuse_drops: abuse_drops.max(1),
            window_start: now,
            window_drops: 0,
        }
    }

    /// Gives control frames their own budget: `rate` per second with `burst` saved.
    #[must_use]
    pub fn with_control(mut self, rate: u32, burst: u32, now: Instant) -> Limiter {
        self.control = Bucket::new(f64::from(rate.max(1)), f64::from(burst.max(1)), now);
        self
    }

    /// Decides about one message arriving at `now`.
    pub fn check(&mut self, kind: Kind, now: Instant) -> Verdict {
        let bucket = match kind {
            Kind::Input => &mut self.inputs,
            Kind::Other => &mut self.other,
            Kind::Control => &mut self.control,
        };
        if bucket.take(now) {
            return Verdict::Accept;
        }
        if now.saturating_duration_since(self.window_start) >= ABUSE_WINDOW {
            self.window_start = now;
            self.window_drops = 0;
        }
        self.window_drops += 1;
        if self.window_drops >= self.abuse_drops {
            Verdict::Abuse
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `per_s` messages per second for `secs` seconds; returns (accepted, dropped, abuse).
    fn feed(per_s: u32, secs: u32) -> (u32, u32, bool) {
        let t0 = Instant::now();
        let mut l = Limiter::new(60, 30, 120, t0);
        let (mut ok, mut dropped) = (0, 0);
        let step = Duration::from_secs(1) / per_s;
        for i in 0..per_s * secs {
            match l.check(Kind::Input, t0 + step * i) {
                Verdict::Accept => ok += 1,
                Verdict::Drop => dropped += 1,
                Verdict::Abuse => return (ok, dropped, true),
            }
        }
        (ok, dropped, false)
    }

    #[test]
    fn a_fair_client_is_never_limited() {
        assert_eq!(feed(30, 10), (300, 0, false));
        assert_eq!(feed(60, 10).1, 0);
    }

    #[test]
    fn moderate_excess_is_dropped_but_tolerated() {
        let (ok, dropped, abuse) = feed(120, 10);
        assert!(!abuse);
        assert!(dropped > 400, "{dropped}");
        assert!((600..=640).contains(&ok), "{ok}");
    }

    #[test]
    fn ten_times_the_tick_rate_for_a_second_is_abuse() {
        let (_, _, abuse) = feed(300, 1);
        assert!(abuse);
    }

    #[test]
    fn budgets_are_separate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(60, 2, 100, t0);
        assert_eq!(l.check(Kind::Input, t0), Verdict::Accept);
        assert_eq!(l.check(Kind::Input, t0), Verdict::Accept);
        assert_eq!(l.check(Kind::Input, t0), Verdict::Drop);
        assert_eq!(l.check(Kind::Other, t0), Verdict::Accept);
    }

    #[test]
    fn a_control_frame_flood_is_abuse() {
        let t0 = Instant::now();
        let mut l = Limiter::new(60, 30, 120, t0).with_control(5, 10, t0);
        // A ping a second is always fine.
        for i in 0..30 {
            assert_eq!(
                l.check(Kind::Control, t0 + Duration::from_secs(i)),
                Verdict::Accept
            );
        }
        // Twenty thousand a second: the first ten pass, then drops, then abuse within 10 ms.
        let t1 = t0 + Duration::from_secs(40);
        let step = Duration::from_micros(50);
        let verdicts: Vec<Verdict> = (0..200)
            .map(|i| l.check(Kind::Control, t1 + step * i))
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Accept));
        let abuse_at = verdicts
            .iter()
            .position(|v| *v == Verdict::Abuse)
            .expect("the flood is closed");
        assert!(abuse_at < 200, "{abuse_at}");
        // Inputs keep their own budget.
        assert_eq!(l.check(Kind::Input, t1), Verdict::Accept);
    }
}
