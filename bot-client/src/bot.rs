//! One bot: a [`Client`] driven by its game's [`Behaviour`], measuring what the scenario
//! reports.

use crate::client::{Backoff, Client, ClientError, ConnectOptions, Event, open};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tickwire_protocol::behaviour::{Behaviour, BehaviourFactory, BotView};
use tickwire_protocol::{ApplyError, Tick};
use tokio::sync::watch;

/// Inputs whose send time is remembered for the round trip; older ones are forgotten.
const MAX_PENDING_INPUTS: usize = 256;
/// Largest round trip the histogram records, microseconds (60 s).
const MAX_RTT_US: u64 = 60_000_000;
/// Snapshot ticks a header-only bot remembers, to check that each delta's baseline is one it
/// received (the server keeps baselines at most 255 ticks old).
const RECENT_TICKS: usize = 256;

/// The measured window, shared by all bots of a swarm.
#[derive(Debug)]
pub struct Window {
    /// Set when every bot has joined (or failed); measurements count from then on.
    pub start: OnceLock<Instant>,
    /// Length of the window.
    pub length: Duration,
}

impl Window {
    /// A window of `length` that has not started.
    #[must_use]
    pub fn new(length: Duration) -> Window {
        Window {
            start: OnceLock::new(),
            length,
        }
    }

    /// The whole second of the window that `now` falls in, if inside it.
    #[must_use]
    pub fn second(&self, now: Instant) -> Option<usize> {
        let start = *self.start.get()?;
        let t = now.checked_duration_since(start)?;
        (t < self.length).then_some(t.as_secs() as usize)
    }

    /// Whole seconds in the window.
    #[must_use]
    pub fn seconds(&self) -> usize {
        (self.length.as_secs() as usize).max(1)
    }
}

/// Live totals across the swarm, for progress display.
#[derive(Debug, Default)]
pub struct Live {
    /// Bots welcomed.
    pub connected: AtomicU64,
    /// Bots that could not connect.
    pub failed: AtomicU64,
    /// Bots whose connection ended early.
    pub dropped: AtomicU64,
    /// Snapshots that did not match the server's checksum.
    pub desyncs: AtomicU64,
    /// Snapshots received.
    pub snapshots: AtomicU64,
    /// Tick rate announced in the latest welcome.
    pub tick_rate_hz: AtomicU64,
    /// Visibility mode announced in the latest welcome (0 global, 1 aoi).
    pub aoi: AtomicU64,
}

/// What one bot measured inside the window (and a few whole-run counts).
#[derive(Debug)]
pub struct BotMetrics {
    /// Its name.
    pub name: String,
    /// Whether it applied and verified every snapshot, or only read and counted their headers.
    pub verifies: bool,
    /// Snapshots taken in the window (each a distinct, newer tick): applied and verified by a
    /// verifying bot, counted by a header-only one.
    pub snapshots: u64,
    /// Snapshots that did not reproduce the server's view (whole run).
    pub desyncs: u64,
    /// Snapshots against a baseline the bot did not hold, outside a recovery (whole run).
    pub missing_baselines: u64,
    /// Snapshots not verified because the bot was recovering from a desync: deltas against a
    /// replica it had dropped, between its resync request and the full snapshot (whole run).
    pub unverified: u64,
    /// Snapshots whose tick was not after the newest applied (whole run).
    pub out_of_order: u64,
    /// Inputs sent in the window.
    pub inputs: u64,
    /// Server tick and arrival time of the first and the last snapshot applied in the window.
    pub window_ticks: Option<((Tick, Instant), (Tick, Instant))>,
    /// Input round trips in the window, microseconds, not yet added to the swarm's histogram.
    pub rtt_us: RttBatch,
    /// Payload bytes received in each second of the window.
    pub down_per_s: Vec<u64>,
    /// Payload bytes sent in each second of the window.
    pub up_per_s: Vec<u64>,
    /// Entities the bot saw created (whole run).
    pub entities_created: u64,
    /// Sum of replica sizes over snapshots in the window, for the mean visible count.
    pub visible_sum: u64,
    /// Sum of the players (entities with the components of the bot's own player) in the
    /// replica over snapshots in the window.
    pub visible_players_sum: u64,
    /// Payload bytes of the snapshots counted in `snapshots`.
    pub snapshot_bytes: u64,
    /// Full snapshots received (whole run).
    pub full_snapshots: u64,
    /// The room it joined.
    pub room: String,
    /// Connections it dropped on purpose (`drop_every`) and resumed.
    pub resumes: u64,
    /// Resumes that failed after every retry (the bot then stops).
    pub resume_failures: u64,
    /// Game events it sent.
    pub events_sent: u64,
    /// Server events it took, in order.
    pub events_received: u64,
    /// Server events missing from the sequence or received twice.
    pub events_lost: u64,
    /// Inputs that missed the tick they named (whole run; see [`crate::timing`]).
    pub late_inputs: u64,
    /// Inputs sent naming their tick (whole run).
    pub timed_inputs: u64,
    /// The margin its input clock kept at the end, microseconds.
    pub input_margin_us: u64,
}

