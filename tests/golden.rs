//! Golden byte vectors for every message type, written by the Rust codec to
//! `tests/golden/vectors.json`, and the JavaScript codec (`assets/web/protocol.js`) checked
//! against them by node (`tests/js/codec.test.mjs`): decode to the same message, re-encode to
//! the same bytes, and apply snapshots with the same checksums.
//!
//! The committed vectors must match what the codec writes now; after an intended format change,
//! regenerate them with `TICKWIRE_BLESS=1 cargo test --test golden`.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use tickwire_protocol::codec::{encode_client, encode_server};
use tickwire_protocol::view::View;
use tickwire_protocol::*;

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

fn player(x: u16, y: u16, aim: u16, hp: u8, score: u32) -> EntityState {
    EntityState::Player(PlayerState {
        x,
        y,
        aim,
        hp,
        score,
    })
}

fn projectile(x: u16, y: u16, vx: i16, vy: i16, born: u32, owner: u32) -> EntityState {
    EntityState::Projectile(ProjectileState {
        x,
        y,
        vx,
        vy,
        born: Tick(born),
        owner: NetId(owner),
    })
}

fn snapshot(tick: u32, baseline: Option<u32>, seq: u32, body: SnapshotBody) -> ServerMsg {
    ServerMsg::Snapshot(Snapshot {
        header: SnapshotHeader {
            tick: Tick(tick),
            baseline: baseline.map(Tick),
            last_input_seq: seq,
        },
        body,
    })
}

fn arena(walls: Vec<Rect>) -> ArenaInfo {
    ArenaInfo {
        width: 4000.0,
        height: 4000.0,
        walls,
        player_radius: 16.0,
        projectile_radius: 4.0,
        player_speed: 250.0,
        projectile_speed: 900.0,
    }
}

fn created(id: u32, state: EntityState) -> EntityUpdate {
    EntityUpdate {
        id: NetId(id),
        state,
    }
}

/// A full snapshot and a delta against it, with the checksums a server would send.
fn replica_sequence() -> Vec<Value> {
    let full: Vec<_> = vec![
        created(1, player(100, 200, 0, 100, 0)),
        created(2, player(4000, 4000, 1000, 75, 3)),
        created(9, projectile(110, 200, 120, -3, 10, 1)),
    ];
    let view = |entities: &[(u32, EntityState)]| View {
        tick: Tick(0),
        entities: entities.iter().map(|(i, s)| (NetId(*i), *s)).collect(),
    };
    let v10 = view(&full.iter().map(|u| (u.id.0, u.state)).collect::<Vec<_>>());
    let mut b1 = Vec::new();
    encode_server(
        &snapshot(
            10,
            None,
            3,
            SnapshotBody {
                created: full,
                changed: vec![],
                removed: vec![],
                checksum: v10.checksum(),
            },
        ),
        &mut b1,
    );
    // Tick 12 against 10: player 1 moves and turns (compact), player 2 is hit (masked), the
    // projectile is gone and a new one appears.
    let v12 = view(&[
        (1, player(130, 190, 16, 100, 0)),
        (2, player(4000, 4000, 1000, 50, 3)),
        (12, projectile(150, 190, 120, 0, 12, 1)),
    ]);
    let mut b2 = Vec::new();
    encode_server(
        &snapshot(
            12,
            Some(10),
            5,
            SnapshotBody {
                created: vec![created(12, projectile(150, 190, 120, 0, 12, 1))],
                changed: vec![
                    PlayerDelta {
                        id: NetId(1),
                        dx: 30,
                        dy: -10,
                        daim: 16,
                        hp: None,
                        score: None,
                    },
                    PlayerDelta {
                        id: NetId(2),
                        hp: Some(50),
                        ..PlayerDelta::default()
                    },
                ],
                removed: vec![NetId(9)],
                checksum: v12.checksum(),
            },
        ),
        &mut b2,
    );
    vec![Value::String(hex(&b1)), Value::String(hex(&b2))]
}

