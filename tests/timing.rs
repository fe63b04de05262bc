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
/// applied it.
async fn input_naming(c: &mut tickwire_bots::Client, tick: Option<Tick>) -> SnapshotHeader {
    let mut fields = Vec::new();
    let words = vec![0; c.welcome.schema.input.len()];
    write_record(&c.welcome.schema.input, &words, &mut fields);
    c.seq += 1;
    let seq = c.seq;
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
            return header;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_how_early_each_input_came_and_counts_late_ones() {
    let server = start(test_config()).await;
    let mut c = connect(&server, "timed").await;
    let now = snapshots(&mut c, 2).await.tick;
    let period_us = 1_000_000 / i64::from(c.welcome.tick_rate_hz);

    // Naming no tick: applied at the next tick, never late, at most a period early.
    let h = input_naming(&mut c, None).await;
    let lead_us = i64::from(h.input_lead) * INPUT_LEAD_UNIT_US;
    assert!((0..=period_us + 5_000).contains(&lead_us), "{h:?}");
    assert_eq!(server.stats().inputs_late.get(), 0);

    // Naming a tick long gone: late by about that many periods, counted, applied anyway.
    let h = input_naming(&mut c, Some(now.minus(20))).await;
    let lead_us = i64::from(h.input_lead) * INPUT_LEAD_UNIT_US;
    assert!(lead_us < -15 * period_us, "{h:?}");
    assert_eq!(server.stats().inputs_late.get(), 1);

    // Naming a tick 10 ahead: early by about 9 to 10 periods, and not late.
    let ahead = snapshots(&mut c, 1).await.tick.next();
    let h = input_naming(&mut c, Some(Tick(ahead.0 + 10))).await;
    let lead_us = i64::from(h.input_lead) * INPUT_LEAD_UNIT_US;
    assert!((8 * period_us..=11 * period_us).contains(&lead_us), "{h:?}");
    assert_eq!(server.stats().inputs_late.get(), 1);
    server.shutdown().await;
}

/// A client that sends each input when its input clock says reaches the server a margin before
/// the tick: once the clock has settled, inputs are applied by the tick they name and their
/// round trip (sent to the snapshot that applied them) is well under a tick period. The bound
/// is loose (a shared machine), the report's figures are the measurement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_sent_on_the_input_clock_make_their_tick() {
    let server = start(Config {
        resume_grace_ms: 0,
        ..test_config()
    })
    .await;
    let mut c = connect(&server, "clocked").await;
    snapshots(&mut c, 1).await;
    let words = vec![0; c.welcome.schema.input.len()];
    let mut sent: Vec<(u32, Instant)> = Vec::new();
    let mut trips = Vec::new();
    let mut due = tokio::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(8);
    while trips.len() < 150 && Instant::now() < deadline {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {
                let seq = c.send_input(&words).await.expect("sends");
                sent.push((seq, Instant::now()));
                due = c.next_input_at().into();
            }
            ev = c.recv() => {
                if let Event::Snapshot { header, outcome, .. } = ev.expect("receives") {
                    outcome.expect("applies");
                    let at = Instant::now();
                    sent.retain(|&(seq, t)| {
                        if seq <= header.last_input_seq {
                            trips.push(at - t);
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        }
    }
    assert!(trips.len() >= 150, "{} round trips", trips.len());
    // After the first second, which settles the clock.
    let mut settled: Vec<Duration> = trips[30..].to_vec();
    settled.sort();
    let median = settled[settled.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median round trip {median:?} (a tick is 33 ms)"
    );
    // A report per snapshot that applied new inputs (two inputs in one tick get one).
    assert!(
        c.input_clock.reports >= 100,
        "{} reports",
        c.input_clock.reports
    );
    assert!(
        c.input_clock.late * 10 <= c.input_clock.reports,
        "{} of {} late",
        c.input_clock.late,
        c.input_clock.reports
    );
    server.shutdown().await;
}
