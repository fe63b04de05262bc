//! Rooms: many running instances of the server's game in one process.
//!
//! A room is one world of the game (a [`crate::sim::Sim`]) stepped by a thread of the tick
//! pool ([`crate::sim::driver::TickLoop`]) on its own deadlines, with an id, properties, a
//! player cap and its own counters ([`RoomInfo`]). Sessions go through the registry
//! ([`Rooms`]) to get a [`Seat`] in a room before they ask its world for a player:
//!
//! - **Seats are counted under one lock.** Finding a room, checking its cap and the process's
//!   caps, and taking the seat happen in one critical section, so concurrent joins can never
//!   put more players in a room than its cap, nor more rooms or players in the process than
//!   `max_rooms` and `max_clients`. A seat is given back when its session ends.
//! - **Join or create** takes the oldest open room of the game that has a free seat and whose
//!   properties include the filter; if there is none it creates one with the filter as its
//!   properties. A room with every seat taken is *locked*: join-or-create passes it by and a
//!   join by id is refused (4008).
//! - **Creation** reserves the id, the join queue and the creator's seat under the lock, then
//!   builds the world outside it and hands it to the tick pool. Joins that arrive meanwhile
//!   queue on the room's join channel and are taken on its first tick.
//! - **Disposal**: after each tick of a room, its tick thread checks (two relaxed loads) whether
//!   the room has had no seat taken for `room_empty_grace_ms`; if so it removes the room under
//!   the lock (where no seat can be taken at the same moment) and drops the world. A room whose
//!   game panicked is removed at once (see [`crate::sim::driver`]).
//!
//! - **Resume**: each seated player has a secret (the welcome's `resume`). While its session
//!   lives the registry knows it as *live*; when the connection drops the session hands its
//!   seat to the registry, *held* under the secret, and the world holds the player. A
//!   connection that resumes takes the held seat (closing the old session first with 4011 if
//!   the server has not noticed the drop yet) and the world hands it the player. The world lets
//!   the seat go when it gives up on the player after `resume_grace_ms`. Entries are one per
//!   seat, so they are bounded by `max_clients`.
//!
//! The registry holds no world: worlds live on the tick threads. What it shares with them is
//! each room's [`RoomInfo`], a handful of atomics.

use crate::boundary::{JoinRequest, Kick};
use crate::error::ServerError;
use crate::stats::ServerStats;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tickwire_protocol::{RoomRequest, close};

/// Characters of a room id.
const ID_CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Length of a room id.
const ID_LEN: usize = 8;
/// `empty_since_ns` of a room that has players.
const NOT_EMPTY: u64 = u64::MAX;

/// One room, as the registry, the sessions and the room's tick thread share it.
#[derive(Debug)]
pub struct RoomInfo {
    id: String,
    game: String,
    cap: usize,
    props: Vec<(String, String)>,
    created: Instant,
    /// Creation order: join-or-create fills the oldest room first.
    order: u64,
    /// Seats taken (sessions joining or playing); changed only under the registry's lock.
    seats: AtomicUsize,
    /// Nanoseconds after `created` when the last seat was given back, or [`NOT_EMPTY`].
    empty_since_ns: AtomicU64,
    /// The world's last completed tick.
    tick: AtomicU32,
    /// Ticks run, and their total duration.
    ticks: AtomicU64,
    tick_ns: AtomicU64,
    /// False once the room is disposed.
    open: AtomicBool,
}

impl RoomInfo {
    fn new(
        id: String,
        game: &str,
        cap: usize,
        props: Vec<(String, String)>,
        order: u64,
    ) -> RoomInfo {
        RoomInfo {
            id,
            game: game.to_owned(),
            cap,
            props,
            created: Instant::now(),
            order,
            seats: AtomicUsize::new(0),
            empty_since_ns: AtomicU64::new(0),
            tick: AtomicU32::new(0),
            ticks: AtomicU64::new(0),
            tick_ns: AtomicU64::new(0),
            open: AtomicBool::new(true),
        }
    }

