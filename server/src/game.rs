//! The game API: how a game plugs into the engine.
//!
//! A game implements [`Game`]: in [`Game::build`] it registers its replicated components
//! ([`GameApp::replicate`]), its input ([`GameApp::input`]), its static data
//! ([`GameApp::statics`]), its systems ([`GameApp::add_systems`], run in the simulate phase),
//! what happens when a player joins and leaves ([`GameApp::on_join`], [`GameApp::on_leave`])
//! and, optionally, where entities are for interest management ([`GameApp::interest`]).
//! Everything is checked at start-up. The engine owns every other phase: ingest (joins, inputs
//! checked against the schema into each player's [`Controls`]), capture (every entity with a
//! registered component, given a [`Net`] id on first sight), replicate and hand-off.
//!
//! A stock or custom binary passes a [`GameDef`] (`GameDef::of::<MyGame>()`) to
//! [`crate::Server::start`].

use crate::error::ServerError;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::IntoScheduleConfigs;
use bevy_ecs::system::ScheduleSystem;
use glam::IVec2;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tickwire_protocol::input::InputWords;
use tickwire_protocol::schema::{GameSchema, Replicate, clamp_words};
use tickwire_protocol::{NetId, StaticRecord, Tick};

/// A game: its name, its configuration section and how it builds itself on the engine.
pub trait Game: 'static {
    /// The game's name: in the schema, in `--game` and as its config section
    /// `[games.<NAME>]`.
    const NAME: &'static str;
    /// The game's settings, read from `[games.<NAME>]`; fields left out keep their defaults.
    type Config: Serialize + DeserializeOwned + Default + Send + Sync + 'static;
    /// Registers the game on `app`; an `Err` (a bad setting, a missing file) stops start-up
    /// with that message.
    ///
    /// # Errors
    /// What is wrong with the configuration.
    fn build(app: &mut GameApp, config: &Self::Config) -> Result<(), String>;
}

/// A game, type-erased, for [`crate::Server::start`] and the stock binaries' game lists.
#[derive(Clone, Copy)]
pub struct GameDef {
    name: &'static str,
    build: fn(&mut GameApp, Option<&toml::Value>) -> Result<(), ServerError>,
    default_config: fn() -> toml::Value,
}

impl std::fmt::Debug for GameDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameDef").field("name", &self.name).finish()
    }
}

impl GameDef {
    /// The definition of game `G`.
    #[must_use]
    pub fn of<G: Game>() -> GameDef {
        fn build<G: Game>(app: &mut GameApp, cfg: Option<&toml::Value>) -> Result<(), ServerError> {
            let invalid = |message: String| ServerError::InvalidConfig {
                message: format!("[games.{}]: {message}", G::NAME),
            };
            let config: G::Config = match cfg {
                Some(v) => v.clone().try_into().map_err(|e| invalid(e.to_string()))?,
                None => G::Config::default(),
            };
            G::build(app, &config).map_err(invalid)
        }
        fn default_config<G: Game>() -> toml::Value {
            toml::Value::try_from(G::Config::default())
                .unwrap_or(toml::Value::Table(toml::Table::new()))
        }
        GameDef {
            name: G::NAME,
            build: build::<G>,
            default_config: default_config::<G>,
        }
    }

    /// The game's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The game's default settings, as its TOML section.
    #[must_use]
    pub fn default_config(&self) -> toml::Value {
        (self.default_config)()
    }

    /// Builds the game on `app` with its section of the config file (if any).
    pub(crate) fn build(
        &self,
        app: &mut GameApp,
        cfg: Option<&toml::Value>,
    ) -> Result<(), ServerError> {
        (self.build)(app, cfg)
    }
}

/// Network identity of a replicated entity; the engine gives one to every entity that has a
/// registered component, at the capture after it appears.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(pub NetId);

/// The inputs of the client that controls this entity: the newest one, and those received
/// this tick. Only the engine writes it, on the client's own player entity, with inputs
/// already checked against the schema.
#[derive(Component, Debug, Default)]
pub struct Controls {
    seq: u32,
    latest: Option<InputWords>,
    this_tick: Vec<InputWords>,
}

