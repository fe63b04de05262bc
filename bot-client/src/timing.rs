//! Input timing: when to send each input so that it reaches the server a small margin before
//! the tick that applies it (see `docs/PROTOCOL.md`, "Input timing").
//!
//! Every input names the tick it is meant for, and every snapshot says how early the newest
//! input it applied arrived for its tick (`input_lead`, negative when late). An input sent at
//! `sent` that arrived `lead` early could have been sent `lead` later: `sent + lead` is the
//! send deadline for its tick, and the deadline of tick `k + n` is `n` tick periods after
//! tick `k`'s. The clock keeps that line (its anchor) and sends each input its margin before
//! the deadline. The margin adapts: a late input widens it at once by how late it was (up to
//! [`WIDEN_MAX`]) and [`WIDEN_STEP`] more, a long run of inputs on time narrows it slowly,
//! within [`MIN_MARGIN`] and [`MAX_MARGIN`].
//!
//! A snapshot reports only the newest input its tick applied, and a late input is usually
//! applied together with the next one, which came on time: the report on it never comes. So
//! the clock also counts an input late when a snapshot of the tick it named (or a later one)
//! does not include it, and widens the margin by [`WIDEN_STEP`] for it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tickwire_protocol::{INPUT_LEAD_UNIT_US, SnapshotHeader, Tick};

/// Narrowest margin: timers fire up to a millisecond late, and one-way delay varies.
pub const MIN_MARGIN: Duration = Duration::from_micros(1500);
/// Widest margin.
pub const MAX_MARGIN: Duration = Duration::from_millis(15);
/// Margin before any input was late.
pub const START_MARGIN: Duration = Duration::from_millis(3);
/// Inputs on time in a row before the margin narrows by [`NARROW_STEP`].
const NARROW_AFTER: u32 = 90;
/// How much the margin narrows after a run of inputs on time.
const NARROW_STEP: Duration = Duration::from_micros(250);
/// How much a late input widens the margin beyond how late it was.
const WIDEN_STEP: Duration = Duration::from_micros(500);
/// Most of a late input's lateness the margin takes on (a stall is not jitter).
const WIDEN_MAX: Duration = Duration::from_millis(2);
/// Inputs remembered until a snapshot reports on them.
const MAX_SENT: usize = 64;
/// The share of a measured deadline error corrected at once (the rest is jitter, mostly).
const GAIN: f64 = 0.25;

/// An input sent and not yet reported on.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u32,
    at: Instant,
    /// The tick it named.
    named: Tick,
    /// A snapshot of that tick came without it: counted late already.
    missed: bool,
}

/// Schedules a client's inputs against the server's tick.
#[derive(Debug, Clone)]
pub struct InputClock {
    period: Duration,
    /// Inputs sent and not yet reported on.
    sent: VecDeque<Sent>,
    /// A tick and the latest moment an input for it could be sent and still be on time.
    anchor: Option<(Tick, Instant)>,
    margin: Duration,
    on_time: u32,
    /// The newest snapshot tick seen.
    newest: Option<Tick>,
    /// The tick the last input named, and when it was sent.
    last_named: Option<Tick>,
    last_sent: Option<Instant>,
    /// The newest input sequence number a snapshot reported on.
    reported: u32,
    /// Inputs late: reported late by the server, or missing from a snapshot of their tick.
    pub late: u64,
    /// Inputs the server reported on.
    pub reports: u64,
    /// Inputs sent on this clock (each names its tick).
    pub timed: u64,
}

impl InputClock {
    /// A clock for a server ticking at `tick_rate_hz`.
    #[must_use]
    pub fn new(tick_rate_hz: u16) -> InputClock {
        InputClock {
            period: Duration::from_secs_f64(1.0 / f64::from(tick_rate_hz.max(1))),
            sent: VecDeque::with_capacity(MAX_SENT),
            anchor: None,
            margin: START_MARGIN,
            on_time: 0,
            newest: None,
            last_named: None,
            last_sent: None,
            reported: 0,
            late: 0,
            reports: 0,
            timed: 0,
        }
    }