    /// A room outside any registry (a world built directly by a test, a bench or the headroom
    /// command).
    #[must_use]
    pub fn detached(id: &str, game: &str) -> Arc<RoomInfo> {
        Arc::new(RoomInfo::new(
            id.to_owned(),
            game,
            usize::MAX,
            Vec::new(),
            0,
        ))
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The game it runs.
    #[must_use]
    pub fn game(&self) -> &str {
        &self.game
    }

    /// Most players it takes.
    #[must_use]
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Its properties.
    #[must_use]
    pub fn props(&self) -> &[(String, String)] {
        &self.props
    }

    /// Seats taken: players in it and clients on their way in.
    #[must_use]
    pub fn players(&self) -> usize {
        self.seats.load(Relaxed)
    }

    /// True when every seat is taken.
    #[must_use]
    pub fn locked(&self) -> bool {
        self.players() >= self.cap
    }

    /// True until it is disposed.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// Its world's last completed tick.
    #[must_use]
    pub fn tick(&self) -> u32 {
        self.tick.load(Relaxed)
    }

    /// Ticks run so far.
    #[must_use]
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Relaxed)
    }

    /// Time spent in its ticks so far.
    #[must_use]
    pub fn tick_time(&self) -> Duration {
        Duration::from_nanos(self.tick_ns.load(Relaxed))
    }

    /// How long it has been open.
    #[must_use]
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// How long it has had no seat taken, if it has none.
    #[must_use]
    pub fn empty_for(&self, now: Instant) -> Option<Duration> {
        match self.empty_since_ns.load(Relaxed) {
            NOT_EMPTY => None,
            ns => Some(now.saturating_duration_since(self.created + Duration::from_nanos(ns))),
        }
    }

    pub(crate) fn set_tick(&self, tick: u32) {
        self.tick.store(tick, Relaxed);
    }

    pub(crate) fn record_tick(&self, took: Duration) {
        self.ticks.fetch_add(1, Relaxed);
        self.tick_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn mark_empty(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.created).as_nanos();
        self.empty_since_ns
            .store(u64::try_from(ns).unwrap_or(NOT_EMPTY - 1), Relaxed);
    }

    fn matches(&self, filter: &[(String, String)]) -> bool {
        filter.iter().all(|pair| self.props.contains(pair))
    }

    fn props_json(&self) -> Value {
        Value::Object(
            self.props
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// The public listing entry: id, game, players, cap, locked, properties.
    #[must_use]
    pub fn public_json(&self) -> Value {
        json!({
            "id": self.id,
            "game": self.game,
            "players": self.players(),
            "cap": self.cap,
            "locked": self.locked(),
            "props": self.props_json(),
        })
    }

    /// The operator's view: the public entry plus its tick, ticks run, mean tick time and age.
    #[must_use]
    pub fn detail_json(&self) -> Value {
        let ticks = self.ticks();
        let mean_us = if ticks == 0 {
            0.0
        } else {
            self.tick_time().as_secs_f64() * 1e6 / ticks as f64
        };
        let mut v = self.public_json();
        if let Value::Object(m) = &mut v {
            m.insert("tick".into(), json!(self.tick()));
            m.insert("ticks".into(), json!(ticks));
            m.insert(
                "mean_tick_us".into(),
                json!((mean_us * 10.0).round() / 10.0),
            );
            m.insert("age_s".into(), json!(self.age().as_secs()));
            m.insert(
                "empty_for_s".into(),
                json!(self.empty_for(Instant::now()).map(|d| d.as_secs())),
            );
        }
        v
    }
}

/// Why a hello got no seat; each maps to a close code and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The hello named a game this server does not run.
    #[error("no such game {asked:?}: this server runs {runs:?}")]
    NoSuchGame {
        /// The game asked for.
        asked: String,
        /// The server's game.
        runs: String,
    },
    /// No open room has that id.
    #[error("no such room {0:?}")]
    NoSuchRoom(String),
    /// The room has no free seat.
    #[error("room {id:?} is full ({cap} players)")]
    RoomFull {
        /// The room.
        id: String,
        /// Its cap.
        cap: usize,
    },
    /// `max_rooms` rooms are open.
    #[error("server full: {0} rooms open")]
    TooManyRooms(usize),
    /// `max_clients` seats are taken.
    #[error("server full: {0} players")]
    ServerFull(usize),
    /// The join token admits another room.
    #[error("the join token admits room {0:?} only: join it by id")]
    NotPermitted(String),
    /// The room's world could not be built.
    #[error("internal error: the room could not be started")]
    Failed,
}