impl Controls {
    /// The newest input, as the game's type; `None` before the first.
    #[must_use]
    pub fn latest<I: Replicate>(&self) -> Option<I> {
        self.latest.as_ref().map(InputWords::get)
    }

    /// The inputs received this tick, oldest first.
    pub fn this_tick<I: Replicate + 'static>(&self) -> impl Iterator<Item = I> + '_ {
        self.this_tick.iter().map(InputWords::get)
    }

    /// Sequence number of the newest input (0 before the first).
    #[must_use]
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// A new tick begins: forgets the previous tick's inputs.
    pub(crate) fn begin_tick(&mut self) {
        self.this_tick.clear();
    }

    /// Records an input (sequence numbers are checked by the session).
    pub(crate) fn push(&mut self, seq: u32, words: InputWords, max_per_tick: usize) {
        self.seq = seq;
        self.latest = Some(words);
        if self.this_tick.len() < max_per_tick {
            self.this_tick.push(words);
        }
    }
}

/// The events the client that controls this entity sent this tick (reliable and in order: each
/// exactly once, across resumes too), already checked against the schema's `client_events`.
/// Only the engine writes it, on the client's own player entity.
#[derive(Component, Debug, Default)]
pub struct Inbox {
    names: Arc<Vec<String>>,
    this_tick: Vec<tickwire_protocol::EventRecord>,
}

impl Inbox {
    pub(crate) fn new(names: Arc<Vec<String>>) -> Inbox {
        Inbox {
            names,
            this_tick: Vec::new(),
        }
    }

    /// This tick's events of type `E`, oldest first.
    pub fn read<E: Replicate>(&self) -> impl Iterator<Item = E> + '_ {
        let kind = self.names.iter().position(|n| n == E::NAME);
        self.this_tick
            .iter()
            .filter(move |e| Some(usize::from(e.kind)) == kind)
            .map(|e| E::read(&e.words))
    }

    /// Events received this tick, of any type.
    #[must_use]
    pub fn len(&self) -> usize {
        self.this_tick.len()
    }

    /// True if none arrived this tick.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.this_tick.is_empty()
    }

    pub(crate) fn begin_tick(&mut self) {
        self.this_tick.clear();
    }

    pub(crate) fn push(&mut self, event: tickwire_protocol::EventRecord) {
        self.this_tick.push(event);
    }
}

/// Events for clients, of the schema's `server_events` types: the engine delivers them
/// reliably and in order, each exactly once (across resumes too), after this tick's systems.
#[derive(Resource, Debug, Default)]
pub struct ServerEvents {
    names: Arc<Vec<String>>,
    pub(crate) pending: Vec<(Option<Entity>, tickwire_protocol::EventRecord)>,
}

impl ServerEvents {
    pub(crate) fn new(names: Arc<Vec<String>>) -> ServerEvents {
        ServerEvents {
            names,
            pending: Vec::new(),
        }
    }

    fn record<E: Replicate>(&self, event: &E) -> tickwire_protocol::EventRecord {
        let Some(kind) = self.names.iter().position(|n| n == E::NAME) else {
            panic!(
                "event type {} is not registered: call app.server_event::<{}>()",
                E::NAME,
                E::NAME
            );
        };
        let mut words = Vec::new();
        event.write(&mut words);
        tickwire_protocol::EventRecord {
            kind: u16::try_from(kind).unwrap_or(u16::MAX),
            words,
        }
    }

    /// Sends `event` to the client that controls `player` (nothing if no client does).
    ///
    /// # Panics
    /// If `E` was not registered with [`GameApp::server_event`].
    pub fn send<E: Replicate>(&mut self, player: Entity, event: &E) {
        let r = self.record(event);
        self.pending.push((Some(player), r));
    }

    /// Sends `event` to every client in the room.
    ///
    /// # Panics
    /// If `E` was not registered with [`GameApp::server_event`].
    pub fn broadcast<E: Replicate>(&mut self, event: &E) {
        let r = self.record(event);
        self.pending.push((None, r));
    }
}