    /// The tick the last input named.
    #[must_use]
    pub fn last_named(&self) -> Option<Tick> {
        self.last_named
    }

    /// The current margin.
    #[must_use]
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// The send deadline of tick `k` on the anchor's line.
    fn deadline(&self, k: Tick) -> Option<Instant> {
        let (t, at) = self.anchor?;
        let n = k.since(t);
        let shift = self.period.mul_f64(f64::from(n.unsigned_abs()));
        if n >= 0 {
            Some(at + shift)
        } else {
            at.checked_sub(shift)
        }
    }

    /// Takes a snapshot's header (applied or only counted): its tick, and the report on the
    /// newest input it applied.
    pub fn snapshot(&mut self, header: &SnapshotHeader) {
        if self.newest.is_none_or(|n| header.tick.since(n) > 0) {
            self.newest = Some(header.tick);
        }
        let seq = header.last_input_seq;
        // Inputs this snapshot's tick should have applied and did not: they came too late for
        // it. Their own reports may never come (see the module's doc).
        for s in &mut self.sent {
            if s.seq > seq && !s.missed && header.tick.since(s.named) >= 0 {
                s.missed = true;
                self.late += 1;
                self.on_time = 0;
                self.margin = (self.margin + WIDEN_STEP).min(MAX_MARGIN);
            }
        }
        if seq <= self.reported {
            return;
        }
        self.reported = seq;
        while self.sent.front().is_some_and(|s| s.seq < seq) {
            self.sent.pop_front();
        }
        let Some(&Sent {
            seq: s,
            at: sent_at,
            named,
            missed,
        }) = self.sent.front()
        else {
            return;
        };
        if s != seq {
            return;
        }
        self.reports += 1;
        let lead_us = i64::from(header.input_lead) * INPUT_LEAD_UNIT_US;
        let lead = Duration::from_micros(lead_us.unsigned_abs());
        let measured = if lead_us >= 0 {
            Some(sent_at + lead)
        } else {
            sent_at.checked_sub(lead)
        };
        let Some(measured) = measured else {
            return;
        };
        let late = lead_us < 0;
        if late && missed {
            // Counted, and widened by a step, when its tick's snapshot came without it; now
            // the lateness is known.
            self.margin = (self.margin + lead.min(WIDEN_MAX)).min(MAX_MARGIN);
        } else if late {
            self.late += 1;
            self.on_time = 0;
            // Wide enough for the lateness just seen, and a little more.
            self.margin = (self.margin + lead.min(WIDEN_MAX) + WIDEN_STEP).min(MAX_MARGIN);
        } else {
            self.on_time += 1;
            if self.on_time >= NARROW_AFTER {
                self.on_time = 0;
                self.margin = self.margin.saturating_sub(NARROW_STEP).max(MIN_MARGIN);
            }
        }
        self.anchor = Some(match self.deadline(named) {
            // A late input moves the line at once; otherwise part of the error, since most of
            // it is jitter.
            Some(predicted) if !late => {
                let gain = |d: Duration| d.mul_f64(GAIN);
                let at = if measured >= predicted {
                    predicted + gain(measured - predicted)
                } else {
                    predicted - gain(predicted - measured)
                };
                (named, at)
            }
            _ => (named, measured),
        });
    }

