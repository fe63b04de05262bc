//! Input timing over real sockets: each input names the tick it is meant for, the server reports
//! in every snapshot how early the newest input it applied arrived (negative: late), counts late
//! inputs, and a client sending at its input clock's moments gets its inputs applied by the next
//! tick, within a fraction of a tick period.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tickwire_bots::client::Event;
use tickwire_protocol::body::write_record;
use tickwire_protocol::{ClientMsg, INPUT_LEAD_UNIT_US, InputMsg, SnapshotHeader, Tick};
use tickwire_server::Config;

/// Sends one input by hand, naming `tick`, and returns the header of the first snapshot that
/// applied it, and the time from just before the send to that snapshot's arrival.
async fn input_naming(
    c: &mut tickwire_bots::Client,
    tick: Option<Tick>,
) -> (SnapshotHeader, Duration) {
    let mut fields = Vec::new();
    let words = vec![0; c.welcome.schema.input.len()];
    write_record(&c.welcome.schema.input, &words, &mut fields);
    c.seq += 1;
    let seq = c.seq;
    let start = Instant::now();
    c.send(&ClientMsg::Input(InputMsg {
        seq,
        ack: None,
        tick,
        events_ack: 0,
        fields,
    }))
    .await
    .expect("sends");
    loop {
        let header = snapshots(c, 1).await;
        if header.last_input_seq >= seq {
            return (header, start.elapsed());
        }
    }
}

/// The time the server says the input waited between its arrival and the tick that applied it
/// (`h.tick`): its reported lead less the ticks it named ahead of that one. It must lie within
/// the round trip the client saw (give or take a unit of the report).
fn waited_us(h: &SnapshotHeader, named: Option<Tick>, period_us: i64) -> i64 {
    let ahead = named.map_or(0, |k| i64::from(k.since(h.tick)));
    i64::from(h.input_lead) * INPUT_LEAD_UNIT_US - ahead * period_us
}

fn assert_waited_within(h: &SnapshotHeader, named: Option<Tick>, period_us: i64, trip: Duration) {
    let waited = waited_us(h, named, period_us);
    let trip_us = i64::try_from(trip.as_micros()).expect("short");
    assert!(
        (-INPUT_LEAD_UNIT_US..=trip_us + INPUT_LEAD_UNIT_US).contains(&waited),
        "waited {waited} us in a round trip of {trip_us} us: {h:?}, named {named:?}"
    );
}

/// Reports are exact, not estimates: whatever the load on the machine, the lead the server
/// reports is the ticks the input was named ahead of (or behind) the tick that applied it, plus
/// the time it waited for that tick, which the client's own round trip bounds. Late inputs are
/// counted; early ones are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_how_early_each_input_came_and_counts_late_ones() {
    let server = start(test_config()).await;
    let mut c = connect(&server, "timed").await;
    let now = snapshots(&mut c, 2).await.tick;
    let period_us = 1_000_000 / i64::from(c.welcome.tick_rate_hz);

    // Naming no tick: applied at the next tick, never late.
    let (h, trip) = input_naming(&mut c, None).await;
    assert!(h.input_lead >= 0, "{h:?}");
    assert_waited_within(&h, None, period_us, trip);
    assert_eq!(server.stats().inputs_late.get(), 0);

    // Naming a tick long gone: late by at least that many periods, counted, applied anyway.
    let named = Some(now.minus(20));
    let (h, trip) = input_naming(&mut c, named).await;
    assert!(
        i64::from(h.input_lead) * INPUT_LEAD_UNIT_US < -19 * period_us,
        "{h:?}"
    );
    assert_waited_within(&h, named, period_us, trip);
    assert_eq!(server.stats().inputs_late.get(), 1);

    // Naming a tick 10 ahead of the newest snapshot: early by the ticks between the one that
    // applied it and the one named, and not late.
    let named = Some(Tick(snapshots(&mut c, 1).await.tick.0 + 10));
    let (h, trip) = input_naming(&mut c, named).await;
    assert!(h.input_lead > 0, "{h:?}");
    assert_waited_within(&h, named, period_us, trip);
    assert_eq!(server.stats().inputs_late.get(), 1);

    // Every timed input's lead is in `/metrics`, the late one alone in the first bucket, the
    // one named ahead past a whole period.
    let (_, metrics) = get(&server, "/metrics").await;
    let lead = |series: &str| sample(&metrics, &format!("tickwire_input_lead_seconds{series}"));
    assert_eq!(lead("_count"), 3.0);
    assert_eq!(lead("_bucket{le=\"-0.0001\"}"), 1.0, "the late one");
    assert_eq!(
        lead("_bucket{le=\"0.0333\"}"),
        2.0,
        "and the one naming no tick"
    );
    // About 20 periods late against at most 11 early in all.
    assert!(lead("_sum") < -5.0 * period_us as f64 / 1e6, "{metrics}");
    server.shutdown().await;
}

