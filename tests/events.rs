//! Reliable ordered events on the real server, with the whiteboard's chat (a client event
//! `Say`, broadcast as the server event `Chat`): every line arrives exactly once and in order
//! at every client, across resumes on both sides (a line said while the sender's connection is
//! down is sent again, once; lines said while a receiver is away arrive when it resumes); a
//! client that stops acknowledging is closed with 4012 at the documented bound; bots chat with
//! drops and lose nothing.

mod common;

use common::*;
use std::time::Duration;
use tickwire_bots::client::Event;
use tickwire_bots::{Client, SwarmConfig, run_swarm};
use tickwire_protocol::{Replicate, close};
use tickwire_server::Config;
use tickwire_whiteboard::{Chat, Say};

fn whiteboard() -> Config {
    Config {
        game: "whiteboard".into(),
        ..test_config()
    }
}

/// Plays `c` (applying and acking snapshots, acking events with its input) until it has taken
/// `n` chat lines in all; returns every line taken so far.
async fn chat_until(c: &mut Client, lines: &mut Vec<Chat>, n: usize) {
    chat_acking(c, lines, n, true).await;
}

/// [`chat_until`], acknowledging the events (`ack_events`), or only the snapshots, with bare
/// acks: then the events' acknowledgement stays owed.
async fn chat_acking(c: &mut Client, lines: &mut Vec<Chat>, n: usize, ack_events: bool) {
    bounded("chat lines", async {
        while lines.len() < n {
            match c.recv().await.expect("connected") {
                Event::Snapshot {
                    header, outcome, ..
                } => {
                    outcome.expect("applies");
                    if ack_events {
                        c.ack(header.tick).await.expect("acks");
                    } else {
                        let ack = tickwire_protocol::ClientMsg::Ack { tick: header.tick };
                        c.send(&ack).await.expect("acks");
                    }
                }
                Event::Events(events) => {
                    lines.extend(events.iter().map(|(_, e)| Chat::read(&e.words)));
                }
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_arrives_exactly_once_and_in_order_across_resumes_on_both_sides() {
    let server = start(whiteboard()).await;
    let mut talker = connect(&server, "talker").await;
    let mut listener = connect(&server, "listener").await;
    let me = talker.welcome.player;
    let (mut heard, mut echoed) = (Vec::new(), Vec::new());
    let mut said = Vec::new();
    let say = |i: usize| Say(format!("line {i}"));

    for i in 0..5 {
        talker.send_event(&say(i)).await.expect("says");
        said.push(say(i).0);
    }
    chat_until(&mut listener, &mut heard, 5).await;

    // The listener goes away; lines said meanwhile wait for it on the server.
    listener.drop_connection().await;
    for i in 5..10 {
        talker.send_event(&say(i)).await.expect("says");
        said.push(say(i).0);
    }
    chat_until(&mut talker, &mut echoed, 10).await;
    listener.resume().await.expect("resumes");
    chat_until(&mut listener, &mut heard, 10).await;

    // The talker's connection drops; a line said while it is down is kept and sent again
    // after the resume, once.
    talker.drop_connection().await;
    let _ = talker.send_event(&say(10)).await; // the write may fail: the event is kept
    said.push(say(10).0);
    talker.resume().await.expect("resumes");
    for i in 11..14 {
        talker.send_event(&say(i)).await.expect("says");
        said.push(say(i).0);
    }
    chat_until(&mut listener, &mut heard, 14).await;
    chat_until(&mut talker, &mut echoed, 14).await;

    for lines in [&heard, &echoed] {
        let texts: Vec<&str> = lines.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, said, "every line once, in order");
        assert!(lines.iter().all(|c| c.from == me));
    }
    for c in [&talker, &listener] {
        assert_eq!(c.events.lost, 0, "no gap and no repeat");
        assert_eq!(c.events.received, 14);
    }
    assert_eq!(talker.events.sent, 14);
    let stats = server.stats();
    assert_eq!(stats.events_in.get(), 14, "the server took each line once");
    assert_eq!(stats.resumes.get(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_acknowledging_events_is_closed_4012_at_the_bound() {
    let server = start(Config {
        max_pending_events: 8,
        ..whiteboard()
    })
    .await;
    let mut talker = connect(&server, "talker").await;
    let mut deaf = connect(&server, "deaf").await;
    // The deaf client reads everything but never acknowledges an event (nor a snapshot).
    let deaf_reads = tokio::spawn(async move {
        loop {
            if let Err(e) = deaf.recv().await {
                return (e, deaf.events.received);
            }
        }
    });
    for i in 0..12 {
        talker.send_event(&Say(format!("{i}"))).await.expect("says");
        // The talker keeps up (its acks ride on its snapshots' acks).
        talker.next_snapshot().await.expect("applies");
    }
    let (e, got) = bounded("the close", deaf_reads).await.expect("task");
    assert!(is_close(&e, close::EVENTS_BEHIND), "{e}");
    assert!(e.to_string().contains("unacknowledged"), "{e}");
    assert!(got <= 8, "never more than the bound in flight: {got}");
    assert!(server.stats().event_kicks.get() >= 1);
    // The talker, which acknowledges, is fine.
    snapshots(&mut talker, 5).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_on_inputs_are_freed_and_a_false_acknowledgement_is_closed_4012() {
    let server = start(Config {
        max_pending_events: 8,
        ..whiteboard()
    })
    .await;
    let mut talker = connect(&server, "talker").await;
    let mut player = connect(&server, "player").await;
    let idle = vec![0; player.welcome.schema.input.len()];
    let mut heard = Vec::new();
    // Twice the bound: the player is closed with 4012 unless its inputs free what it took.
    let lines = 16;
    bounded("every line, acknowledged on inputs", async {
        let mut said = 0;
        while heard.len() < lines {
            if said < lines {
                talker
                    .send_event(&Say(format!("{said}")))
                    .await
                    .expect("says");
                said += 1;
                talker.next_snapshot().await.expect("applies");
            }
            // The player sends inputs and nothing else: both its acknowledgements ride on them.
            loop {
                match player.recv().await.expect("not closed") {
                    Event::Snapshot { outcome, .. } => {
                        outcome.expect("applies");
                        break;
                    }
                    Event::Events(events) => {
                        heard.extend(events.iter().map(|(_, e)| Chat::read(&e.words).text));
                    }
                    _ => {}
                }
            }
            player.send_input(&idle).await.expect("sends");
        }
    })
    .await;
    let expected: Vec<String> = (0..lines).map(|i| i.to_string()).collect();
    assert_eq!(heard, expected, "every line once, in order");
    assert_eq!(player.events.lost, 0);
    assert_eq!(server.stats().event_kicks.get(), 0, "nobody fell behind");
    snapshots(&mut player, 3).await;

    // An input that acknowledges an event never sent is closed like such an `Events`.
    let mut fields = Vec::new();
    tickwire_protocol::body::write_record(&player.welcome.schema.input, &idle, &mut fields);
    player.seq += 1;
    let input = tickwire_protocol::InputMsg {
        seq: player.seq,
        ack: None,
        tick: None,
        events_ack: 1_000,
        fields,
    };
    player
        .send(&tickwire_protocol::ClientMsg::Input(input))
        .await
        .expect("sends");
    let e = bounded("the close", async {
        loop {
            if let Err(e) = player.recv().await {
                return e;
            }
        }
    })
    .await;
    assert!(is_close(&e, close::EVENTS_BEHIND), "{e}");
    assert_eq!(server.stats().event_kicks.get(), 1);
    snapshots(&mut talker, 3).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_acknowledgement_on_a_dropped_input_still_counts() {
    // A queue to the world of two messages and room for eight unacknowledged events.
    let server = start(Config {
        input_queue_len: 2,
        max_pending_events: 8,
        ..whiteboard()
    })
    .await;
    let mut talker = connect(&server, "talker").await;
    let mut player = connect(&server, "player").await;
    let idle = vec![0; player.welcome.schema.input.len()];
    let (mut heard, mut echoed) = (Vec::new(), Vec::new());
    for i in 0..6 {
        talker.send_event(&Say(format!("{i}"))).await.expect("says");
    }
    // The talker keeps up with its own lines; the player takes them and owes their ack.
    chat_until(&mut talker, &mut echoed, 6).await;
    chat_acking(&mut player, &mut heard, 6, false).await;

    // Nothing drains the queue: two inputs fill it, and the third, which carries the
    // acknowledgement of the six events, is dropped.
    server.set_tick_paused(true);
    let mut fields = Vec::new();
    tickwire_protocol::body::write_record(&player.welcome.schema.input, &idle, &mut fields);
    for _ in 0..2 {
        player.seq += 1;
        let msg = tickwire_protocol::ClientMsg::Input(tickwire_protocol::InputMsg {
            seq: player.seq,
            ack: None,
            tick: None,
            events_ack: 0,
            fields: fields.clone(),
        });
        player.send(&msg).await.expect("sends");
    }
    player.send_input(&idle).await.expect("sends");
    bounded("the third input dropped", async {
        while server.stats().inputs_dropped.get() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.set_tick_paused(false);

    // Six more: twelve in all, over the bound of eight unless the six were freed.
    for i in 6..12 {
        talker.send_event(&Say(format!("{i}"))).await.expect("says");
    }
    chat_until(&mut talker, &mut echoed, 12).await;
    chat_until(&mut player, &mut heard, 12).await;
    let expected: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    let texts: Vec<String> = heard.into_iter().map(|c| c.text).collect();
    assert_eq!(texts, expected);
    assert_eq!(
        server.stats().event_kicks.get(),
        0,
        "the acknowledgement was kept"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_chat_through_drops_and_lose_no_event() {
    let server = start(whiteboard()).await;
    let report = bounded(
        "the swarm",
        run_swarm(SwarmConfig {
            url: server.ws_url(),
            bots: 8,
            duration: Duration::from_secs(6),
            drop_every: Some(Duration::from_millis(1500)),
            metrics_url: server.metrics_url(),
            behaviours: tickwire::behaviours(),
            ..SwarmConfig::default()
        }),
    )
    .await;
    assert!(report.ok(), "{}", report.summary());
    assert!(report.events_sent > 0, "{}", report.summary());
    assert!(report.events_received > 0, "{}", report.summary());
    assert_eq!(report.events_lost, 0);
    assert!(report.resumes > 0);
    assert_eq!(report.resume_failures, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_waits_for_room_in_the_queue_and_none_is_lost() {
    // A queue to the world of two messages: a burst of 25 events overflows it at once. Then
    // the talker sends and reads nothing more: its frames go by the lane, so only the
    // session's own retry, once a tick, moves the rest of the burst.
    let server = start(Config {
        input_queue_len: 2,
        ..whiteboard()
    })
    .await;
    let mut talker = connect(&server, "talker").await;
    let mut listener = connect(&server, "listener").await;
    for i in 0..25 {
        talker
            .send_event(&Say(format!("burst {i}")))
            .await
            .expect("says");
    }
    let said: Vec<String> = (0..25).map(|i| format!("burst {i}")).collect();
    let (mut heard, mut echoed) = (Vec::new(), Vec::new());
    chat_until(&mut listener, &mut heard, 25).await;
    chat_until(&mut talker, &mut echoed, 25).await;
    for lines in [heard, echoed] {
        let texts: Vec<String> = lines.into_iter().map(|c| c.text).collect();
        assert_eq!(texts, said, "all of the burst, once, in order");
    }
    assert_eq!(server.stats().events_in.get(), 25);
    assert_eq!(talker.events.lost, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_and_bad_resumes_get_their_close_codes() {
    use tickwire_protocol::{ClientMsg, EventRecord, EventsMsg, PROTOCOL_VERSION};
    let server = start(whiteboard()).await;
    let say = |text: &str| {
        let mut words = Vec::new();
        Say(text.into()).write(&mut words);
        EventRecord { kind: 0, words }
    };
    let cases: Vec<(&str, EventsMsg, u16, &str)> = vec![
        (
            "an unknown type",
            EventsMsg {
                ack: 0,
                first: 1,
                events: vec![EventRecord {
                    kind: 9,
                    words: vec![],
                }],
            },
            close::POLICY_VIOLATION,
            "unknown client event type 9",
        ),
        (
            "words out of range",
            EventsMsg {
                ack: 0,
                first: 1,
                events: vec![EventRecord {
                    kind: 0,
                    words: vec![-1],
                }],
            },
            close::POLICY_VIOLATION,
            "event Say",
        ),
        (
            "more than a client message holds",
            EventsMsg {
                ack: 0,
                first: 1,
                events: (0..33).map(|_| say("")).collect(),
            },
            close::INVALID_PAYLOAD,
            "undecodable",
        ),
        (
            "a gap",
            EventsMsg {
                ack: 0,
                first: 2,
                events: vec![say("skipped one")],
            },
            close::EVENTS_BEHIND,
            "out of order",
        ),
        (
            "an ack of events never sent",
            EventsMsg {
                ack: 5,
                first: 1,
                events: vec![],
            },
            close::EVENTS_BEHIND,
            "BadAck",
        ),
    ];
    for (what, msg, code, reason) in cases {
        let mut c = connect(&server, "bad").await;
        c.send(&ClientMsg::Events(msg)).await.expect("sends");
        let (got, why) = close_of(&mut c).await;
        assert_eq!(got, Some(code), "{what}: {why}");
        assert!(why.contains(reason), "{what}: {why}");
    }
    // A resume secret longer than any the server gives.
    let url = format!("{}?resume=1", server.ws_url());
    let (ws, _) = tickwire_bots::client::open(&url, &Default::default())
        .await
        .expect("upgrades");
    let mut c = Client::from_ws(ws);
    c.send(&ClientMsg::Resume {
        version: PROTOCOL_VERSION,
        secret: "x".repeat(65),
        last_tick: None,
        events_received: 0,
    })
    .await
    .expect("sends");
    assert_eq!(close_of(&mut c).await.0, Some(close::POLICY_VIOLATION));
    server.shutdown().await;

    // A server that holds no dropped players gives no secret and refuses every resume.
    let server = start(Config {
        resume_grace_ms: 0,
        ..whiteboard()
    })
    .await;
    let mut c = connect(&server, "p").await;
    assert_eq!(c.welcome.resume, "", "no secret to resume with");
    let e = c.resume().await.expect_err("refused");
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    let url = format!("{}?resume=1", server.ws_url());
    let (ws, _) = tickwire_bots::client::open(&url, &Default::default())
        .await
        .expect("upgrades");
    let mut raw = Client::from_ws(ws);
    raw.send(&ClientMsg::Resume {
        version: PROTOCOL_VERSION,
        secret: "anything".into(),
        last_tick: None,
        events_received: 0,
    })
    .await
    .expect("sends");
    let (code, why) = close_of(&mut raw).await;
    assert_eq!(code, Some(close::RESUME_REFUSED));
    assert!(why.contains("does not hold players"), "{why}");
    server.shutdown().await;
}