    /// When to send the next input and the tick it is for, at `now`: the first tick after the
    /// newest snapshot and the last input, sent its margin before that tick's deadline, or now
    /// if that moment has passed (a timer that fired late still sends for the tick it was set
    /// for: the server applies it a tick later and counts it late, and the margin widens).
    /// Only a tick whose deadline passed a whole period ago is given up for a later one. Before any report: a
    /// period after the last input (now for the first), for the tick after the newest
    /// snapshot and the last input.
    #[must_use]
    pub fn next(&self, now: Instant) -> (Instant, Tick) {
        let after = |t: Option<Tick>| t.map_or(Tick(0), Tick::next);
        let mut k = after(self.newest);
        let next_after_last = after(self.last_named);
        if self.last_named.is_some() && next_after_last.since(k) > 0 {
            k = next_after_last;
        }
        let Some(mut deadline) = self.deadline(k) else {
            let at = self.last_sent.map_or(now, |t| (t + self.period).max(now));
            return (at, k);
        };
        // Bounded: a deadline far behind (a stalled client) jumps whole periods at once.
        if deadline + self.period < now {
            let behind = (now - deadline).as_secs_f64() / self.period.as_secs_f64();
            let skip = behind.ceil().min(f64::from(u16::MAX)) as u32;
            k = Tick(k.0.wrapping_add(skip));
            deadline = self.deadline(k).unwrap_or(now);
        }
        let at = deadline.checked_sub(self.margin).unwrap_or(now).max(now);
        (at, k)
    }

    /// Records an input sent at `at` for tick `named`.
    pub fn sent(&mut self, seq: u32, at: Instant, named: Tick) {
        if self.sent.len() == MAX_SENT {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            seq,
            at,
            named,
            missed: false,
        });
        self.last_named = Some(named);
        self.last_sent = Some(at);
        self.timed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD_US: u64 = 33_333;

    /// A server ticking every period from `t0`, taking the inputs that arrived by then, and a
    /// network of `one_way` each way: the lead it would report for an input sent at `sent`
    /// naming tick `k` (tick `n` takes its inputs at `t0 + n periods`).
    fn lead(t0: Instant, sent: Instant, one_way: Duration, k: Tick) -> i16 {
        let arrives = sent + one_way;
        let takes = t0 + Duration::from_micros(PERIOD_US * u64::from(k.0));
        let us = if takes >= arrives {
            (takes - arrives).as_micros() as i64
        } else {
            -((arrives - takes).as_micros() as i64)
        };
        (us / INPUT_LEAD_UNIT_US) as i16
    }

    fn header(tick: u32, seq: u32, input_lead: i16) -> SnapshotHeader {
        SnapshotHeader {
            tick: Tick(tick),
            baseline: None,
            last_input_seq: seq,
            input_lead,
        }
    }

    /// Sends as the clock says against a simulated server, and returns, for the inputs after
    /// the first `warmup`, how early each arrived (microseconds, negative if late).
    fn run(one_way: Duration, inputs: u32, warmup: usize) -> (Vec<i64>, InputClock) {
        let t0 = Instant::now();
        let period = Duration::from_micros(PERIOD_US);
        let mut clock = InputClock::new(30);
        // The welcome's first snapshot, of tick 0, just in.
        clock.snapshot(&header(0, 0, 0));
        let mut now = t0 + Duration::from_micros(PERIOD_US / 3);
        let mut early = Vec::new();
        let mut tick = 0u32;
        for seq in 1..=inputs {
            let (at, k) = clock.next(now);
            assert!(at >= now, "never in the past");
            now = at;
            clock.sent(seq, at, k);
            let l = lead(t0, at, one_way, k);
            early.push(i64::from(l) * INPUT_LEAD_UNIT_US);
            // The snapshot of the tick that applied it (late: the next one) arrives a moment
            // after that tick; a late one's own tick's snapshot came first, without it.
            let applied = if l < 0 { k.next() } else { k };
            if l < 0 && k.0 > tick {
                clock.snapshot(&header(k.0, seq - 1, 0));
            }
            tick = tick.max(applied.0);
            let snapshot_at =
                t0 + Duration::from_micros(PERIOD_US * u64::from(tick)) + one_way + one_way / 2;
            now = now.max(snapshot_at);
            clock.snapshot(&header(tick, seq, l));
            assert!(now < t0 + period * (tick + 3), "the clock keeps up");
        }
        (early.split_off(warmup), clock)
    }