/// A client that sends each input when its input clock says reaches the server a margin before
/// the tick: once the clock has settled, the server reports each input early by about the
/// clock's margin, never by most of a period as an input sent on receipt of a snapshot would
/// be. Nothing here bounds a time that load on the machine could stretch: load makes the
/// client send later and the server read later, so it only shrinks the lead, and late inputs
/// are checked to be counted alike on both sides rather than to be rare. The figures themselves
/// (round trips, late fractions) are measured by bot runs, in `docs/PERFORMANCE.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_sent_on_the_input_clock_arrive_a_margin_before_their_tick() {
    let server = start(Config {
        resume_grace_ms: 0,
        ..test_config()
    })
    .await;
    let mut c = connect(&server, "clocked").await;
    snapshots(&mut c, 1).await;
    let period_us = 1_000_000 / i64::from(c.welcome.tick_rate_hz);
    let words = vec![0; c.welcome.schema.input.len()];
    let mut sent: Vec<(u32, Instant)> = Vec::new();
    let mut trips = 0;
    // The server's report on each snapshot that applied a newer input: how early it came.
    let mut leads_us: Vec<i64> = Vec::new();
    let mut reported = 0;
    let mut due = tokio::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(8);
    while trips < 150 && Instant::now() < deadline {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {
                let seq = c.send_input(&words).await.expect("sends");
                sent.push((seq, Instant::now()));
                due = c.next_input_at().into();
            }
            ev = c.recv() => {
                if let Event::Snapshot { header, outcome, .. } = ev.expect("receives") {
                    outcome.expect("applies");
                    if header.last_input_seq > reported {
                        reported = header.last_input_seq;
                        leads_us.push(i64::from(header.input_lead) * INPUT_LEAD_UNIT_US);
                    }
                    let before = sent.len();
                    sent.retain(|&(seq, _)| seq > header.last_input_seq);
                    trips += before - sent.len();
                }
            }
        }
    }
    assert!(trips >= 150, "{trips} round trips");
    // A report per snapshot that applied new inputs (two inputs in one tick get one).
    assert!(
        c.input_clock.reports >= 100,
        "{} reports",
        c.input_clock.reports
    );
    // After the first second, which settles the clock: early by at most the clock's widest
    // margin and a little (the estimate of the server's tick phase), where inputs sent as each
    // snapshot arrives would come most of a period early.
    let mut settled: Vec<i64> = leads_us[30..].to_vec();
    settled.sort_unstable();
    let median = settled[settled.len() / 2];
    let widest = i64::try_from(tickwire_bots::timing::MAX_MARGIN.as_micros()).expect("small");
    assert!(
        median <= widest + 5_000 && median < period_us / 2,
        "median lead {median} us (a tick is {period_us} us): {settled:?}"
    );
    // No more inputs: once a snapshot has applied the last one and the tick after the last
    // one named is in, every input has been applied, and the client knows of each that came late, whether a report
    // said so or its tick's snapshot came without it (a late input is usually applied with
    // the next one, and only the newer is reported on).
    let last_named = c.input_clock.last_named().expect("inputs were sent");
    let settle = Instant::now() + Duration::from_secs(5);
    loop {
        let left = settle.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, c.recv())
            .await
            .expect("snapshots keep coming")
            .expect("receives");
        if let Event::Snapshot {
            header, outcome, ..
        } = ev
        {
            outcome.expect("applies");
            if header.last_input_seq > reported {
                reported = header.last_input_seq;
                leads_us.push(i64::from(header.input_lead) * INPUT_LEAD_UNIT_US);
            }
            if header.last_input_seq >= c.seq && header.tick.since(last_named) >= 1 {
                break;
            }
        }
    }
    let late_reports = leads_us.iter().filter(|l| **l < 0).count() as u64;
    assert!(late_reports <= c.input_clock.late, "{leads_us:?}");
    assert_eq!(
        c.input_clock.late,
        server.stats().inputs_late.get(),
        "the client counts every input the server counted late"
    );
    server.shutdown().await;
}