/// The room this world is: its id and properties (set by whoever created it: the filter of the
/// join-or-create that made it, a client's create, or the operator). A game may read it in its
/// systems and hooks, for example to pick a mode or a map by a property.
#[derive(Resource, Debug, Clone)]
pub struct Room(pub Arc<crate::rooms::RoomInfo>);

impl std::ops::Deref for Room {
    type Target = crate::rooms::RoomInfo;
    fn deref(&self) -> &crate::rooms::RoomInfo {
        &self.0
    }
}

/// On a player whose connection dropped, while the engine holds it for the client to resume
/// (up to `resume_grace_ms`): the player stays in the world and in other clients' views, and
/// no input arrives for it. What a held player does is the game's choice (the reference game
/// stops it); the marker goes when the client resumes, and the player leaves through the leave
/// hook if it does not in time.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct Held;

/// The tick being simulated, and the tick rate.
#[derive(Resource, Debug, Clone, Copy)]
pub struct Clock {
    /// The tick being simulated.
    pub tick: Tick,
    /// Ticks per second.
    pub tick_rate_hz: u16,
}

/// A client that just joined, as the join hook sees it.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The id its player entity will carry.
    pub net: NetId,
    /// Its sanitized display name.
    pub name: String,
    /// The player id its join token carried (signed by the game's backend), when join tokens
    /// are on: an identity the game can trust, where the name is only what the client typed.
    pub player_id: Option<String>,
}

/// Entity index to capture slot, for the entities being captured this tick: each
/// component's query runs once, densely, and finds its entities' slots here.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    by_index: Vec<u32>,
}

impl Slots {
    const NONE: u32 = u32::MAX;

    /// Gives each entity of `entities` its position as its slot.
    pub(crate) fn fill(&mut self, entities: impl Iterator<Item = Entity>) {
        for (slot, e) in entities.enumerate() {
            let i = e.index_u32() as usize;
            if i >= self.by_index.len() {
                self.by_index.resize(i + 1, Self::NONE);
            }
            self.by_index[i] = slot as u32;
        }
    }

    /// Forgets the slots of `entities` (those given to [`Slots::fill`]).
    pub(crate) fn clear(&mut self, entities: impl Iterator<Item = Entity>) {
        for e in entities {
            self.by_index[e.index_u32() as usize] = Self::NONE;
        }
    }

    /// The slot of `e`, if it is being captured.
    #[inline]
    fn get(&self, e: Entity) -> Option<usize> {
        match self.by_index.get(e.index_u32() as usize) {
            Some(&s) if s != Self::NONE => Some(s as usize),
            _ => None,
        }
    }
}

/// One registered component as capture sees it: cached queries, each run once per tick over
/// the entities that have the component (no per-entity lookups).
pub(crate) trait Capture: Send + Sync {
    /// Brings the cached queries up to date with the world's archetypes.
    fn prepare(&mut self, world: &mut World);
    /// Appends entities with this component and no [`Net`] yet.
    fn find_unnamed(&self, world: &World, out: &mut Vec<Entity>);
    /// Words of one value.
    fn words(&self) -> usize;
    /// Sets `bit` in the mask of every captured entity that has the component.
    fn mark(&self, world: &World, slots: &Slots, bit: u32, masks: &mut [u32]);
    /// Writes the component's words of every captured entity that has it at `cursor[slot]`
    /// in `words`, advancing the cursor.
    fn write(&mut self, world: &World, slots: &Slots, cursor: &mut [u32], words: &mut [i64]);
}

struct ComponentCapture<C: Component> {
    fields: Vec<tickwire_protocol::Field>,
    words: usize,
    /// Per word: the range of a one-word field (strings are checked whole).
    quick: Vec<Option<(i64, i64)>>,
    has_strings: bool,
    read: Option<QueryState<(Entity, &'static C)>>,
    unnamed: Option<Unnamed<C>>,
    /// One value's words, as the component writes them.
    scratch: Vec<i64>,
}

impl<C: Component + Replicate> Capture for ComponentCapture<C> {
    fn prepare(&mut self, world: &mut World) {
        match &mut self.read {
            Some(q) => q.update_archetypes(world),
            None => self.read = Some(world.query()),
        }
        match &mut self.unnamed {
            Some(q) => q.update_archetypes(world),
            None => self.unnamed = Some(world.query_filtered()),
        }
    }