    #[test]
    fn inputs_settle_a_margin_before_their_tick() {
        let (early, clock) = run(Duration::from_micros(300), 300, 30);
        assert!(
            early.iter().all(|&us| us >= 0),
            "none late after settling: {early:?}"
        );
        let max = early.iter().max().copied().unwrap_or(0);
        // Within the margin (and a report's rounding), not a whole tick early.
        assert!(
            max <= (MAX_MARGIN.as_micros() as i64),
            "at most the margin early: {max} us"
        );
        assert!(max < 5_000, "{max} us early");
        assert_eq!(clock.late, 0);
    }

    #[test]
    fn a_late_input_widens_the_margin_and_moves_the_line() {
        let mut clock = InputClock::new(30);
        let t = Instant::now();
        clock.snapshot(&header(10, 0, 0));
        let (at, k) = clock.next(t);
        assert_eq!(
            (at, k),
            (t, Tick(11)),
            "no report yet: now, for the next tick"
        );
        clock.sent(1, t, k);
        let (at, k) = clock.next(t);
        assert_eq!(
            (at, k),
            (t + Duration::from_secs_f64(1.0 / 30.0), Tick(12)),
            "still no report: a period later, for the tick after"
        );
        clock.snapshot(&header(12, 1, -20)); // 2 ms late
        assert_eq!(clock.late, 1);
        assert_eq!(
            clock.margin(),
            START_MARGIN + Duration::from_millis(2) + WIDEN_STEP
        );
        // The deadline of tick 11 was 2 ms before `t`: tick 13's is two periods after it, and
        // the next input goes the margin before.
        let (at, k) = clock.next(t);
        assert_eq!(k, Tick(13));
        let deadline_13 = t - Duration::from_millis(2) + Duration::from_micros(2 * PERIOD_US);
        let diff = if at > deadline_13 - clock.margin() {
            at - (deadline_13 - clock.margin())
        } else {
            (deadline_13 - clock.margin()) - at
        };
        assert!(diff < Duration::from_micros(50), "{diff:?}");
        // A report on an input it never sent (or one already reported) changes nothing.
        clock.snapshot(&header(13, 1, 5));
        clock.snapshot(&header(14, 7, 5));
        assert_eq!(clock.reports, 1);
    }

    #[test]
    fn an_input_missing_from_its_ticks_snapshot_is_late_though_no_report_says_so() {
        let mut clock = InputClock::new(30);
        let t = Instant::now();
        let period = Duration::from_micros(PERIOD_US);
        clock.sent(1, t, Tick(10));
        clock.snapshot(&header(10, 1, 20)); // 2 ms early
        assert_eq!((clock.late, clock.reports), (0, 1));
        let before = clock.margin();
        clock.sent(2, t + period, Tick(11));
        // Tick 11's snapshot comes without input 2: it came too late for its tick.
        clock.snapshot(&header(11, 1, 20));
        assert_eq!(clock.late, 1);
        assert_eq!(clock.margin(), before + WIDEN_STEP);
        // Tick 12 applies inputs 2 and 3 and reports on the newest, 3, which was on time: input
        // 2's own report never comes, and it is counted once.
        clock.sent(3, t + period * 2, Tick(12));
        clock.snapshot(&header(12, 3, 15));
        clock.snapshot(&header(13, 3, 15));
        assert_eq!((clock.late, clock.reports), (1, 2));
        // An input counted so and then reported late itself is counted once; the margin takes
        // on its lateness then.
        clock.sent(4, t + period * 3, Tick(14));
        clock.snapshot(&header(14, 3, 15));
        assert_eq!(clock.late, 2);
        let missed = clock.margin();
        clock.snapshot(&header(15, 4, -10)); // 1 ms late
        assert_eq!((clock.late, clock.reports), (2, 3));
        assert_eq!(clock.margin(), missed + Duration::from_millis(1));
        // A snapshot of a tick before the one an input named says nothing about it.
        clock.sent(5, t + period * 5, Tick(17));
        clock.snapshot(&header(16, 4, -10));
        assert_eq!(clock.late, 2);
    }