impl Refusal {
    /// The close code that carries it.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Refusal::NoSuchGame { .. } | Refusal::NoSuchRoom(_) => close::NO_SUCH_ROOM,
            Refusal::RoomFull { .. } => close::ROOM_FULL,
            Refusal::TooManyRooms(_) | Refusal::ServerFull(_) => close::TRY_AGAIN_LATER,
            Refusal::NotPermitted(_) => close::NOT_PERMITTED,
            Refusal::Failed => close::INTERNAL_ERROR,
        }
    }
}

/// What the registry and the worlds know a resume secret by: its SHA-256, so that looking one
/// up (a hash map, an equality test) can leak nothing of the secret through its timing.
pub type SecretKey = [u8; 32];

/// The key of a resume secret.
#[must_use]
pub fn secret_key(secret: &str) -> SecretKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Why a resume got no seat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeRefusal {
    /// No player is known by that secret (never given, already used, or given up on).
    #[error("resume refused: unknown or expired secret")]
    Unknown,
    /// The player's previous connection did not let go of it in time.
    #[error("resume refused: the previous connection did not close in time")]
    StillLive,
}

impl ResumeRefusal {
    /// The close code that carries it: 4010 (do not retry) for an unknown secret, 1013 (try
    /// again) while the previous connection still holds the player.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            ResumeRefusal::Unknown => close::RESUME_REFUSED,
            ResumeRefusal::StillLive => close::TRY_AGAIN_LATER,
        }
    }
}

/// What the registry knows of one resume secret.
enum Ticket {
    /// Its session is connected; the kick closes it if another connection resumes.
    Live(Arc<Kick>),
    /// Its connection dropped; the seat waits for a resume.
    Held(Seat),
}

/// Starts a room's world: builds it from the room's info and join queue and hands it to the
/// tick pool, with a handle on the registry so its thread can dispose of it.
pub type StartRoom = Box<
    dyn Fn(Arc<RoomInfo>, Receiver<JoinRequest>, Weak<Rooms>) -> Result<(), ServerError>
        + Send
        + Sync,
>;

/// The registry's limits.
#[derive(Debug, Clone)]
pub struct RoomLimits {
    /// Most rooms open at once.
    pub max_rooms: usize,
    /// Most seats taken in the process.
    pub max_players: usize,
    /// Most seats in one room.
    pub room_cap: usize,
    /// How long a room may stay empty before it is disposed.
    pub empty_grace: Duration,
    /// Length of each room's join queue.
    pub join_queue_len: usize,
}

struct Entry {
    info: Arc<RoomInfo>,
    joins: Sender<JoinRequest>,
}

#[derive(Default)]
struct State {
    rooms: BTreeMap<String, Entry>,
    players: usize,
    next_order: u64,
}

/// The rooms of one server (see the module documentation).
pub struct Rooms {
    game: String,
    limits: RoomLimits,
    state: Mutex<State>,
    /// Resume secrets (never locked together with `state`).
    tickets: Mutex<HashMap<SecretKey, Ticket>>,
    /// Notified whenever a ticket becomes held.
    held: tokio::sync::Notify,
    stats: Arc<ServerStats>,
    start: StartRoom,
    me: Weak<Rooms>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms")
            .field("game", &self.game)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A taken seat in a room: its join queue, and the room's info. Given back when dropped.
pub struct Seat {
    rooms: Arc<Rooms>,
    info: Arc<RoomInfo>,
    joins: Sender<JoinRequest>,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat").field("room", &self.info.id).finish()
    }
}

