// Type declarations of the Tickwire JavaScript SDK (tickwire.js). See docs/PROTOCOL.md.

export declare const PROTOCOL_VERSION: number;
/** The unit of `SnapshotHeader.input_lead`, microseconds (100). */
export declare const INPUT_LEAD_UNIT_US: number;
export declare const SUBPROTOCOL: "tickwire.v1";
/** The prefix of the subprotocol that carries a join token. */
export declare const TOKEN_SUBPROTOCOL_PREFIX: "tickwire.token.";
export declare const MAX_REPLICA_HISTORY: number;

/** How a field is written in full. */
export type Encoding =
  | { Fixed: { scale: number; min: number; max: number } }
  | { Angle: { steps: number } }
  | { UInt: { max: number } }
  | { Int: { min: number; max: number } }
  | "VarUInt"
  | "VarInt"
  | "Bool"
  | { Str: { max_bytes: number } }
  | "EntityRef";

/** How a changed field is written against its baseline value. */
export type Delta = "Absolute" | { Diff: { bits: number } } | { AngleDiff: { bits: number } };

export interface Field { name: string; encoding: Encoding; delta: Delta }
export interface ComponentSchema { name: string; fields: Field[] }
export interface GameSchema {
  game: string;
  components: ComponentSchema[];
  input: Field[];
  statics: ComponentSchema[];
  /** Event types clients send. */
  client_events: ComponentSchema[];
  /** Event types the server sends. */
  server_events: ComponentSchema[];
}

/** One event: its type (an index into the schema's event types of its direction) and words. */
export interface EventRecord { kind: number; words: number[] }
/** Events one way and the acknowledgement of the other way's. */
export interface EventsMsg { ack: number; first: number; events: EventRecord[] }
/** A server event taken by a client, decoded. */
export type GameEvent = { seq: number; type: string } & Values;

/**
 * One entity: which components it has (bit i for components[i]) and their words. A replica's
 * states are read-only (views share the ones a snapshot did not change) and carry their
 * `entityHash` in `hash` once the replica has used it.
 */
export interface EntityState { mask: number; words: number[]; hash?: number }
/** A replica's view at one tick; `checksum` is the sum of its entities' hashes (verified). */
export interface View { tick: number; entities: Map<number, EntityState>; checksum?: number }
export interface SnapshotHeader {
  tick: number;
  baseline: number | null;
  last_input_seq: number;
  /** How early input `last_input_seq` arrived for its tick, in 0.1 ms; negative: late. */
  input_lead: number;
}
export type Visibility = "Global" | { Aoi: { radius: number } };
export interface StaticRecord { kind: number; words: number[] }
export interface Welcome {
  version: number;
  player: number;
  tick_rate_hz: number;
  tick: number;
  /** The id of the room joined. */
  room: string;
  /** The secret that resumes this player after a dropped connection ("" when the server does not). */
  resume: string;
  /** The newest client event the server has taken from this player (0 on a join). */
  events_received: number;
  visibility: Visibility;
  schema: GameSchema;
  statics: StaticRecord[];
}

/** Which room a hello asks for (properties as [key, value] pairs). */
export type RoomRequest =
  | { JoinOrCreate: { game: string; filter: [string, string][] } }
  | { Join: { id: string } }
  | { Create: { game: string; props: [string, string][] } };
/** Any room of `game` ("" = the server's) whose properties include `filter`, else a new one. */
export declare function joinOrCreate(filter?: Record<string, string | number>, game?: string): RoomRequest;
/** The room with this id. */
export declare function joinRoom(id: string): RoomRequest;
/** A new room of `game` ("" = the server's) with these properties. */
export declare function createRoom(props?: Record<string, string | number>, game?: string): RoomRequest;

export type ClientMsg =
  | { Hello: { version: number; name: string; room: RoomRequest } }
  | { Input: { seq: number; ack: number | null; tick?: number | null; events_ack?: number; fields: number[] } }
  | { Ack: { tick: number } }
  | { Ping: { nonce: number } }
  | { Resync: { tick: number } }
  | { Resume: { version: number; secret: string; last_tick: number | null; events_received: number } }
  | { Events: EventsMsg };
export type ServerMsg =
  | { Welcome: Welcome }
  | { Snapshot: { header: SnapshotHeader; body: number[] } }
  | { Pong: { nonce: number; tick: number } }
  | { Error: { code: number; message: string } }
  | { Events: EventsMsg };

/** Natural values of a record, by field name. */
export type Values = Record<string, number | boolean | string>;

export declare function encodeClient(msg: ClientMsg): Uint8Array;
export declare function decodeClient(bytes: Uint8Array): ClientMsg;
export declare function encodeServer(msg: ServerMsg): Uint8Array;
export declare function decodeServer(bytes: Uint8Array): ServerMsg;