    #[test]
    fn a_stalled_client_skips_to_a_tick_it_can_still_make() {
        let mut clock = InputClock::new(30);
        let t = Instant::now();
        clock.sent(1, t, Tick(5));
        clock.snapshot(&header(5, 1, 10)); // deadline of tick 5: t + 1 ms
        let later = t + Duration::from_secs(2);
        let (at, k) = clock.next(later);
        assert!(at >= later);
        assert!(at < later + Duration::from_micros(PERIOD_US));
        assert!(k.since(Tick(5)) >= 60, "{k:?}");
    }

    #[test]
    fn the_margin_narrows_after_a_long_run_on_time_but_not_below_its_floor() {
        let (_, clock) = run(Duration::from_micros(200), 2000, 0);
        assert!(clock.margin() < START_MARGIN);
        assert!(clock.margin() >= MIN_MARGIN);
    }

    /// A server ticking every `server_us` (slower than the clock's 30 Hz: an overloaded one)
    /// against the clock: each tick takes the inputs that arrived by then, and its snapshot
    /// reports on the newest. Returns, over the ticks after the first 100 of 300, how many
    /// took no input, and how many took more than one; and the inputs that came too late
    /// for the tick they named.
    fn against_a_server_ticking_every(server_us: u64) -> (usize, usize, usize) {
        let t0 = Instant::now();
        let one_way = Duration::from_micros(300);
        let mut clock = InputClock::new(30);
        clock.snapshot(&header(0, 0, 0));
        let (mut now, mut seq) = (t0, 0u32);
        let mut in_flight: Vec<(u32, Instant, Tick)> = Vec::new();
        let (mut taken_per_tick, mut late) = (Vec::new(), 0);
        for n in 1..=300u32 {
            let takes = t0 + Duration::from_micros(server_us * u64::from(n));
            // Every input the clock sends before this tick's snapshot reaches it.
            loop {
                let (at, k) = clock.next(now);
                if at >= takes + one_way {
                    break;
                }
                now = at;
                seq += 1;
                clock.sent(seq, at, k);
                in_flight.push((seq, at + one_way, k));
            }
            let (taken, rest): (Vec<_>, Vec<_>) = in_flight
                .drain(..)
                .partition(|&(_, arrives, _)| arrives <= takes);
            in_flight = rest;
            late += taken.iter().filter(|&&(_, _, k)| k.0 < n).count();
            taken_per_tick.push(taken.len());
            let (last_seq, lead) = taken
                .last()
                .map_or((clock.reported, 0), |&(s, arrives, _)| {
                    let us = i64::try_from((takes - arrives).as_micros()).unwrap_or(i64::MAX);
                    (
                        s,
                        i16::try_from(us / INPUT_LEAD_UNIT_US).unwrap_or(i16::MAX),
                    )
                });
            now = now.max(takes + one_way);
            clock.snapshot(&header(n, last_seq, lead));
        }
        let settled = &taken_per_tick[100..];
        let none = settled.iter().filter(|&&x| x == 0).count();
        let more = settled.iter().filter(|&&x| x > 1).count();
        (none, more, late)
    }

    #[test]
    fn against_a_server_slower_than_its_rate_every_tick_still_gets_an_input() {
        // The clock keeps its nominal rate: a server a little slower gets one input a tick,
        // one much slower (15 Hz) two; none goes without, and none comes late.
        assert_eq!(against_a_server_ticking_every(33_333), (0, 0, 0));
        assert_eq!(against_a_server_ticking_every(40_000), (0, 0, 0));
        let (none, more, late) = against_a_server_ticking_every(44_444);
        assert_eq!((none, late), (0, 0));
        assert!(more > 0 && more < 200, "{more}");
        assert_eq!(against_a_server_ticking_every(66_666), (0, 200, 0));
    }
}
