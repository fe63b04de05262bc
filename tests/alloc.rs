//! Allocation discipline: a steady-state tick makes a few allocations per client (its frame)
//! and none per entity, so allocations per client per tick stay flat as the world grows.
//! Counted with dhat's heap-testing mode around `Sim::tick` only (the harness's own feeding
//! and draining is not counted). Its own test binary, because dhat replaces the allocator.

use tickwire_server::headroom::Harness;
use tickwire_server::{Config, VisibilityMode};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Ticks counted per measurement.
const TICKS: usize = 30;

/// Mean allocations per client per tick with `n` clients, and the entities client 0 sees.
fn allocations_per_client_per_tick(visibility: VisibilityMode, n: usize) -> (f64, usize) {
    let config = Config {
        visibility,
        ..Config::default()
    };
    let work = tickwire::find("").expect("the arena").workload();
    let mut h = Harness::new_unverified(&config, &work, n);
    let mut blocks = 0u64;
    for _ in 0..TICKS {
        h.feed();
        let before = dhat::HeapStats::get().total_blocks;
        h.tick();
        blocks += dhat::HeapStats::get().total_blocks - before;
        h.drain();
    }
    (
        blocks as f64 / TICKS as f64 / n as f64,
        h.visible_to_first(),
    )
}

#[test]
fn steady_state_ticks_do_not_allocate_per_entity() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for visibility in [VisibilityMode::Global, VisibilityMode::Aoi] {
        let (small, seen_small) = allocations_per_client_per_tick(visibility, 40);
        let (large, seen_large) = allocations_per_client_per_tick(visibility, 320);
        eprintln!(
            "{visibility:?}: {small:.2} allocations per client per tick with 40 clients \
             ({seen_small} entities seen), {large:.2} with 320 ({seen_large} seen)"
        );
        if visibility == VisibilityMode::Global {
            assert!(
                seen_large > 4 * seen_small,
                "the world must grow for the test to mean anything"
            );
        }
        // Flat: eight times the clients (and in global mode about eight times the entities per
        // view) does not raise the allocations per client.
        assert!(
            large <= small * 1.25 + 0.25,
            "{visibility:?}: {large:.2} allocations per client per tick at 320 clients vs {small:.2} at 40"
        );
        // And a handful per client: the frame and its hand-off, nothing per entity.
        assert!(
            large <= 4.0,
            "{visibility:?}: {large:.2} allocations per client per tick"
        );
    }
}
