//! The parts of replication, one client at a time, at 100, 500, 1000 and 2000 clients in
//! `global` and `aoi` visibility:
//! - `encode`: the delta from one client's view a tick ago to its view now, built and encoded
//!   (in `global` mode without the per-tick sharing, so this is the cost the first client with
//!   a given baseline pays);
//! - `memcpy`: copying the same number of bytes, so encode can be read as a ratio of it;
//! - `decode`: the client decoding that frame.
//!
//! The world comes from the headless harness after its warm-up; the frame is checked to decode
//! to a snapshot with the expected number of changes before timing.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tickwire_protocol::codec::{decode_server, encode_snapshot_frame};
use tickwire_protocol::{ServerMsg, SnapshotHeader};
use tickwire_server::headroom::Harness;
use tickwire_server::{Config, VisibilityMode};

fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("replication");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (mode, visibility) in [
        ("global", VisibilityMode::Global),
        ("aoi", VisibilityMode::Aoi),
    ] {
        for n in [100usize, 500, 1000, 2000] {
            let config = Config {
                visibility,
                ..Config::default()
            };
            let mut h = Harness::new(&config, n);
            let player = h.first_player().expect("client 0 was welcomed");
            // Client 0's view one tick ago, then now.
            let mut before = Vec::new();
            let t0 = {
                let mut r = h.replication();
                let t = r.latest().expect("a frame").tick;
                if r.per_client_views() {
                    r.visible_set(player, &mut before);
                }
                t
            };
            h.step();
            let mut r = h.replication();
            let mut now = Vec::new();
            if r.per_client_views() {
                r.visible_set(player, &mut now);
            }
            let tick = r.latest().expect("a frame").tick;
            let mut body = Vec::new();
            let encode = |r: &mut tickwire_server::replication::Replication, out: &mut Vec<u8>| {
                if r.per_client_views() {
                    r.encode_view(Some((t0, &before)), &now, out);
                } else {
                    r.encode_global(Some(t0), out);
                }
            };
            encode(&mut r, &mut body);
            let header = SnapshotHeader {
                tick,
                baseline: Some(t0),
                last_input_seq: 1,
            };
            let mut frame = Vec::new();
            encode_snapshot_frame(&header, &body, &mut frame);
            let ServerMsg::Snapshot(s) = decode_server(&frame).expect("the frame decodes") else {
                panic!("not a snapshot");
            };
            assert!(!s.body.changed.is_empty(), "players moved in a tick");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_with_input(BenchmarkId::new(format!("encode/{mode}"), n), &n, |b, _| {
                let mut out = Vec::with_capacity(body.len());
                b.iter(|| encode(&mut r, black_box(&mut out)));
            });
            group.bench_with_input(BenchmarkId::new(format!("memcpy/{mode}"), n), &n, |b, _| {
                let mut out = vec![0u8; body.len()];
                b.iter(|| out.copy_from_slice(black_box(&body)));
            });
            group.bench_with_input(BenchmarkId::new(format!("decode/{mode}"), n), &n, |b, _| {
                b.iter(|| decode_server(black_box(&frame)).expect("decodes"));
            });
            eprintln!(
                "replication/{mode}/{n}: frame {} bytes, {} changed, {} created, {} removed",
                frame.len(),
                s.body.changed.len(),
                s.body.created.len(),
                s.body.removed.len()
            );
        }
    }
    group.finish();
}

criterion_group!(benches, replication);
criterion_main!(benches);
