//! Golden vectors, written by the Rust codec to `tests/golden/vectors.json`, and the JavaScript
//! SDK (`sdk/js/tickwire.js`) checked against them by node (`tests/js/codec.test.mjs`):
//!
//! - every message type: decode to the same message, re-encode to the same bytes;
//! - a synthetic schema that uses every field encoding and delta mode: a body applies to its
//!   baseline and re-encodes byte for byte;
//! - each bundled game, recorded from the real simulation: its welcome (schema and static
//!   data), a run of snapshots a client received (each applied to the JavaScript replica with
//!   the server's checksum, giving the same view as the Rust replica, and re-encoded from the
//!   two views to the same body bytes), and inputs encoded from the schema.
//!
//! The committed vectors must match what the code writes now; after an intended change to the
//! format or a game, regenerate them with `TICKWIRE_BLESS=1 cargo test --test golden`.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use tickwire_protocol::behaviour::BotView;
use tickwire_protocol::body::{
    BodyBuilder, BodyWriter, EncodedChange, apply_body, write_diff, write_record,
};
use tickwire_protocol::codec::{decode_server, encode_client, encode_server};
use tickwire_protocol::schema::{ComponentSchema, Delta, Encoding, Field, str_words};
use tickwire_protocol::state::{Entities, view_checksum};
use tickwire_protocol::*;
use tickwire_server::boundary::{ClientEvent, ClientId};
use tickwire_server::harness::SimClient;
use tickwire_server::sim::Sim;
use tickwire_server::{Config, ServerStats, VisibilityMode};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn client(note: &str, m: ClientMsg) -> Value {
    let mut b = Vec::new();
    encode_client(&m, &mut b);
    json!({"direction": "client", "note": note, "json": serde_json::to_value(&m).expect("json"), "hex": hex(&b)})
}

fn server(note: &str, m: ServerMsg) -> Value {
    let mut b = Vec::new();
    encode_server(&m, &mut b);
    json!({"direction": "server", "note": note, "json": serde_json::to_value(&m).expect("json"), "hex": hex(&b)})
}

fn view_json(entities: &Entities) -> Value {
    entities
        .iter()
        .map(|(id, s)| json!([id.0, s.mask, s.words]))
        .collect()
}

/// A schema with every encoding and delta mode, and a diff that exercises each.
fn synthetic() -> Value {
    let schema = GameSchema {
        game: "synthetic".into(),
        components: vec![
            ComponentSchema {
                name: "Body".into(),
                fields: vec![
                    Field::new(
                        "x",
                        Encoding::Fixed {
                            scale: 2.0,
                            min: -100,
                            max: 8000,
                        },
                    )
                    .delta(Delta::Diff { bits: 6 }),
                    Field::new("aim", Encoding::Angle { steps: 1024 })
                        .delta(Delta::AngleDiff { bits: 5 }),
                    Field::new("hp", Encoding::UInt { max: 100 }),
                    Field::new("score", Encoding::VarUInt).delta(Delta::Diff { bits: 2 }),
                ],
            },
            ComponentSchema {
                name: "Tag".into(),
                fields: vec![
                    Field::new("name", Encoding::Str { max_bytes: 10 }),
                    Field::new("owner", Encoding::EntityRef),
                    Field::new("on", Encoding::Bool),
                    Field::new("v", Encoding::VarInt).delta(Delta::Diff { bits: 3 }),
                    Field::new(
                        "t",
                        Encoding::Int {
                            min: -300,
                            max: 300,
                        },
                    ),
                ],
            },
        ],
        input: vec![],
        statics: vec![],
        ..GameSchema::default()
    };
    schema.validate().expect("valid");
    let body = |x: i64, aim: i64, hp: i64, score: i64| EntityState {
        mask: 1,
        words: [x, aim, hp, score].into_iter().collect(),
    };
    let tag = |name: &str, v: i64| {
        let mut words = Vec::new();
        str_words(name, 10, &mut words);
        words.extend([7, 1, v, -300]);
        EntityState {
            mask: 2,
            words: words.into_iter().collect(),
        }
    };
    let mut both = body(-100, 1, 2, 3);
    both.mask = 3;
    both.words.extend(tag("ünï", 0).words);
    let base = Entities::from_iter([
        (NetId(1), body(10, 1020, 100, 7)),
        (NetId(2), tag("héllo", -5)),
        (NetId(3), body(8000, 0, 0, 0)),
        (NetId(9), both),
        (NetId(300), tag("", 1)),
    ]);
    let mut cur = base.clone();
    cur.insert(NetId(1), body(42, 4, 99, 4_000_000_000));
    cur.insert(NetId(2), tag("bye", i64::from(i32::MIN)));
    cur.insert(NetId(3), body(-100, 512, 0, 1));
    cur.remove(&NetId(9));
    cur.insert(NetId(300), body(1, 2, 3, 4)); // Replaced: its components changed.
    cur.insert(NetId(70_000), tag("new", 3));
    let mut full = Vec::new();
    write_diff(
        &schema,
        &Entities::new(),
        &base,
        view_checksum(&base),
        &mut full,
    );
    let mut delta = Vec::new();
    write_diff(&schema, &base, &cur, view_checksum(&cur), &mut delta);
    // The same change in three sections, ids grouped by id % 3 (as a server groups them by
    // grid cell): it applies to the same view.
    let mut sections = BodyBuilder::default();
    for g in 0..3 {
        let mine = |id: &NetId| id.0 % 3 == g;
        let part = |v: &Entities| {
            v.iter()
                .filter(|(id, _)| mine(id))
                .map(|(id, s)| (*id, s.clone()))
                .collect::<Entities>()
        };
        let mut w = BodyWriter::default();
        for (id, s) in part(&cur).iter() {
            if part(&base).get(id).is_none_or(|old| old.mask != s.mask) {
                w.created(&schema, *id, s.mask, &s.words);
            }
        }
        for (id, s) in part(&cur).iter() {
            if let Some(old) = part(&base).get(id).filter(|old| old.mask == s.mask) {
                let mut rec = EncodedChange::default();
                if rec.encode(&schema, s.mask, &old.words, &s.words) {
                    w.changed(*id, &rec);
                }
            }
        }
        for (id, old) in part(&base).iter() {
            if cur.get(id).is_none_or(|s| s.mask != old.mask) {
                w.removed(*id);
            }
        }
        sections.push_writer(&w);
    }
    assert_eq!(sections.sections(), 3);
    let mut sectioned = Vec::new();
    sections.finish(view_checksum(&cur), &mut sectioned);
    let (applied, _) = apply_body(&schema, &base, &sectioned).expect("sections apply");
    assert_eq!(applied, cur);
    json!({
        "sections_hex": hex(&sectioned),
        "schema": schema,
        "base": view_json(&base),
        "cur": view_json(&cur),
        "full_hex": hex(&full),
        "delta_hex": hex(&delta),
    })
}

