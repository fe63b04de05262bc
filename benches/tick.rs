//! One full server tick with no sockets, at 100, 500, 1000 and 2000 clients in the arena
//! scenario, in `global` and `aoi` visibility: inputs ingested, simulation, world captured, and
//! every client's delta built, encoded and handed to its outbox (waking the waker each fake
//! session registered). Only the tick is timed; the harness feeds inputs and acks (lagging 1 to
//! 3 ticks) and empties the outboxes outside the measurement.
//!
//! Checking run: before timing, the harness's 90 warm-up ticks and `CHECK_TICKS` (30) more decode
//! every client's every frame, apply it to that client's replica and match the server's
//! checksum (see `tickwire_server::headroom::Harness`); the count is printed and asserted. The
//! timed iterations then run the same code without the checks. Bytes per client per tick are
//! printed beside each size.
//!
//! The `global` and `aoi` rows run on the tick thread alone (`replicate_threads = 1`), so they
//! compare across machines and with figures taken before views were built on several threads;
//! the `aoi-threads` rows (1000 and 2000 clients) build views on the machine's cores, as a
//! server does by default.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use tickwire_server::headroom::{CHECK_TICKS, Harness, WARMUP_TICKS};
use tickwire_server::{Config, VisibilityMode};

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    let rows: [(&str, VisibilityMode, usize, &[usize]); 3] = [
        ("global", VisibilityMode::Global, 1, &[100, 500, 1000, 2000]),
        ("aoi", VisibilityMode::Aoi, 1, &[100, 500, 1000, 2000]),
        // 0: one thread per core, the default.
        ("aoi-threads", VisibilityMode::Aoi, 0, &[1000, 2000]),
    ];
    for (mode, visibility, replicate_threads, sizes) in rows {
        for &n in sizes {
            let config = Config {
                visibility,
                replicate_threads,
                ..Config::default()
            };
            let work = tickwire::find("").expect("the arena").workload();
            let mut h = Harness::new(&config, &work, n);
            for _ in 0..CHECK_TICKS {
                h.step();
            }
            // Every client got and verified a snapshot each tick after its join (joins are
            // taken `join_queue_len` per tick, so the last ones join a few ticks late).
            let checked = h.verified;
            let join_ticks = n.div_ceil(config.join_queue_len);
            assert!(
                checked >= (n * (WARMUP_TICKS + CHECK_TICKS - join_ticks - 1)) as u64,
                "only {checked} snapshots verified"
            );
            h.stop_verifying();
            group.bench_with_input(BenchmarkId::new(mode, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        h.feed();
                        let t0 = Instant::now();
                        h.tick();
                        total += t0.elapsed();
                        h.drain();
                    }
                    total
                });
            });
            eprintln!(
                "tick/{mode}/{n}: {checked} snapshots verified first; {} entities in client 0's \
                 view, {:.0} bytes per client per tick",
                h.visible_to_first(),
                h.bytes_last_tick as f64 / n as f64
            );
        }
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
