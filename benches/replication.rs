//! The parts of replication, one client at a time, at 100, 500, 1000 and 2000 clients in
//! `global` and `aoi` visibility (exact views, and views of whole cells):
//! - `encode/global`: the delta from one client's view a tick ago to its view now, built and
//!   encoded without the per-tick sharing (the cost the first client with a given baseline
//!   pays; later clients with that baseline share the bytes);
//! - `encode_cold/aoi`: the same for one client's own exact view with this tick's per-baseline
//!   change records and created records cleared before every iteration (the first client of a
//!   baseline); `encode_cold/cells` likewise with views of whole cells (`--aoi-views cells`),
//!   whose first client encodes the sections of every cell it sees;
//! - `encode_warm/aoi` and `encode_warm/cells`: with them filled (every later client of that
//!   baseline: records copied, or the sections of its cells put together);
//! - `decode`: the client decoding that frame and applying it to its baseline view, giving the
//!   new view (decoding needs the baseline: a changed entity's fields come from its component
//!   set).
//!
//! Each is reported per visible entity: criterion's throughput is the number of entities in the
//! client's view, so its "elements/s" reads as entities per second, and the printed line gives
//! nanoseconds and bytes per visible entity. The world comes from the headless harness after
//! its verified warm-up; the frame is checked to decode, and to apply to a replica holding the
//! baseline with the server's checksum, before timing.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_protocol::body::{apply_body, counts, write_diff};
use tickwire_protocol::codec::{decode_server, encode_snapshot_frame};
use tickwire_protocol::{EntityState, Replica, ServerMsg, SnapshotHeader, View};
use tickwire_server::headroom::Harness;
use tickwire_server::replication::Replication;
use tickwire_server::{AoiViews, Config, VisibilityMode};

/// Mean time of `f` over a fixed number of runs, for the printed per-entity line (criterion's
/// own estimate is the one to quote; this only puts ns per entity next to it).
fn mean_ns(mut f: impl FnMut()) -> f64 {
    const RUNS: u32 = 2000;
    let t0 = Instant::now();
    for _ in 0..RUNS {
        f();
    }
    t0.elapsed().as_nanos() as f64 / f64::from(RUNS)
}

fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("replication");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (mode, visibility, aoi_views) in [
        ("global", VisibilityMode::Global, AoiViews::Exact),
        ("aoi", VisibilityMode::Aoi, AoiViews::Exact),
        ("cells", VisibilityMode::Aoi, AoiViews::Cells),
    ] {
        for n in [100usize, 500, 1000, 2000] {
            let config = Config {
                visibility,
                aoi_views,
                ..Config::default()
            };
            let work = tickwire::find("").expect("the arena").workload();
            let mut h = Harness::new(&config, &work, n);
            let player = h.first_player().expect("client 0 was welcomed");
            // Client 0's view one tick ago (as a frame and as a replica view), then now.
            let mut before = Vec::new();
            let (t0, eye0, base_view) = {
                let mut r = h.replication();
                let eye0 = r.viewpoint(player);
                if let Some(eye) = eye0 {
                    r.visible(eye, &mut before);
                }
                let frame = r.latest().expect("a frame");
                let mut view = View {
                    tick: frame.tick,
                    ..View::default()
                };
                let all: Vec<u32> = (0..frame.entities.len() as u32).collect();
                let indices = if r.per_client_views() { &before } else { &all };
                for &i in indices {
                    let e = &frame.entities[i as usize];
                    let state = EntityState {
                        mask: e.mask,
                        words: frame.words_of(e).iter().copied().collect(),
                    };
                    view.entities.insert(e.id, state);
                }
                (frame.tick, eye0, view)
            };
            h.step();
            let mut r = h.replication();
            let schema = Arc::clone(r.schema());
            let mut now = Vec::new();
            let aoi = r.per_client_views();
            let eye = r.viewpoint(player);
            if let Some(eye) = eye {
                r.visible(eye, &mut now);
            }
            let tick = r.latest().expect("a frame").tick;
            let visible = if aoi {
                now.len()
            } else {
                r.latest().expect("a frame").entities.len()
            };
            let encode = |r: &mut Replication, out: &mut Vec<u8>| {
                if let (Some(eye0), Some(eye)) = (eye0, eye) {
                    if r.whole_cells() {
                        r.encode_view(Some((t0, eye0)), eye, out);
                    } else {
                        r.encode_exact(Some((t0, &before)), &now, out);
                    }
                } else {
                    r.encode_global(Some(t0), out);
                }
            };
            let mut body = Vec::new();
            r.clear_change_caches();
            encode(&mut r, &mut body);
            let header = SnapshotHeader {
                tick,
                baseline: Some(t0),
                last_input_seq: 1,
                input_lead: 0,
            };
            let mut frame = Vec::new();
            encode_snapshot_frame(&header, &body, &mut frame);
            let ServerMsg::Snapshot(s) = decode_server(&frame).expect("the frame decodes") else {
                panic!("not a snapshot");
            };
            let [created, changed, removed] = counts(&s.body).expect("counts");
            assert!(changed > 0, "players moved in a tick");
            // The frame is right: applied to the baseline view it reproduces the checksum.
            let mut replica = Replica::new(Arc::clone(&schema));
            let full = SnapshotHeader {
                tick: t0,
                baseline: None,
                last_input_seq: 0,
                input_lead: 0,
            };
            let mut seed = Vec::new();
            write_diff(
                &schema,
                &Default::default(),
                &base_view.entities,
                base_view.checksum(),
                &mut seed,
            );
            replica.apply(&full, &seed).expect("the baseline view");
            replica
                .apply(&s.header, &s.body)
                .expect("the timed frame reproduces the server's view");

            group.throughput(Throughput::Elements(visible as u64));
            if aoi {
                group.bench_with_input(
                    BenchmarkId::new(format!("encode_cold/{mode}"), n),
                    &n,
                    |b, _| {
                        let mut out = Vec::with_capacity(body.len());
                        b.iter(|| {
                            r.clear_change_caches();
                            encode(&mut r, black_box(&mut out));
                        });
                    },
                );
                group.bench_with_input(
                    BenchmarkId::new(format!("encode_warm/{mode}"), n),
                    &n,
                    |b, _| {
                        let mut out = Vec::with_capacity(body.len());
                        encode(&mut r, &mut out);
                        b.iter(|| encode(&mut r, black_box(&mut out)));
                    },
                );
            } else {
                group.bench_with_input(BenchmarkId::new("encode/global", n), &n, |b, _| {
                    let mut out = Vec::with_capacity(body.len());
                    b.iter(|| encode(&mut r, black_box(&mut out)));
                });
            }
            let decode = || {
                let ServerMsg::Snapshot(s) = decode_server(black_box(&frame)).expect("decodes")
                else {
                    unreachable!("checked above")
                };
                apply_body(&schema, &base_view.entities, &s.body)
                    .expect("applies")
                    .0
            };
            group.bench_with_input(BenchmarkId::new(format!("decode/{mode}"), n), &n, |b, _| {
                b.iter(decode);
            });
            let mut out = Vec::with_capacity(body.len());
            let cold = mean_ns(|| {
                r.clear_change_caches();
                encode(&mut r, black_box(&mut out));
            });
            let warm = mean_ns(|| encode(&mut r, black_box(&mut out)));
            let decode = mean_ns(|| {
                black_box(decode());
            });
            let per = |ns: f64| ns / visible.max(1) as f64;
            eprintln!(
                "replication/{mode}/{n}: {visible} visible entities, frame {} bytes ({:.2} bytes \
                 per visible entity), {} changed, {} created, {} removed; ns per visible entity: \
                 encode cold {:.1}, warm {:.1}, decode {:.1}",
                frame.len(),
                frame.len() as f64 / visible.max(1) as f64,
                changed,
                created,
                removed,
                per(cold),
                per(warm),
                per(decode),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, replication);
criterion_main!(benches);