impl BotMetrics {
    fn new(name: &str, seconds: usize, round_trips: &RoundTrips) -> BotMetrics {
        BotMetrics {
            name: name.to_owned(),
            verifies: true,
            snapshots: 0,
            desyncs: 0,
            missing_baselines: 0,
            unverified: 0,
            out_of_order: 0,
            inputs: 0,
            window_ticks: None,
            rtt_us: RttBatch {
                to: round_trips.clone(),
                pending: Vec::new(),
            },
            down_per_s: vec![0; seconds],
            up_per_s: vec![0; seconds],
            entities_created: 0,
            visible_sum: 0,
            visible_players_sum: 0,
            snapshot_bytes: 0,
            full_snapshots: 0,
            room: String::new(),
            resumes: 0,
            resume_failures: 0,
            events_sent: 0,
            events_received: 0,
            events_lost: 0,
            late_inputs: 0,
            timed_inputs: 0,
            input_margin_us: 0,
        }
    }
}

/// How a bot's run ended.
#[derive(Debug)]
pub enum BotEnd {
    /// It could not connect or was not welcomed.
    Failed(String),
    /// It was connected and the connection ended before the swarm stopped it.
    Dropped(String),
    /// It ran until the swarm stopped it.
    Finished,
}

/// A bot's result.
#[derive(Debug)]
pub struct BotOutcome {
    /// How it ended.
    pub end: BotEnd,
    /// What it measured.
    pub metrics: BotMetrics,
}

/// What a bot needs to run.
#[derive(Debug, Clone)]
pub struct BotParams {
    /// Server URL.
    pub url: String,
    /// Display name.
    pub name: String,
    /// Seed of its behaviour.
    pub seed: u64,
    /// Time allowed to connect and be welcomed.
    pub connect_timeout: Duration,
    /// TLS and socket options.
    pub connect: ConnectOptions,
    /// Behaviours by game name; the bot uses the one for `game`, or for the game the server
    /// announces.
    pub behaviours: Vec<(String, BehaviourFactory)>,
    /// The game whose behaviour to use; `None`: the one the server announces.
    pub game: Option<String>,
    /// Drop the connection (no close frame) at about this interval and resume the player.
    pub drop_every: Option<Duration>,
    /// Apply and verify every snapshot (`true`), or read only their headers, acknowledge them
    /// and count bytes (`false`: a header-only bot, so one machine can run thousands).
    pub verify: bool,
    /// Where it records its input round trips: its swarm's one histogram.
    pub round_trips: RoundTrips,
}

/// The input round trips of a swarm's bots, in microseconds: one histogram for them all. Each
/// bot keeps its newest few in an [`RttBatch`] and adds them a batch at a time. (A histogram per
/// bot, at three significant digits up to a minute, took 128 KiB of each bot's memory: 60 % of
/// a 1000-bot swarm's.)
#[derive(Debug, Clone)]
pub struct RoundTrips(Arc<Mutex<Histogram<u64>>>);