impl Seat {
    /// The room.
    #[must_use]
    pub fn room(&self) -> &Arc<RoomInfo> {
        &self.info
    }

    /// The room's join queue.
    #[must_use]
    pub fn joins(&self) -> &Sender<JoinRequest> {
        &self.joins
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.rooms.release(&self.info);
    }
}

impl Rooms {
    /// A registry of rooms of `game`, which `start` brings to life.
    #[must_use]
    pub fn new(
        game: &str,
        limits: RoomLimits,
        stats: Arc<ServerStats>,
        start: StartRoom,
    ) -> Arc<Rooms> {
        Arc::new_cyclic(|me| Rooms {
            game: game.to_owned(),
            limits,
            state: Mutex::new(State::default()),
            tickets: Mutex::new(HashMap::new()),
            held: tokio::sync::Notify::new(),
            stats,
            start,
            me: me.clone(),
        })
    }

    /// The game its rooms run.
    #[must_use]
    pub fn game(&self) -> &str {
        &self.game
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> &RoomLimits {
        &self.limits
    }

    /// A seat in the room `request` asks for, creating the room if it asks for that. A join
    /// token scoped to one room (`token_room`) admits only a join of that room by id.
    ///
    /// # Errors
    /// Why no seat was given (see [`Refusal`]).
    pub fn join(
        self: &Arc<Self>,
        request: &RoomRequest,
        token_room: Option<&str>,
    ) -> Result<Seat, Refusal> {
        let game_ok = |g: &str| {
            if g.is_empty() || g == self.game {
                Ok(())
            } else {
                Err(Refusal::NoSuchGame {
                    asked: g.to_owned(),
                    runs: self.game.clone(),
                })
            }
        };
        if let Some(room) = token_room
            && !matches!(request, RoomRequest::Join { id } if id == room)
        {
            return Err(Refusal::NotPermitted(room.to_owned()));
        }
        let (seat, rx) = {
            let mut state = self.state.lock();
            if state.players >= self.limits.max_players {
                return Err(Refusal::ServerFull(self.limits.max_players));
            }
            let props = match request {
                RoomRequest::Join { id } => {
                    let entry = state
                        .rooms
                        .get(id)
                        .ok_or_else(|| Refusal::NoSuchRoom(id.clone()))?;
                    if entry.info.locked() {
                        return Err(Refusal::RoomFull {
                            id: id.clone(),
                            cap: entry.info.cap,
                        });
                    }
                    let (info, joins) = (Arc::clone(&entry.info), entry.joins.clone());
                    return Ok(self.take_seat(&mut state, info, joins));
                }
                RoomRequest::JoinOrCreate { game, filter } => {
                    game_ok(game)?;
                    let open = state
                        .rooms
                        .values()
                        .filter(|e| !e.info.locked() && e.info.matches(filter))
                        .min_by_key(|e| e.info.order)
                        .map(|e| (Arc::clone(&e.info), e.joins.clone()));
                    if let Some((info, joins)) = open {
                        return Ok(self.take_seat(&mut state, info, joins));
                    }
                    filter.clone()
                }
                RoomRequest::Create { game, props } => {
                    game_ok(game)?;
                    props.clone()
                }
            };
            // The creator's seat is taken in the same critical section as the room is made,
            // so no other join can fill it first.
            let (info, joins, rx) = self.create(&mut state, props)?;
            (self.take_seat(&mut state, info, joins), rx)
        };
        // If the world cannot start, the seat is given back as it drops.
        self.bring_up(seat.room(), rx)?;
        Ok(seat)
    }

    /// Creates an empty room with `props` (the operator's `POST /rooms`). It is disposed like
    /// any room once it has been empty for the grace period.
    ///
    /// # Errors
    /// `max_rooms` rooms are open, or the world could not be built.
    pub fn create_empty(&self, props: Vec<(String, String)>) -> Result<Arc<RoomInfo>, Refusal> {
        let (info, _joins, rx) = {
            let mut state = self.state.lock();
            self.create(&mut state, props)?
        };
        info.mark_empty(Instant::now());
        self.bring_up(&info, rx)?;
        Ok(info)
    }

    /// Every open room, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<Arc<RoomInfo>> {
        let mut rooms: Vec<_> = self
            .state
            .lock()
            .rooms
            .values()
            .map(|e| Arc::clone(&e.info))
            .collect();
        rooms.sort_by_key(|r| r.order);
        rooms
    }