    fn find_unnamed(&self, world: &World, out: &mut Vec<Entity>) {
        if let Some(q) = &self.unnamed {
            out.extend(q.iter_manual(world));
        }
    }

    fn words(&self) -> usize {
        self.words
    }

    fn mark(&self, world: &World, slots: &Slots, bit: u32, masks: &mut [u32]) {
        let Some(q) = &self.read else { return };
        for (e, _) in q.iter_manual(world) {
            if let Some(s) = slots.get(e) {
                masks[s] |= bit;
            }
        }
    }

    fn write(&mut self, world: &World, slots: &Slots, cursor: &mut [u32], words: &mut [i64]) {
        let Some(q) = &self.read else { return };
        for (e, c) in q.iter_manual(world) {
            let Some(s) = slots.get(e) else { continue };
            let at = cursor[s] as usize;
            cursor[s] += self.words as u32;
            let scratch = &mut self.scratch;
            scratch.clear();
            c.write(scratch);
            if scratch.len() != self.words {
                scratch.resize(self.words, 0);
            }
            // A game bug must never become bytes a client cannot decode: a quick range check
            // per one-word field, the full check (strings) only where there are strings.
            let ok = self.quick.iter().zip(scratch.iter()).all(|(r, v)| match r {
                Some((lo, hi)) => (*lo..=*hi).contains(v),
                None => true,
            }) && (!self.has_strings
                || GameSchema::check_words(&self.fields, scratch).is_ok());
            if !ok && clamp_words(&self.fields, scratch) {
                tracing::warn!(component = C::NAME, "a replicated value was out of range");
            }
            words[at..at + self.words].copy_from_slice(scratch);
        }
    }
}

/// Where entities are for interest management, in interest units, from one component type.
pub(crate) trait Locate: Send + Sync {
    /// Brings the cached query up to date with the world's archetypes.
    fn prepare(&mut self, world: &mut World);
    /// Places every captured entity that has the component and no place yet.
    fn locate(&self, world: &World, slots: &Slots, places: &mut [Option<IVec2>]);
}

struct Locator<C: Component, F> {
    read: Option<QueryState<(Entity, &'static C)>>,
    at: F,
}

impl<C: Component, F: Fn(&C) -> IVec2 + Send + Sync> Locate for Locator<C, F> {
    fn prepare(&mut self, world: &mut World) {
        match &mut self.read {
            Some(q) => q.update_archetypes(world),
            None => self.read = Some(world.query()),
        }
    }