impl RoundTrips {
    /// An empty histogram, 1 us to a minute, three significant digits.
    #[must_use]
    pub fn new() -> RoundTrips {
        RoundTrips(Arc::new(Mutex::new(
            Histogram::new_with_bounds(1, MAX_RTT_US, 3)
                .expect("static histogram bounds are valid"),
        )))
    }

    /// Every round trip added so far, and those `batches` still hold.
    #[must_use]
    pub fn with_pending<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a RttBatch>,
    ) -> Histogram<u64> {
        let mut all = self.0.lock().clone();
        for b in batches {
            for &us in &b.pending {
                all.saturating_record(us);
            }
        }
        all
    }
}

impl Default for RoundTrips {
    fn default() -> Self {
        RoundTrips::new()
    }
}

/// One bot's newest round trips, added to its swarm's [`RoundTrips`] [`RttBatch::LEN`] at a
/// time.
#[derive(Debug)]
pub struct RttBatch {
    to: RoundTrips,
    pending: Vec<u64>,
}

impl RttBatch {
    /// Round trips kept before they are added: about two seconds of a bot's.
    const LEN: usize = 64;

    /// Records a round trip of `us` microseconds (clamped to 1 us .. a minute).
    pub fn record(&mut self, us: u64) {
        self.pending.push(us.clamp(1, MAX_RTT_US));
        if self.pending.len() >= Self::LEN {
            let mut h = self.to.0.lock();
            for us in self.pending.drain(..) {
                h.saturating_record(us);
            }
        }
    }
}

impl BotParams {
    /// The behaviour for a server running `announced`.
    fn behaviour(&self, announced: &str) -> Result<BehaviourFactory, String> {
        let want = self.game.as_deref().unwrap_or(announced);
        self.behaviours
            .iter()
            .find(|(name, _)| name == want)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let known: Vec<&str> = self.behaviours.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "no bot behaviour for game {want:?} (the server plays {announced:?}; known: {})",
                    known.join(", ")
                )
            })
    }
}

/// Runs one bot until `stop` turns true or its connection ends.
pub async fn run_bot(
    params: BotParams,
    window: &Window,
    live: &Live,
    mut stop: watch::Receiver<bool>,
) -> BotOutcome {
    let mut metrics = BotMetrics::new(&params.name, window.seconds(), &params.round_trips);
    let connect = Client::connect_with(&params.url, &params.name, &params.connect);
    let mut client = match tokio::time::timeout(params.connect_timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(live, metrics, e.to_string()),
        Err(_) => {
            return failed(
                live,
                metrics,
                format!("no welcome within {:?}", params.connect_timeout),
            );
        }
    };
    let factory = match params.behaviour(&client.welcome.schema.game) {
        Ok(f) => f,
        Err(why) => return failed(live, metrics, why),
    };
    live.connected.fetch_add(1, Relaxed);
    client.set_verify(params.verify);
    metrics.verifies = params.verify;
    metrics.room.clone_from(&client.welcome.room);
    live.tick_rate_hz
        .store(u64::from(client.welcome.tick_rate_hz), Relaxed);
    live.aoi.store(u64::from(client.mode() == "aoi"), Relaxed);
    let mut behaviour = factory(params.seed, &client.welcome);
    let end = drive(
        &mut client,
        &mut *behaviour,
        &params,
        window,
        live,
        &mut metrics,
        &mut stop,
    )
    .await;
    metrics.events_sent = client.events.sent;
    metrics.events_received = client.events.received;
    metrics.events_lost = client.events.lost;
    metrics.late_inputs = client.input_clock.late;
    metrics.timed_inputs = client.input_clock.timed;
    metrics.input_margin_us =
        u64::try_from(client.input_clock.margin().as_micros()).unwrap_or(u64::MAX);
    match end {
        BotEnd::Finished => {
            // A clean close; its failure would not change any measurement.
            let _ = client.close().await;
        }
        BotEnd::Dropped(_) => {
            live.dropped.fetch_add(1, Relaxed);
        }
        BotEnd::Failed(_) => {}
    }
    BotOutcome { end, metrics }
}