fn vectors() -> Value {
    let walls = vec![
        Rect {
            min_x: 1900.0,
            min_y: 1500.0,
            max_x: 2100.0,
            max_y: 2500.0,
        },
        Rect {
            min_x: 600.5,
            min_y: 600.0,
            max_x: 1100.0,
            max_y: 700.25,
        },
    ];
    let messages = vec![
        client(
            "hello",
            ClientMsg::Hello {
                version: 3,
                name: "ab".into(),
            },
        ),
        client(
            "hello with a non-ASCII name",
            ClientMsg::Hello {
                version: 3,
                name: "bot-é✓".into(),
            },
        ),
        client(
            "input, firing",
            ClientMsg::Input(Input {
                seq: 7,
                move_x: 1.0,
                move_y: -0.5,
                aim: 0.0,
                fire: true,
            }),
        ),
        client(
            "input, large seq",
            ClientMsg::Input(Input {
                seq: 70_000,
                move_x: 0.6,
                move_y: 0.8,
                aim: 3.25,
                fire: false,
            }),
        ),
        client(
            "ack with a 3-byte varint",
            ClientMsg::Ack { tick: Tick(300) },
        ),
        client(
            "ping with a 5-byte varint",
            ClientMsg::Ping { nonce: 70_000 },
        ),
        client(
            "ping with a 9-byte varint",
            ClientMsg::Ping {
                nonce: 5_000_000_000,
            },
        ),
        client(
            "resync after a failed snapshot",
            ClientMsg::Resync { tick: Tick(4_321) },
        ),
        server(
            "welcome, global",
            ServerMsg::Welcome(Welcome {
                version: 3,
                player: NetId(17),
                tick_rate_hz: 30,
                tick: Tick(123_456),
                arena: arena(walls.clone()),
                visibility: Visibility::Global,
            }),
        ),
        server(
            "welcome, aoi",
            ServerMsg::Welcome(Welcome {
                version: 3,
                player: NetId(1),
                tick_rate_hz: 60,
                tick: Tick(0),
                arena: arena(vec![]),
                visibility: Visibility::Aoi { radius: 800.0 },
            }),
        ),
        server(
            "full snapshot",
            snapshot(
                100,
                None,
                0,
                SnapshotBody {
                    created: vec![
                        created(1, player(100, 200, 1023, 100, 0)),
                        created(300, player(65_535, 0, 0, 0, 70_000)),
                        created(301, projectile(7, 8, -120, 125, 99, 300)),
                    ],
                    changed: vec![],
                    removed: vec![],
                    checksum: 0xfeed_f00d,
                },
            ),
        ),
        server(
            "delta: compact, far gap, masked, removals",
            snapshot(
                70_000,
                Some(69_998),
                1_000_000,
                SnapshotBody {
                    created: vec![created(500, projectile(1000, 1000, 0, -126, 69_999, 2))],
                    changed: vec![
                        PlayerDelta {
                            id: NetId(2),
                            dx: 33,
                            dy: -33,
                            daim: 16,
                            hp: None,
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(9),
                            dx: -64,
                            dy: 63,
                            daim: -32,
                            hp: None,
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(200),
                            dx: 1,
                            dy: 1,
                            daim: 0,
                            hp: None,
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(201),
                            dx: 0,
                            dy: 0,
                            daim: 5,
                            hp: None,
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(203),
                            dx: 500,
                            dy: -70_000,
                            daim: -512,
                            hp: Some(0),
                            score: Some(4_000_000_000),
                        },
                    ],
                    removed: vec![NetId(3), NetId(4), NetId(100_000)],
                    checksum: 1,
                },
            ),
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
                message: "unsupported protocol version 1; this server speaks 2".into(),
            },
        ),
    ];
    json!({
        "about": "Golden vectors of the Tickwire protocol, written by tests/golden.rs; see docs/PROTOCOL.md.",
        "protocol_version": PROTOCOL_VERSION,
        "messages": messages,
        "replica": replica_sequence(),
    })
}

#[test]
fn golden_vectors_are_current_and_the_javascript_codec_matches_them() {
    let path = root().join("tests/golden/vectors.json");
    let text = serde_json::to_string_pretty(&vectors()).expect("serializes") + "\n";
    if std::env::var_os("TICKWIRE_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write the vectors");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date with the codec; if the change is intended, regenerate it with \
         TICKWIRE_BLESS=1 cargo test --test golden",
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
        "the JavaScript codec disagrees with the Rust one:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}