    fn locate(&self, world: &World, slots: &Slots, places: &mut [Option<IVec2>]) {
        let Some(q) = &self.read else { return };
        for (e, c) in q.iter_manual(world) {
            if let Some(s) = slots.get(e) {
                places[s].get_or_insert_with(|| (self.at)(c));
            }
        }
    }
}

/// Spawns the player entity of a joining client.
pub(crate) type JoinHook = Box<dyn FnMut(&mut World, &Joined) -> Entity + Send + Sync>;
/// Handles a player entity whose client left.
pub(crate) type LeaveHook = Box<dyn FnMut(&mut World, Entity) + Send + Sync>;

/// The query for entities with component `C` and no net id yet.
type Unnamed<C> = QueryState<Entity, (With<C>, Without<Net>)>;

/// How the game places entities for interest management.
pub(crate) struct InterestDef {
    /// Interest units per world unit.
    pub units_per_world: f32,
    /// The extent of the world, in interest units (positions are clamped into it).
    pub extent: IVec2,
    /// One locator per component type that places entities, tried in order.
    pub locate: Vec<Box<dyn Locate>>,
}

/// What a game builds on: its world and its registrations. Given to [`Game::build`].
pub struct GameApp {
    pub(crate) world: World,
    pub(crate) schema: GameSchema,
    pub(crate) captures: Vec<Box<dyn Capture>>,
    pub(crate) statics: Vec<StaticRecord>,
    pub(crate) simulate: Schedule,
    pub(crate) on_join: Option<JoinHook>,
    pub(crate) on_leave: Option<LeaveHook>,
    pub(crate) interest: Option<InterestDef>,
    pub(crate) input_registered: bool,
    pub(crate) page: &'static [crate::net::web::Asset],
    pub(crate) player_cap: Option<usize>,
    errors: Vec<String>,
    seed: u64,
    tick_rate_hz: u16,
}

impl GameApp {
    /// An app for game `name` on a fresh world.
    pub(crate) fn new(name: &str, seed: u64, tick_rate_hz: u16) -> GameApp {
        GameApp {
            world: World::new(),
            schema: GameSchema {
                game: name.to_owned(),
                ..GameSchema::default()
            },
            captures: Vec::new(),
            statics: Vec::new(),
            simulate: Schedule::default(),
            on_join: None,
            on_leave: None,
            interest: None,
            input_registered: false,
            page: &[],
            player_cap: None,
            errors: Vec::new(),
            seed,
            tick_rate_hz,
        }
    }

    /// The world, to insert the game's resources.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The server's seed (the `seed` setting), for the game's random numbers.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Ticks per second.
    #[must_use]
    pub fn tick_rate_hz(&self) -> u16 {
        self.tick_rate_hz
    }

    /// A duration in milliseconds as whole ticks at the server's tick rate, at least 1 (the
    /// same rounding as the engine's own settings).
    #[must_use]
    pub fn ms_to_ticks(&self, ms: u64) -> u32 {
        crate::config::ms_to_ticks(ms, self.tick_rate_hz)
    }

    /// Replicates component `C`: every entity that has it is sent to clients, with `C`'s
    /// fields encoded as its [`Replicate`] impl says. Components are numbered in the order
    /// they are registered.
    pub fn replicate<C: Component + Replicate>(&mut self) -> &mut Self {
        let fields = C::fields();
        let quick = fields
            .iter()
            .flat_map(|f| {
                let one = (f.words() == 1).then(|| f.encoding.range());
                std::iter::once(one).chain(std::iter::repeat_n(None, f.words() - 1))
            })
            .collect();
        self.schema.components.push(C::schema());
        self.captures.push(Box::new(ComponentCapture::<C> {
            words: fields.iter().map(|f| f.words()).sum(),
            has_strings: fields.iter().any(|f| f.words() > 1),
            fields,
            quick,
            read: None,
            unnamed: None,
            scratch: Vec::new(),
        }));
        self
    }

    /// Declares the game's input type: every input a client sends is checked against `I`'s
    /// fields before the game sees it, in the [`Controls`] of that client's player entity.
    pub fn input<I: Replicate>(&mut self) -> &mut Self {
        self.schema.input = I::fields();
        self.input_registered = true;
        self
    }

    /// Declares an event type clients send: reliable, ordered, each delivered exactly once, in
    /// the [`Inbox`] of the sender's player entity, checked against `E`'s fields first.
    pub fn client_event<E: Replicate>(&mut self) -> &mut Self {
        if self.schema.client_event_index(E::NAME).is_none() {
            self.schema.client_events.push(E::schema());
        }
        self
    }

    /// Declares an event type the server sends with [`ServerEvents`]: reliable, ordered, each
    /// delivered exactly once.
    pub fn server_event<E: Replicate>(&mut self) -> &mut Self {
        if self.schema.server_event_index(E::NAME).is_none() {
            self.schema.server_events.push(E::schema());
        }
        self
    }