fn failed(live: &Live, metrics: BotMetrics, why: String) -> BotOutcome {
    live.failed.fetch_add(1, Relaxed);
    BotOutcome {
        end: BotEnd::Failed(why),
        metrics,
    }
}

async fn drive(
    client: &mut Client,
    behaviour: &mut dyn Behaviour,
    params: &BotParams,
    window: &Window,
    live: &Live,
    m: &mut BotMetrics,
    stop: &mut watch::Receiver<bool>,
) -> BotEnd {
    let hz = client.welcome.tick_rate_hz.max(1);
    let period = Duration::from_secs_f64(1.0 / f64::from(hz));
    // One input per tick, sent when the client's input clock says (a small margin before the
    // tick that applies it, from the server's reports; one a period until the first report),
    // with the acknowledgement of the newest snapshot riding on it, so that tick's delta is
    // against the newest snapshot. The first goes as soon as the first snapshot is taken (a
    // period from now at the latest), so its ack keeps the second snapshot a delta.
    let input_timer = tokio::time::sleep(period);
    tokio::pin!(input_timer);
    // Drops on purpose at about `drop_every`: each interval drawn from 0.5 to 1.5 of it, so
    // the swarm's drops spread out.
    let next_drop =
        |every: Duration| tokio::time::Instant::now() + every.mul_f64(0.5 + fastrand::f64());
    let far = Duration::from_secs(86_400 * 365);
    let drop_timer = tokio::time::sleep_until(next_drop(params.drop_every.unwrap_or(far)));
    tokio::pin!(drop_timer);
    let mut pending: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut words = Vec::new();
    // Set after a desync, until a full snapshot verifies again.
    let mut recovering = false;
    // A header-only bot's newest snapshot ticks, oldest first.
    let mut recent: VecDeque<Tick> = VecDeque::with_capacity(RECENT_TICKS);
    if *stop.borrow() {
        return BotEnd::Finished;
    }
    loop {
        let up_before = client.bytes_up;
        let down_before = client.bytes_down;
        let mut send_input = false;
        tokio::select! {
            _ = stop.changed() => return BotEnd::Finished,
            () = &mut input_timer => send_input = true,
            () = &mut drop_timer, if params.drop_every.is_some() => {
                client.drop_connection().await;
                match client.reconnect(Backoff::default()).await {
                    Ok(_) => m.resumes += 1,
                    Err(e) => {
                        m.resume_failures += 1;
                        return BotEnd::Dropped(format!("resume failed: {e}"));
                    }
                }
                drop_timer.as_mut().reset(next_drop(params.drop_every.unwrap_or(far)));
                continue;
            }
            event = client.recv() => {
                let event = match event {
                    Ok(ev) => ev,
                    Err(e) => return dropped(e),
                };
                let now = Instant::now();
                let second = window.second(now);
                match event {
                    Event::Snapshot { header, counts, outcome } => {
                        live.snapshots.fetch_add(1, Relaxed);
                        m.full_snapshots += u64::from(header.baseline.is_none());
                        match outcome {
                            // Acknowledged on the input sent right after.
                            Ok(()) => {
                                recovering = false;
                                send_input = client.seq == 0;
                            }
                            Err(e) if e.is_desync() => {
                                m.desyncs += 1;
                                live.desyncs.fetch_add(1, Relaxed);
                                tracing::warn!(bot = %params.name, error = %e, "desync; resyncing");
                                // Forget everything and ask for a full snapshot, so the next
                                // one is verified again.
                                client.replica.clear();
                                if let Err(e) = client.resync(header.tick).await {
                                    return dropped(e);
                                }
                                recovering = true;
                                continue;
                            }
                            Err(ApplyError::MissingBaseline { .. }) if recovering => {
                                // A delta against the replica just dropped: the documented
                                // recovery, counted as unverified.
                                m.unverified += 1;
                                continue;
                            }
                            Err(ApplyError::OutOfOrder { .. }) => {
                                m.out_of_order += 1;
                                tracing::warn!(bot = %params.name, tick = header.tick.0, "snapshot out of order");
                                continue;
                            }
                            Err(e) => {
                                m.missing_baselines += 1;
                                tracing::warn!(bot = %params.name, error = %e, "snapshot not applied");
                                continue;
                            }
                        }
                        m.entities_created += counts.created as u64;
                        let view = client.replica.latest().expect("a snapshot was just applied");
                        if second.is_some() {
                            m.count_snapshot(header.tick, now, client.bytes_down - down_before);
                            m.visible_sum += view.entities.len() as u64;
                            // Players: entities of the same kind (component set) as the bot's
                            // own.
                            let own = view.entities.get(&client.welcome.player).map(|s| s.mask);
                            m.visible_players_sum += view
                                .entities
                                .values()
                                .filter(|s| Some(s.mask) == own)
                                .count() as u64;
                        }
                        settle_round_trips(&mut pending, header.last_input_seq, now, second.is_some(), m);
                    }
                    Event::Counted { header } => {
                        live.snapshots.fetch_add(1, Relaxed);
                        m.full_snapshots += u64::from(header.baseline.is_none());
                        if recent.back().is_some_and(|t: &Tick| t.since(header.tick) >= 0) {
                            m.out_of_order += 1;
                            tracing::warn!(bot = %params.name, tick = header.tick.0, "snapshot out of order");
                            continue;
                        }
                        // A delta must be against a snapshot this bot received (and so acked).
                        if let Some(b) = header.baseline
                            && !recent.iter().rev().any(|t| *t == b)
                        {
                            m.missing_baselines += 1;
                            tracing::warn!(bot = %params.name, tick = header.tick.0, baseline = b.0, "delta against a snapshot never received");
                        }
                        if recent.len() == RECENT_TICKS {
                            recent.pop_front();
                        }
                        recent.push_back(header.tick);
                        send_input = client.seq == 0;
                        if second.is_some() {
                            m.count_snapshot(header.tick, now, client.bytes_down - down_before);
                        }
                        settle_round_trips(&mut pending, header.last_input_seq, now, second.is_some(), m);
                    }
                    // Counted by the client (taken, lost); the game's events do not steer bots.
                    Event::Pong { .. } | Event::Events(_) => {}
                    Event::Error { code, message } => {
                        return BotEnd::Dropped(format!("server error {code}: {message}"));
                    }
                }
            }
        }
        if send_input {
            words.clear();
            let view = BotView {
                welcome: &client.welcome,
                view: client.replica.latest(),
            };
            behaviour.next_input(&view, &mut words);
            let seq = match client.send_input(&words).await {
                Ok(seq) => seq,
                Err(e) => return dropped(e),
            };
            tracing::trace!(bot = %params.name, seq, named = ?client.input_clock.last_named(), margin = ?client.input_clock.margin(), "input sent");
            words.clear();
            let view = BotView {
                welcome: &client.welcome,
                view: client.replica.latest(),
            };
            if let Some(name) = behaviour.next_event(&view, &mut words)
                && let Err(e) = client
                    .send_event_words(name, std::mem::take(&mut words))
                    .await
            {
                return dropped(e);
            }
            let now = Instant::now();
            if window.second(now).is_some() {
                m.inputs += 1;
            }
            if pending.len() == MAX_PENDING_INPUTS {
                pending.pop_front();
            }
            pending.push_back((seq, now));
            // The next input, at the moment the input clock gives for the next tick.
            input_timer.as_mut().reset(client.next_input_at().into());
        }
        if let Some(s) = window.second(Instant::now()) {
            m.up_per_s[s] += client.bytes_up - up_before;
            m.down_per_s[s] += client.bytes_down - down_before;
        }
    }
}

