//! Telemetry: how long each phase of the tick takes, whether the loop is on schedule, and every
//! counter, rendered in the Prometheus text format for `GET /metrics`; and the health verdict
//! behind `GET /healthz`. The tick thread records once per tick (a few atomic adds and one
//! short lock per histogram); scrapes read.

use crate::sim::TickTimings;
use crate::stats::ServerStats;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Bucket bounds for tick and phase durations, in seconds: 100 us to 133 ms (4 ticks).
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.0333, 0.05, 0.0667, 0.1333,
];

/// The phases of a tick, in order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// The labels of a room's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomLabel {
    room: String,
    game: String,
}

/// Longest tick duration recorded, in microseconds (60 s).
const MAX_RECORDED_US: u64 = 60_000_000;

/// The one record of tick durations: every tick since start, in microseconds, and a copy of it
/// as it stood when the current stats window began. `/metrics` renders its buckets; the stats
/// log line reads quantiles of the window (the difference of the two).
#[derive(Debug)]
struct TickRecord {
    all: hdrhistogram::Histogram<u64>,
    window_start: hdrhistogram::Histogram<u64>,
}

/// Tick durations over one stats window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickWindow {
    /// Ticks in the window.
    pub ticks: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
}

/// Live telemetry of one server.
#[derive(Debug)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    tick: Arc<Mutex<TickRecord>>,
    phases: Family<PhaseLabel, Histogram>,
    lag_ticks: Gauge<i64, AtomicI64>,
    start: Instant,
    /// Nanoseconds since `start` when the last tick ended.
    last_tick_end_ns: AtomicU64,
    /// A tick that ends later than this after the previous one means the loop is stalled.
    stall_after: Duration,
    /// More ticks behind schedule than this means the loop is overloaded.
    max_lag_ticks: u64,
    /// Rooms open: with none, no tick is due and the idle loop is healthy.
    rooms: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Telemetry {
    /// Telemetry for a loop at `tick_rate_hz` that may fall `max_lag_ticks` behind.
    #[must_use]
    pub fn new(stats: Arc<ServerStats>, tick_rate_hz: u16, max_lag_ticks: u32) -> Telemetry {
        let empty = hdrhistogram::Histogram::<u64>::new_with_bounds(1, MAX_RECORDED_US, 3)
            .expect("static histogram bounds are valid");
        let tick = Arc::new(Mutex::new(TickRecord {
            all: empty.clone(),
            window_start: empty,
        }));
        let phases =
            Family::<PhaseLabel, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let lag_ticks = Gauge::<i64, AtomicI64>::default();
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("tickwire");
        registry.register_collector(Box::new(TickCollector(Arc::clone(&tick))));
        registry.register(
            "tick_phase_duration_seconds",
            "Time spent in each phase of a tick: ingest, simulate, capture, replicate, handoff",
            phases.clone(),
        );
        registry.register(
            "tick_lag_ticks",
            "Ticks the loop is behind its schedule after the last tick",
            lag_ticks.clone(),
        );
        stats.register(registry);
        let rooms = stats.rooms.clone();
        let period = Duration::from_secs(1) / u32::from(tick_rate_hz.max(1));
        Telemetry {
            registry: Mutex::new(root),
            tick,
            phases,
            lag_ticks,
            start: Instant::now(),
            last_tick_end_ns: AtomicU64::new(0),
            stall_after: period * (max_lag_ticks + 1).max(3),
            max_lag_ticks: u64::from(max_lag_ticks),
            rooms,
        }
    }

    /// Adds each room's series to `/metrics`: `tickwire_room_players`, `tickwire_room_ticks`
    /// and `tickwire_room_tick_seconds`, labelled by room and game. A room's series go with
    /// it when it is disposed, so the labels never outnumber `max_rooms`.
    pub fn watch_rooms(&self, rooms: std::sync::Weak<crate::rooms::Rooms>) {
        self.registry
            .lock()
            .sub_registry_with_prefix("tickwire")
            .register_collector(Box::new(RoomCollector(rooms)));
    }

    /// Records one tick: its phase timings and how far behind schedule the loop is after it.
    pub fn record_tick(&self, t: &TickTimings, lag_ticks: u64) {
        let us = u64::try_from(t.total().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.tick.lock().all.saturating_record(us);
        for (phase, d) in t.phases() {
            self.phases
                .get_or_create(&PhaseLabel { phase })
                .observe(d.as_secs_f64());
        }
        self.lag_ticks
            .set(i64::try_from(lag_ticks).unwrap_or(i64::MAX));
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_tick_end_ns.store(now, Relaxed);
    }

    /// The tick durations since the last call (or since start), and starts a new window.
    pub fn take_window(&self) -> TickWindow {
        let mut guard = self.tick.lock();
        let record = &mut *guard;
        let mut window = record.all.clone();
        // `all` only grows, so the difference never underflows.
        let _ = window.subtract(&record.window_start);
        record.window_start.clone_from(&record.all);
        let ms = |us: u64| us as f64 / 1000.0;
        TickWindow {
            ticks: window.len(),
            p50_ms: ms(window.value_at_quantile(0.5)),
            p99_ms: ms(window.value_at_quantile(0.99)),
            max_ms: ms(window.max()),
        }
    }

    /// `Ok` while the loop is on schedule; otherwise why not.
    pub fn health(&self) -> Result<(), String> {
        if self.rooms.get() == 0 {
            // No world to step: the threads wait, as they should.
            return Ok(());
        }
        let last = Duration::from_nanos(self.last_tick_end_ns.load(Relaxed));
        let since = self.start.elapsed().saturating_sub(last);
        if since > self.stall_after {
            return Err(format!(
                "tick loop stalled: no tick for {} ms",
                since.as_millis()
            ));
        }
        let lag = u64::try_from(self.lag_ticks.get()).unwrap_or(0);
        if lag > self.max_lag_ticks {
            return Err(format!("tick loop {lag} ticks behind schedule"));
        }
        Ok(())
    }

    /// Every metric in the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

/// `tick_duration_seconds` as a Prometheus histogram, with the buckets of [`BUCKETS`], from the
/// one tick record (the sum is approximate to the record's 3 significant digits).
#[derive(Debug)]
struct TickCollector(Arc<Mutex<TickRecord>>);

impl Collector for TickCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let record = self.0.lock();
            let h = &record.all;
            let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
            let mut below = 0u64;
            for bound in BUCKETS {
                let upto = h.count_between(0, (bound * 1e6) as u64);
                buckets.push((bound, upto - below));
                below = upto;
            }
            buckets.push((f64::INFINITY, h.len() - below));
            (h.mean() * h.len() as f64 / 1e6, h.len(), buckets)
        };
        let mut metric = e.encode_descriptor(
            "tick_duration_seconds",
            "Time to run one whole tick",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        metric
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Each open room's players, ticks and tick time, read at scrape time.
#[derive(Debug)]
struct RoomCollector(std::sync::Weak<crate::rooms::Rooms>);

impl Collector for RoomCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(rooms) = self.0.upgrade() else {
            return Ok(());
        };
        let rooms = rooms.list();
        let label = |r: &crate::rooms::RoomInfo| RoomLabel {
            room: r.id().to_owned(),
            game: r.game().to_owned(),
        };
        let mut players = e.encode_descriptor(
            "room_players",
            "Players in each room (seats taken, including clients on their way in)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in &rooms {
            let g = ConstGauge::new(i64::try_from(r.players()).unwrap_or(i64::MAX));
            g.encode(players.encode_family(&label(r))?)?;
        }
        let mut ticks = e.encode_descriptor(
            "room_ticks",
            "Ticks each room has run",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for r in &rooms {
            ConstCounter::new(r.ticks()).encode(ticks.encode_family(&label(r))?)?;
        }
        let mut time = e.encode_descriptor(
            "room_tick_seconds",
            "Time each room has spent in its ticks (divide by room_ticks for the mean)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for r in &rooms {
            ConstCounter::new(r.tick_time().as_secs_f64())
                .encode(time.encode_family(&label(r))?)?;
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = crate::process::cpu_seconds() {
            let c = ConstCounter::new(cpu);
            c.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                crate::process::resident_bytes(),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                crate::process::open_files(),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                crate::process::max_files(),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// The value of one sample (`series`: its name and labels, as rendered) in Prometheus text.
///
/// # Panics
/// If the text has no such sample: the test fails, showing the text.
#[cfg(test)]
pub(crate) fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::PHASES;

    fn tick_of(ms: u64) -> TickTimings {
        let mut took = [Duration::ZERO; PHASES.len()];
        took[0] = Duration::from_millis(ms);
        TickTimings { took }
    }

    #[test]
    fn one_tick_record_serves_metrics_and_the_stats_window() {
        let t = Telemetry::new(Arc::new(ServerStats::default()), 30, 3);
        for ms in [1, 1, 3, 20] {
            t.record_tick(&tick_of(ms), 0);
        }
        let w = t.take_window();
        assert_eq!(w.ticks, 4);
        assert!((w.max_ms - 20.0).abs() < 0.1, "{w:?}");
        assert!((w.p50_ms - 1.0).abs() < 0.01, "{w:?}");
        // The next window holds only what came after.
        t.record_tick(&tick_of(5), 0);
        let w = t.take_window();
        assert_eq!(w.ticks, 1);
        assert!((w.max_ms - 5.0).abs() < 0.01, "{w:?}");
        // /metrics counts every tick since start, cumulatively per bucket.
        let text = t.render();
        for (le, n) in [
            ("0.001", 2),
            ("0.004", 3),
            ("0.008", 4),
            ("0.0333", 5),
            ("+Inf", 5),
        ] {
            let line = format!("tickwire_tick_duration_seconds_bucket{{le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(
            text.contains("tickwire_tick_duration_seconds_count 5\n"),
            "{text}"
        );
        let sum = sample(&text, "tickwire_tick_duration_seconds_sum");
        assert!((sum - 0.030).abs() < 0.0001, "{sum}");
    }
}