export declare function fieldWords(f: Field): number;
export declare function fieldsOf(schema: GameSchema, mask: number): Field[];
export declare function writeBody(
  schema: GameSchema,
  base: Map<number, EntityState>,
  cur: Map<number, EntityState>,
  checksum: number,
): Uint8Array;
export declare function applyBody(
  schema: GameSchema,
  view: Map<number, EntityState>,
  bytes: Uint8Array,
): number;
export declare function bodyCounts(bytes: Uint8Array): { created: number; changed: number; removed: number };
export declare function writeRecord(fields: Field[], words: number[]): Uint8Array;
export declare function readRecord(fields: Field[], bytes: Uint8Array): number[];
export declare function decodeFields(fields: Field[], words: number[]): Values;
export declare function encodeFields(fields: Field[], values: Values): number[];
export declare function component(schema: GameSchema, state: EntityState, name: string): Values | null;
export declare function statics(welcome: Welcome, name: string): Values[];
export declare function entityHash(id: number, state: EntityState): number;
export declare function viewChecksum(entities: Map<number, EntityState>): number;

export declare class BitWriter {
  put(v: number, n: number): void;
  gamma(v: number): void;
  append(other: BitWriter): void;
  bitLength(): number;
  finish(): Uint8Array;
}
export declare class BitReader {
  constructor(bytes: Uint8Array);
  remaining(): number;
  get(n: number): number;
  gamma(): number;
  finish(): Uint8Array;
}

/** Errors thrown by Replica.apply carry `desync`: true when the content disagrees. */
export interface ApplyError extends Error { desync: boolean }

export declare class Replica {
  constructor(schema: GameSchema);
  readonly schema: GameSchema;
  latest(): View | null;
  clear(): void;
  get(id: number, component: string): Values | null;
  apply(header: SnapshotHeader, body: Uint8Array | number[]): View;
}

export declare class Interpolator {
  constructor(options?: { delayMs?: number; capacity?: number });
  push(view: View, atMs: number): void;
  sample(nowMs: number): { from: View; to: View; t: number } | null;
}

export declare class Predictor<S, I> {
  constructor(step: (state: S, input: I) => S, options?: { capacity?: number });
  sent(seq: number, input: I): void;
  reconcile(authoritative: S, lastInputSeq: number): S;
  pending(): number;
}

/** Input timing: when to send each input (docs/PROTOCOL.md, "Input timing"). */
export declare class InputClock {
  static MIN_MARGIN_MS: number;
  static MAX_MARGIN_MS: number;
  static START_MARGIN_MS: number;
  constructor(tickRateHz: number);
  /** The margin kept before each tick's deadline, ms. */
  readonly marginMs: number;
  /**
   * Inputs late (reported late by the server, or missing from a snapshot of the tick they
   * named), and inputs the server reported on.
   */
  readonly late: number;
  readonly reports: number;
  snapshot(header: SnapshotHeader): void;
  /** When (`performance.now()` ms) to send the next input, and the tick it is for. */
  next(nowMs: number): { at: number; tick: number };
  sent(seq: number, atMs: number, tick: number): void;
}

export interface SnapshotEvent {
  view: View;
  header: SnapshotHeader;
  counts: { created: number; changed: number; removed: number };
}

export declare class TickwireClient {
  /**
   * `token`: a join token, for servers that require them (sent as a subprotocol).
   * `room`: which room to join; by default any room of the server's game with a free seat.
   */
  constructor(
    url: string,
    options?: {
      name?: string;
      token?: string | null;
      room?: RoomRequest;
      WebSocketImpl?: typeof WebSocket;
      /** Resume after a dropped connection: attempts and backoff, or `false` for none. */
      reconnect?: { tries?: number; firstDelayMs?: number; maxDelayMs?: number } | false;
    },
  );
  readonly welcome: Welcome | null;
  readonly schema: GameSchema | null;
  readonly replica: Replica | null;
  readonly stats: {
    applied: number; unapplied: number; desyncs: number; bytesDown: number; bytesUp: number;
    resumes: number;
  };
  on(event: "welcome", fn: (w: Welcome) => void): this;
  on(event: "snapshot", fn: (s: SnapshotEvent) => void): this;
  on(event: "unapplied", fn: (e: ApplyError) => void): this;
  on(event: "desync", fn: (e: ApplyError) => void): this;
  on(event: "pong", fn: (p: { nonce: number; tick: number }) => void): this;
  on(event: "events", fn: (events: GameEvent[]) => void): this;
  on(event: "reconnecting", fn: (r: { attempt: number; delayMs: number }) => void): this;
  on(event: "resumed", fn: (w: Welcome) => void): this;
  on(event: "close", fn: (c: { code: number; reason: string }) => void): this;
  on(event: "error", fn: (e: Error) => void): this;
  send(msg: ClientMsg): boolean;
  /** Sends an input now, naming the tick the input clock gives; returns its sequence number. */
  sendInput(values: Values): number;
  /** Calls `produce` (which sends with `sendInput`) once per tick at the input clock's moment;
   * stops on close or when the returned function is called. */
  startInputs(produce: () => void): () => void;
  stopInputs(): void;
  readonly inputClock: InputClock;
  /** Sends a client event reliably; returns its sequence number (0 if it cannot now). */
  sendEvent(name: string, values: Values): number;
  readonly events: { sent: number; received: number; lost: number; taken: number };
  close(): void;
}