    /// Adds static records of type `S`, sent once to every client in its welcome (the first
    /// call for a type registers it).
    pub fn statics<S: Replicate>(&mut self, records: impl IntoIterator<Item = S>) -> &mut Self {
        let kind = match self.schema.static_index(S::NAME) {
            Some(k) => k,
            None => {
                self.schema.statics.push(S::schema());
                self.schema.statics.len() - 1
            }
        };
        let fields = S::fields();
        for r in records {
            let mut words = Vec::new();
            r.write(&mut words);
            if let Err(e) = GameSchema::check_words(&fields, &words) {
                self.errors.push(format!("static {}: {e}", S::NAME));
            }
            self.statics.push(StaticRecord {
                kind: kind as u16,
                words,
            });
        }
        self
    }

    /// Adds systems to the simulate phase, which runs after the engine's ingest and before
    /// its capture, every tick.
    pub fn add_systems<M>(
        &mut self,
        systems: impl IntoScheduleConfigs<ScheduleSystem, M>,
    ) -> &mut Self {
        self.simulate.add_systems(systems);
        self
    }

    /// Sets what happens when a client joins: `hook` spawns its player entity (with the game's
    /// components) and returns it; the engine adds [`Net`] and [`Controls`]. Without a hook
    /// the player is an empty entity.
    pub fn on_join(
        &mut self,
        hook: impl FnMut(&mut World, &Joined) -> Entity + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_join = Some(Box::new(hook));
        self
    }

    /// Sets what happens to a player entity when its client leaves (the engine has removed
    /// its [`Controls`]). Without a hook the entity is despawned.
    pub fn on_leave(
        &mut self,
        hook: impl FnMut(&mut World, Entity) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_leave = Some(Box::new(hook));
        self
    }

    /// Enables interest management: entities with component `C` are at `locate(c)`, in
    /// interest units (`units_per_world` per world unit; the `aoi_radius` setting is in world
    /// units), within `extent`. Call it once per component type that places entities (the
    /// first that an entity has wins; every call must give the same units and extent).
    /// Entities placed by none are seen by every client. A game that never calls this is
    /// global whatever the `visibility` setting says.
    pub fn interest<C: Component>(
        &mut self,
        units_per_world: f32,
        extent: IVec2,
        locate: impl Fn(&C) -> IVec2 + Send + Sync + 'static,
    ) -> &mut Self {
        let locate: Box<dyn Locate> = Box::new(Locator::<C, _> {
            read: None,
            at: locate,
        });
        match &mut self.interest {
            Some(i) if i.units_per_world == units_per_world && i.extent == extent => {
                i.locate.push(locate);
            }
            Some(_) => self
                .errors
                .push("every interest() call must give the same units and extent".into()),
            None => {
                self.interest = Some(InterestDef {
                    units_per_world,
                    extent,
                    locate: vec![locate],
                });
            }
        }
        self
    }

    /// Caps the players of each room of the game: a full room is locked (join-or-create opens
    /// another, a join by id is refused with 4008). `room_max_players` may lower it further,
    /// and the server-wide `max_clients` still applies.
    pub fn player_cap(&mut self, players: usize) -> &mut Self {
        self.player_cap = Some(players);
        self
    }

    /// Sets the game's browser page: its files, served at their paths (`/` is the page
    /// itself) beside the JavaScript SDK under `/sdk/`.
    pub fn page(&mut self, files: &'static [crate::net::web::Asset]) -> &mut Self {
        self.page = files;
        self
    }

    /// Checks the registrations: the schema's rules, an input type, static records in range.
    pub(crate) fn check(&self) -> Result<(), ServerError> {
        let bad = |message: String| ServerError::InvalidConfig {
            message: format!("game {:?}: {message}", self.schema.game),
        };
        if let Some(e) = self.errors.first() {
            return Err(bad(e.clone()));
        }
        if !self.input_registered {
            return Err(bad("no input type registered (GameApp::input)".into()));
        }
        self.schema.validate().map_err(|e| bad(e.to_string()))?;
        if let Some(i) = &self.interest
            && !(i.units_per_world.is_finite()
                && i.units_per_world > 0.0
                && i.extent.min_element() > 0)
        {
            return Err(bad(
                "interest needs positive units per world unit and extent".into(),
            ));
        }
        Ok(())
    }
}
