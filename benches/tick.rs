//! One full server tick with no sockets, at 100, 500 and 1000 clients in the arena scenario,
//! in `global` and `aoi` visibility: inputs ingested, simulation, world captured, and every
//! client's delta built, encoded and handed to its outbox. Only `Sim::tick` is timed; feeding inputs, draining outboxes and
//! verifying a client's replica happen outside the measurement.
//!
//! Clients ack with a lag of 1 to 3 ticks (as over a real network), so several baselines are in
//! use each tick. Every iteration applies client 0's snapshot to a replica and checks it, so the
//! bench cannot pass while producing wrong deltas. Bytes per client per tick are printed.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_bots::wander::Wander;
use tickwire_protocol::codec::decode_server;
use tickwire_protocol::view::Replica;
use tickwire_protocol::{ServerMsg, Tick};
use tickwire_server::replication::{ClientEvent, ClientId, JoinRequest, LeaveSlot, Outgoing};
use tickwire_server::sim::Sim;
use tickwire_server::sim::map::Map;
use tickwire_server::{Config, ServerStats, VisibilityMode};
use tokio::sync::mpsc;

/// Ticks run before measuring, so projectiles, deaths and respawns are in steady state.
const WARMUP_TICKS: usize = 90;

struct FakeClient {
    events: Sender<ClientEvent>,
    outbox: mpsc::Receiver<Outgoing>,
    wander: Wander,
    /// Ticks of acknowledgement lag (1..=3).
    lag: u32,
    received: Vec<Tick>,
}

struct Harness {
    sim: Sim,
    clients: Vec<FakeClient>,
    replica: Replica,
    bytes_last_tick: u64,
}

impl Harness {
    fn new(n: usize, visibility: VisibilityMode) -> Harness {
        let config = Config {
            visibility,
            ..Config::default()
        };
        let map = Map::load(None).expect("embedded map");
        let (join_tx, join_rx) = crossbeam_channel::bounded(n);
        let sim = Sim::new(&config, map, join_rx, Arc::new(ServerStats::default()));
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let (events, events_rx) = crossbeam_channel::bounded(config.input_queue_len);
            let (outbox_tx, outbox) = mpsc::channel(config.outbox_len);
            join_tx
                .send(JoinRequest {
                    client: ClientId(i as u64),
                    name: format!("bench-{i}"),
                    events: events_rx,
                    outbox: outbox_tx,
                    leave: LeaveSlot::default(),
                    kick: Arc::default(),
                })
                .expect("join queue sized for n");
            clients.push(FakeClient {
                events,
                outbox,
                wander: Wander::new(i as u64, config.tick_rate_hz),
                lag: 1 + (i % 3) as u32,
                received: Vec::new(),
            });
        }
        let mut h = Harness {
            sim,
            clients,
            replica: Replica::new(),
            bytes_last_tick: 0,
        };
        for _ in 0..WARMUP_TICKS {
            h.feed();
            h.sim.tick();
            h.drain();
        }
        h
    }

    /// Sends each client's input and its lagged ack (not timed).
    fn feed(&mut self) {
        for c in &mut self.clients {
            let _ = c
                .events
                .try_send(ClientEvent::Input(c.wander.next_input(false)));
            let lag = c.lag as usize;
            if c.received.len() >= lag {
                let t = c.received[c.received.len() - lag];
                let _ = c.events.try_send(ClientEvent::Ack(t));
            }
        }
    }

    /// Takes every frame out of the outboxes; client 0's go through a replica (not timed).
    fn drain(&mut self) {
        self.bytes_last_tick = 0;
        for (i, c) in self.clients.iter_mut().enumerate() {
            while let Ok(out) = c.outbox.try_recv() {
                let Outgoing::Frame(bytes) = out else {
                    continue;
                };
                self.bytes_last_tick += bytes.len() as u64;
                let msg = decode_server(&bytes).expect("server frames decode");
                if let ServerMsg::Snapshot(s) = msg {
                    if i == 0 {
                        self.replica
                            .apply(&s.header, &s.body)
                            .expect("client 0's replica matches the server");
                    }
                    c.received.push(s.header.tick);
                    if c.received.len() > 8 {
                        c.received.remove(0);
                    }
                }
            }
        }
    }
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    for (mode, visibility) in [
        ("global", VisibilityMode::Global),
        ("aoi", VisibilityMode::Aoi),
    ] {
        for n in [100usize, 500, 1000] {
            let mut h = Harness::new(n, visibility);
            group.bench_with_input(BenchmarkId::new(mode, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        h.feed();
                        let t0 = Instant::now();
                        h.sim.tick();
                        total += t0.elapsed();
                        h.drain();
                    }
                    total
                });
            });
            eprintln!(
                "tick/{mode}/{n}: {} entities in client 0's view, {:.0} bytes per client per tick",
                h.replica.latest().map_or(0, |v| v.entities.len()),
                h.bytes_last_tick as f64 / n as f64
            );
        }
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