impl BotMetrics {
    /// Counts a snapshot taken inside the window: its tick and arrival, and its bytes.
    fn count_snapshot(&mut self, tick: Tick, now: Instant, bytes: u64) {
        self.snapshots += 1;
        let at = (tick, now);
        self.window_ticks = Some(match self.window_ticks {
            None => (at, at),
            Some((first, _)) => (first, at),
        });
        self.snapshot_bytes += bytes;
    }
}

/// Ends the round trips of the inputs up to `last_input_seq` (the newest the snapshot's tick
/// applied), recording them when inside the window.
fn settle_round_trips(
    pending: &mut VecDeque<(u32, Instant)>,
    last_input_seq: u32,
    now: Instant,
    in_window: bool,
    m: &mut BotMetrics,
) {
    while let Some(&(seq, sent)) = pending.front() {
        if seq > last_input_seq {
            break;
        }
        pending.pop_front();
        if in_window {
            let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            m.rtt_us.record(us);
        }
    }
}

/// An idle connection: upgrades, says nothing, and holds until `stop` (answering pings).
pub async fn run_idle(
    params: BotParams,
    live: &Live,
    mut stop: watch::Receiver<bool>,
) -> BotOutcome {
    let metrics = BotMetrics::new(&params.name, 1, &params.round_trips);
    let (mut ws, _) = match tokio::time::timeout(
        params.connect_timeout,
        open(&params.url, &params.connect),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return failed(live, metrics, e.to_string()),
        Err(_) => return failed(live, metrics, "upgrade timed out".into()),
    };
    live.connected.fetch_add(1, Relaxed);
    let end = loop {
        tokio::select! {
            _ = stop.changed() => break BotEnd::Finished,
            msg = ws.next() => match msg {
                Some(Ok(_)) => {}
                Some(Err(e)) => break BotEnd::Dropped(e.to_string()),
                None => break BotEnd::Dropped("closed by server".into()),
            },
        }
    };
    if matches!(end, BotEnd::Dropped(_)) {
        live.dropped.fetch_add(1, Relaxed);
    } else {
        let _ = ws.close(None).await;
    }
    BotOutcome { end, metrics }
}