/// Records what client 0 of three bots received from `game` over `ticks` ticks: the welcome,
/// then each snapshot frame with the view it produced, acking two ticks late so deltas use
/// older baselines too; and a few inputs.
fn game(name: &str, ticks: usize) -> Value {
    let bundled = tickwire::find(name).expect("bundled");
    let config = Config {
        visibility: VisibilityMode::Global,
        seed: 7,
        ..Config::default()
    };
    let (tx, rx) = crossbeam_channel::bounded(8);
    let mut sim = Sim::new(&config, &bundled.game, rx, Arc::new(ServerStats::default()))
        .expect("the game builds");
    let mut clients: Vec<SimClient> = (0..3)
        .map(|i| {
            let (c, join) = SimClient::new(ClientId(i), &format!("bot-{i}"), 16, 256);
            tx.send(join).expect("room");
            c
        })
        .collect();
    let mut behaviours: Vec<Option<Box<dyn behaviour::Behaviour>>> = (0..3).map(|_| None).collect();
    let mut frames = Vec::new();
    let mut inputs = Vec::new();
    let mut welcome = Value::Null;
    let mut applied: Vec<Vec<Tick>> = vec![Vec::new(); 3];
    for _ in 0..ticks {
        for (i, c) in clients.iter_mut().enumerate() {
            let Some(w) = c.welcome.clone() else {
                continue;
            };
            let b = behaviours[i].get_or_insert_with(|| (bundled.behaviour)(100 + i as u64, &w));
            let mut words = Vec::new();
            let view = BotView {
                welcome: &w,
                view: c.replica.as_ref().and_then(|r| r.latest()),
            };
            b.next_input(&view, &mut words);
            let ack = applied[i].iter().rev().nth(1).copied();
            if i == 0 && inputs.len() < 8 {
                let mut fields = Vec::new();
                write_record(&w.schema.input, &words, &mut fields);
                inputs.push(json!({"words": words, "hex": hex(&fields)}));
            }
            c.send_input(&words, ack);
        }
        sim.tick();
        for (i, c) in clients.iter_mut().enumerate() {
            while let Ok(frame) = c.outbox.try_recv() {
                for bytes in frame.into_messages() {
                    match decode_server(&bytes).expect("decodes") {
                        ServerMsg::Welcome(w) => {
                            if i == 0 {
                                welcome = json!({
                                    "json": serde_json::to_value(ServerMsg::Welcome(w.clone())).expect("json"),
                                    "hex": hex(&bytes),
                                });
                            }
                            c.player = w.player;
                            c.replica = Some(Replica::new(Arc::new(w.schema.clone())));
                            c.welcome = Some(w);
                        }
                        ServerMsg::Snapshot(s) => {
                            let replica = c.replica.as_mut().expect("welcomed");
                            let view = replica.apply(&s.header, &s.body).expect("verifies");
                            applied[i].push(s.header.tick);
                            if i == 0 {
                                // Every frame's bytes; the view it gives every fourth frame (the
                                // checksum covers the others), to keep the file small.
                                let mut f = json!({"hex": hex(&bytes)});
                                if frames.len() % 4 == 0 {
                                    f["view"] = view_json(&view.entities);
                                }
                                frames.push(f);
                            }
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            if let Some(t) = applied[i].iter().rev().nth(1) {
                c.send(ClientEvent::Ack(*t));
            }
        }
    }
    json!({"welcome": welcome, "snapshots": frames, "inputs": inputs})
}

fn vectors() -> Value {
    let messages = vec![
        client(
            "hello",
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "héllo".into(),
                room: RoomRequest::JoinOrCreate {
                    game: "arena".into(),
                    filter: vec![("mode".into(), "duel".into())],
                },
            },
        ),
        client(
            "hello joining a room by id",
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "b".into(),
                room: RoomRequest::Join {
                    id: "k3x9pq2m".into(),
                },
            },
        ),
        client(
            "hello creating a room",
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: String::new(),
                room: RoomRequest::Create {
                    game: String::new(),
                    props: vec![("private".into(), "yes".into()), ("map".into(), "ß".into())],
                },
            },
        ),
        client(
            "input with an ack riding on it",
            ClientMsg::Input(InputMsg {
                seq: 300,
                ack: Some(Tick(70_000)),
                tick: Some(Tick(70_002)),
                events_ack: 300,
                fields: vec![0x12, 0x34, 0x56],
            }),
        ),
        client(
            "input without an ack",
            ClientMsg::Input(InputMsg {
                seq: 1,
                ack: None,
                tick: None,
                events_ack: 0,
                fields: vec![0],
            }),
        ),
        client("ack", ClientMsg::Ack { tick: Tick(65_536) }),
        client("ping", ClientMsg::Ping { nonce: 1 << 40 }),
        client("resync", ClientMsg::Resync { tick: Tick(250) }),
        client(
            "resume from a tick",
            ClientMsg::Resume {
                version: PROTOCOL_VERSION,
                secret: "q1w2e3r4t5y6u7i8o9p0aZ".into(),
                last_tick: Some(Tick(70_000)),
                events_received: 300,
            },
        ),
        client(
            "resume with no tick applied",
            ClientMsg::Resume {
                version: PROTOCOL_VERSION,
                secret: "s".into(),
                last_tick: None,
                events_received: 0,
            },
        ),
        client(
            "events with the ack of the server's",
            ClientMsg::Events(EventsMsg {
                ack: 12,
                first: 70_000,
                events: vec![
                    EventRecord {
                        kind: 0,
                        words: vec![3, -3, 1 << 40],
                    },
                    EventRecord {
                        kind: 1,
                        words: vec![],
                    },
                ],
            }),
        ),
        client(
            "an ack of events alone",
            ClientMsg::Events(EventsMsg {
                ack: 5,
                first: 1,
                events: vec![],
            }),
        ),
        server(
            "snapshot frame (opaque body)",
            ServerMsg::Snapshot(Snapshot {
                header: SnapshotHeader {
                    tick: Tick(1000),
                    baseline: Some(Tick(998)),
                    last_input_seq: 70_000,
                    input_lead: -137,
                },
                body: vec![0, 0, 0, 1, 2, 3, 4],
            }),
        ),
        server(
            "pong",
            ServerMsg::Pong {
                nonce: 1,
                tick: Tick(70_000),
            },
        ),
        server(
            "error",
            ServerMsg::Error {
                code: 4001,
                message: "unsupported protocol version 1; this server speaks 4".into(),
            },
        ),
        server(
            "events",
            ServerMsg::Events(EventsMsg {
                ack: 70_000,
                first: 2,
                events: vec![EventRecord {
                    kind: 0,
                    words: vec![7, 0, -1],
                }],
            }),
        ),
    ];
    let games: serde_json::Map<String, Value> = tickwire::bundled()
        .iter()
        .map(|b| (b.game.name().to_owned(), game(b.game.name(), 40)))
        .collect();
    json!({
        "about": "Golden vectors of the Tickwire protocol, written by tests/golden.rs; see docs/PROTOCOL.md.",
        "protocol_version": PROTOCOL_VERSION,
        "hashes": [
            {"id": 1, "mask": 1, "words": [4, 8, 256], "hash": 0x76f1_a890u32},
            {"id": 9, "mask": 3, "words": [-120, 4_000_000_000u32], "hash": 0x8a8d_75dau32},
        ],
        "messages": messages,
        "synthetic": synthetic(),
        "games": games,
    })
}

#[test]
fn golden_vectors_are_current_and_the_javascript_sdk_matches_them() {
    let path = root().join("tests/golden/vectors.json");
    let text = serde_json::to_string_pretty(&vectors()).expect("serializes") + "\n";
    if std::env::var_os("TICKWIRE_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write the vectors");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date with the codec or a game; if the change is intended, regenerate \
         it with TICKWIRE_BLESS=1 cargo test --test golden",
        path.display()
    );

    let test = root().join("tests/js/codec.test.mjs");
    let out = Command::new("node")
        .arg("--test")
        .arg(&test)
        .output()
        .expect("node runs (install Node.js 18 or newer; .ci/run does)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the JavaScript SDK disagrees with the Rust codec:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}
