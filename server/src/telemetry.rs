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

/// Live telemetry of one server.
#[derive(Debug)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    tick: Histogram,
    phases: Family<PhaseLabel, Histogram>,
    lag_ticks: Gauge<i64, AtomicI64>,
    start: Instant,
    /// Nanoseconds since `start` when the last tick ended.
    last_tick_end_ns: AtomicU64,
    /// A tick that ends later than this after the previous one means the loop is stalled.
    stall_after: Duration,
    /// More ticks behind schedule than this means the loop is overloaded.
    max_lag_ticks: u64,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Telemetry {
    /// Telemetry for a loop at `tick_rate_hz` that may fall `max_lag_ticks` behind.
    #[must_use]
    pub fn new(stats: Arc<ServerStats>, tick_rate_hz: u16, max_lag_ticks: u32) -> Telemetry {
        let tick = histogram();
        let phases =
            Family::<PhaseLabel, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let lag_ticks = Gauge::<i64, AtomicI64>::default();
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("tickwire");
        registry.register(
            "tick_duration_seconds",
            "Time to run one whole tick",
            tick.clone(),
        );
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
        registry.register_collector(Box::new(StatsCollector(stats)));
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
        }
    }

    /// Records one tick: its phase timings and how far behind schedule the loop is after it.
    pub fn record_tick(&self, t: &TickTimings, lag_ticks: u64) {
        self.tick.observe(t.total().as_secs_f64());
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

    /// `Ok` while the loop is on schedule; otherwise why not.
    pub fn health(&self) -> Result<(), String> {
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

/// Encodes the server's counters at scrape time, straight from their atomics.
#[derive(Debug)]
struct StatsCollector(Arc<ServerStats>);

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v.load(Relaxed));
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v.load(Relaxed)).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        gauge(&mut e, "clients", "Players in the world", &s.clients)?;
        gauge(&mut e, "sessions", "Open WebSocket sessions", &s.sessions)?;
        gauge(
            &mut e,
            "connections",
            "Sockets open on the game port, in any phase",
            &s.connections,
        )?;
        counter(
            &mut e,
            "connections_refused_cap",
            "Connections refused at accept: max_connections sockets open",
            &s.refused_connection_cap,
        )?;
        counter(
            &mut e,
            "connections_refused_per_ip",
            "Connections refused at accept: max_connections_per_ip open from that address",
            &s.refused_per_ip_cap,
        )?;
        counter(
            &mut e,
            "connections_reset",
            "Peers that reset their connection",
            &s.connections_reset,
        )?;
        counter(
            &mut e,
            "resyncs",
            "Clients that dropped their replica after a failed snapshot and asked for a full one",
            &s.resyncs,
        )?;
        counter(
            &mut e,
            "no_ack_kicks",
            "Clients closed for receiving snapshots without acknowledging any",
            &s.no_ack_kicks,
        )?;
        let tick = ConstGauge::new(i64::from(s.tick.load(Relaxed)));
        tick.encode(e.encode_descriptor(
            "tick",
            "The last completed tick",
            None,
            tick.metric_type(),
        )?)?;
        counter(
            &mut e,
            "connections_lost",
            "Sessions that ended without a close handshake",
            &s.connections_lost,
        )?;
        counter(&mut e, "ticks", "Ticks run", &s.ticks_total)?;
        counter(
            &mut e,
            "tick_overruns",
            "Ticks that ended after their deadline",
            &s.overruns,
        )?;
        counter(
            &mut e,
            "ticks_skipped",
            "Ticks skipped to catch up after an overload",
            &s.skipped_ticks,
        )?;
        counter(&mut e, "joins", "Players that joined", &s.joins)?;
        counter(&mut e, "leaves", "Players that left", &s.leaves)?;
        {
            let by_reason = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "leaves_by_reason",
                "Players that left, by reason: peer_closed, connection_lost, violation, shutdown",
                None,
                by_reason.metric_type(),
            )?;
            for (reason, n) in s.leaves_by_reason() {
                let labels = [("reason", reason)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "snapshots_sent",
            "Snapshot frames handed to sessions",
            &s.snapshots_sent,
        )?;
        counter(
            &mut e,
            "snapshots_dropped",
            "Snapshots skipped because a client's outbox was full",
            &s.snapshots_dropped,
        )?;
        counter(
            &mut e,
            "full_snapshots",
            "Full (non-delta) snapshots sent",
            &s.full_snapshots,
        )?;
        counter(
            &mut e,
            "bytes_out",
            "Snapshot payload bytes handed to sessions",
            &s.bytes_out,
        )?;
        counter(
            &mut e,
            "bytes_in",
            "Payload bytes received from clients",
            &s.bytes_in,
        )?;
        counter(
            &mut e,
            "messages_in",
            "Messages received from clients",
            &s.messages_in,
        )?;
        counter(
            &mut e,
            "inputs_received",
            "Inputs accepted",
            &s.inputs_received,
        )?;
        counter(
            &mut e,
            "inputs_rejected",
            "Inputs rejected as invalid",
            &s.inputs_rejected,
        )?;
        counter(
            &mut e,
            "inputs_dropped",
            "Inputs and acks dropped because a client's queue was full",
            &s.inputs_dropped,
        )?;
        counter(
            &mut e,
            "rate_limited",
            "Messages dropped by the per-connection rate limit",
            &s.rate_limited,
        )?;
        counter(
            &mut e,
            "acks_ignored",
            "Acks naming a tick never sent to that client",
            &s.acks_ignored,
        )?;
        counter(
            &mut e,
            "slow_kicks",
            "Clients closed for reading too slowly",
            &s.slow_kicks,
        )?;
        counter(
            &mut e,
            "http_refusals",
            "HTTP requests refused",
            &s.http_refusals,
        )?;
        let closes = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "closes",
            "Connections the server closed, by WebSocket close code",
            None,
            closes.metric_type(),
        )?;
        for (code, n) in s.closes_by_code() {
            let labels = [("code", code.to_string())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