    /// The open room with this id.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Arc<RoomInfo>> {
        self.state.lock().rooms.get(id).map(|e| Arc::clone(&e.info))
    }

    /// Rooms open.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state.lock().rooms.len()
    }

    /// True when no room is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seats taken in the process.
    #[must_use]
    pub fn players(&self) -> usize {
        self.state.lock().players
    }

    /// The public lobby listing (`GET /rooms` on the game port), as JSON text.
    #[must_use]
    pub fn public_listing(&self) -> String {
        let rooms: Vec<Value> = self.list().iter().map(|r| r.public_json()).collect();
        format!("{}\n", Value::Array(rooms))
    }

    /// Called by a room's tick thread after each tick: true if the room has been empty for
    /// the grace period and is now disposed (the thread then drops its world).
    pub fn dispose_if_idle(&self, info: &Arc<RoomInfo>, now: Instant) -> bool {
        if info.seats.load(Relaxed) != 0 {
            return false;
        }
        match info.empty_for(now) {
            Some(d) if d >= self.limits.empty_grace => {}
            _ => return false,
        }
        let mut state = self.state.lock();
        // Seats are taken only under the lock: none can be taken between this check and the
        // removal.
        if info.seats.load(Relaxed) != 0 {
            return false;
        }
        self.remove_locked(&mut state, info);
        true
    }

    /// Removes a room at once (its game panicked, or its world could not be built). Seats
    /// still taken are given back by their sessions as they end; seats held for a resume are
    /// given back now.
    pub fn remove(&self, info: &Arc<RoomInfo>) {
        {
            let mut state = self.state.lock();
            self.remove_locked(&mut state, info);
        }
        let orphans: Vec<Ticket> = {
            let mut tickets = self.tickets.lock();
            let gone: Vec<SecretKey> = tickets
                .iter()
                .filter(|(_, t)| matches!(t, Ticket::Held(seat) if Arc::ptr_eq(&seat.info, info)))
                .map(|(k, _)| *k)
                .collect();
            gone.iter().filter_map(|k| tickets.remove(k)).collect()
        };
        // Their seats are given back as they drop, outside the tickets' lock.
        drop(orphans);
    }

    /// Registers the secret of a connected player.
    pub fn register_live(&self, secret: &SecretKey, kick: Arc<Kick>) {
        self.tickets.lock().insert(*secret, Ticket::Live(kick));
    }

    /// The player's connection dropped: its seat waits under `secret` for a resume.
    pub fn hold(&self, secret: &SecretKey, seat: Seat) {
        self.tickets.lock().insert(*secret, Ticket::Held(seat));
        self.held.notify_waiters();
    }

    /// The secret is done with (its session ended for good, or the world gave up on the held
    /// player): forgets it, giving back a held seat.
    pub fn forget(&self, secret: &SecretKey) {
        let ticket = self.tickets.lock().remove(secret);
        drop(ticket);
    }

    /// Secrets known (live and held).
    #[must_use]
    pub fn tickets(&self) -> usize {
        self.tickets.lock().len()
    }

    /// Takes the seat held under `secret` for a resuming connection. If the player's session
    /// is still connected (the drop is not noticed yet, or the client reconnected from a new
    /// network), closes it with 4011 and waits up to `wait` for it to let go.
    ///
    /// # Errors
    /// No player is known by that secret, or the old session did not end in time.
    pub async fn resume(&self, secret: &SecretKey, wait: Duration) -> Result<Seat, ResumeRefusal> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut kicked = false;
        loop {
            let notified = self.held.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut tickets = self.tickets.lock();
                match tickets.get(secret) {
                    None => return Err(ResumeRefusal::Unknown),
                    Some(Ticket::Held(_)) => {
                        let Some(Ticket::Held(seat)) = tickets.remove(secret) else {
                            return Err(ResumeRefusal::Unknown);
                        };
                        if !seat.info.is_open() {
                            return Err(ResumeRefusal::Unknown);
                        }
                        return Ok(seat);
                    }
                    Some(Ticket::Live(kick)) => {
                        if !kicked {
                            kick.kick(
                                close::REPLACED,
                                "replaced: the player was resumed on another connection".into(),
                            );
                            kicked = true;
                        }
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ResumeRefusal::StillLive);
            }
        }
    }

    /// Drops every held seat (at shutdown, when no world is left to resume into).
    pub fn clear_tickets(&self) {
        let all: Vec<Ticket> = self.tickets.lock().drain().map(|(_, t)| t).collect();
        drop(all);
    }

    fn remove_locked(&self, state: &mut State, info: &Arc<RoomInfo>) {
        let ours = state
            .rooms
            .get(&info.id)
            .is_some_and(|e| Arc::ptr_eq(&e.info, info));
        if ours {
            state.rooms.remove(&info.id);
            info.open.store(false, Relaxed);
            self.stats.rooms.dec();
            self.stats.rooms_disposed.inc();
        }
    }

    /// Registers a new room (no seat taken yet) and returns it with its join queue.
    #[allow(clippy::type_complexity)]
    fn create(
        &self,
        state: &mut State,
        props: Vec<(String, String)>,
    ) -> Result<(Arc<RoomInfo>, Sender<JoinRequest>, Receiver<JoinRequest>), Refusal> {
        if state.rooms.len() >= self.limits.max_rooms {
            return Err(Refusal::TooManyRooms(self.limits.max_rooms));
        }
        let id = loop {
            let id: String = (0..ID_LEN)
                .map(|_| char::from(ID_CHARS[fastrand::usize(..ID_CHARS.len())]))
                .collect();
            if !state.rooms.contains_key(&id) {
                break id;
            }
        };
        state.next_order += 1;
        let info = Arc::new(RoomInfo::new(
            id.clone(),
            &self.game,
            self.limits.room_cap,
            props,
            state.next_order,
        ));
        let (tx, rx) = crossbeam_channel::bounded(self.limits.join_queue_len.max(1));
        state.rooms.insert(
            id,
            Entry {
                info: Arc::clone(&info),
                joins: tx.clone(),
            },
        );
        self.stats.rooms.inc();
        self.stats.rooms_created.inc();
        Ok((info, tx, rx))
    }

    /// Starts a registered room's world; a room that cannot start is removed.
    fn bring_up(&self, info: &Arc<RoomInfo>, joins: Receiver<JoinRequest>) -> Result<(), Refusal> {
        match (self.start)(Arc::clone(info), joins, self.me.clone()) {
            Ok(()) => {
                tracing::info!(room = %info.id, props = ?info.props, "room created");
                Ok(())
            }
            Err(e) => {
                tracing::error!(room = %info.id, error = %e, "room could not be started");
                self.remove(info);
                Err(Refusal::Failed)
            }
        }
    }

    fn take_seat(
        self: &Arc<Self>,
        state: &mut State,
        info: Arc<RoomInfo>,
        joins: Sender<JoinRequest>,
    ) -> Seat {
        state.players += 1;
        info.seats.fetch_add(1, Relaxed);
        info.empty_since_ns.store(NOT_EMPTY, Relaxed);
        Seat {
            rooms: Arc::clone(self),
            info,
            joins,
        }
    }

    fn release(&self, info: &RoomInfo) {
        let mut state = self.state.lock();
        state.players = state.players.saturating_sub(1);
        let before = info.seats.fetch_sub(1, Relaxed);
        if before == 1 {
            info.mark_empty(Instant::now());
        }
    }
}