/// A slow reader: joins, then reads one message per `every` and acks nothing, until `stop` or
/// until the server closes it. Returns how it ended (the close code it saw, if any).
pub async fn run_slow(
    params: BotParams,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> String {
    let mut client = match Client::connect_with(&params.url, &params.name, &params.connect).await {
        Ok(c) => c,
        Err(e) => return format!("failed to connect: {e}"),
    };
    let describe = |e: ClientError| match e {
        ClientError::Closed { code, reason } => format!("closed by server: {code:?} {reason}"),
        other => format!("ended: {other}"),
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                if let Err(e) = client.recv_raw().await {
                    return describe(e);
                }
            }
        }
    }
    // The run is over: read what is still buffered to learn whether the server closed us.
    let drain = async {
        loop {
            if let Err(e) = client.recv_raw().await {
                return e;
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), drain).await {
        Ok(e) => describe(e),
        Err(_) => "still connected at the end".into(),
    }
}

fn dropped(e: ClientError) -> BotEnd {
    BotEnd::Dropped(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every round trip recorded by every bot is in the swarm's histogram once: those added a
    /// batch at a time and those still pending when the report is made.
    #[test]
    fn round_trips_of_all_bots_reach_the_one_histogram_once() {
        let shared = RoundTrips::new();
        let batch = |n: u64, base: u64| {
            let mut b = RttBatch {
                to: shared.clone(),
                pending: Vec::new(),
            };
            for i in 0..n {
                b.record(base + i);
            }
            b
        };
        // 150 = two batches added and 22 pending; 10 all pending; 0 and a minute clamped.
        let a = batch(150, 1_000);
        let b = batch(10, 50_000);
        let mut c = batch(0, 0);
        c.record(0);
        c.record(u64::MAX);
        assert_eq!(shared.0.lock().len(), 128, "two full batches were added");
        let all = shared.with_pending([&a, &b, &c]);
        assert_eq!(all.len(), 162);
        assert_eq!(all.min(), 1);
        assert!(all.max() >= MAX_RTT_US - MAX_RTT_US / 1000, "{}", all.max());
        assert_eq!(all.count_between(1_000, 1_149), 150);
        assert_eq!(all.count_between(50_000, 50_009), 10);
        // Making the report twice counts nothing twice.
        assert_eq!(shared.with_pending([&a, &b, &c]).len(), 162);
    }
}
