// Tickwire protocol v2 for JavaScript (browsers and node): the binary codec of every message,
// the entity checksum, and the replica that applies snapshot deltas. docs/PROTOCOL.md is the
// specification; tests/js/codec.test.mjs checks this module byte for byte against golden
// vectors written by the Rust codec (tests/golden/vectors.json).
//
// Messages are plain objects shaped like the JSON subprotocol (`tickwire.v1.json`):
// `{Hello: {version, name}}`, `{Snapshot: {header, body}}`, and so on.

export const PROTOCOL_VERSION = 3;
/** Position units per world unit (positions travel in half units). */
export const POS_SCALE = 2;
/** Angle steps per turn. */
export const AIM_STEPS = 1024;

const CLIENT_VARIANTS = ["Hello", "Input", "Ack", "Ping", "Resync"];
const SERVER_VARIANTS = ["Welcome", "Snapshot", "Pong", "Error"];

const MASK_X = 1, MASK_Y = 2, MASK_AIM = 4, MASK_HP = 8, MASK_SCORE = 16;
const COMPACT_FLAG = 0x80;

/** Reads the bincode-standard encoding (little-endian, varints) from a byte array. */
class Reader {
  constructor(bytes) {
    this.b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.v = new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength);
    this.i = 0;
  }
  need(n) {
    if (this.i + n > this.b.length) throw new Error("truncated message");
  }
  u8() { this.need(1); return this.b[this.i++]; }
  u16fixed() { this.need(2); const x = this.v.getUint16(this.i, true); this.i += 2; return x; }
  u32fixed() { this.need(4); const x = this.v.getUint32(this.i, true); this.i += 4; return x; }
  /** An unsigned varint; a Number up to 2^53, a BigInt beyond. */
  varint() {
    const t = this.u8();
    if (t < 251) return t;
    if (t === 0xfb) return this.u16fixed();
    if (t === 0xfc) return this.u32fixed();
    if (t === 0xfd) {
      this.need(8);
      const x = this.v.getBigUint64(this.i, true);
      this.i += 8;
      return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
    }
    throw new Error(`unsupported varint tag ${t}`);
  }
  zigzag() {
    const z = this.varint();
    if (typeof z === "bigint") throw new Error("signed value out of range");
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
  f32() { this.need(4); const x = this.v.getFloat32(this.i, true); this.i += 4; return x; }
  bool() {
    const x = this.u8();
    if (x > 1) throw new Error("bad bool");
    return x === 1;
  }
  string() {
    const n = this.varint();
    this.need(n);
    const s = new TextDecoder("utf-8", { fatal: true }).decode(this.b.subarray(this.i, this.i + n));
    this.i += n;
    return s;
  }
  variant(names) {
    const k = this.varint();
    if (k >= names.length) throw new Error(`unknown variant ${k}`);
    return names[k];
  }
  end() {
    if (this.i !== this.b.length) throw new Error(`${this.b.length - this.i} trailing bytes`);
  }
}

/** Writes the bincode-standard encoding into a growing byte array. */
class Writer {
  constructor() {
    this.b = new Uint8Array(64);
    this.n = 0;
  }
  room(k) {
    if (this.n + k <= this.b.length) return;
    const bigger = new Uint8Array(Math.max(this.b.length * 2, this.n + k));
    bigger.set(this.b.subarray(0, this.n));
    this.b = bigger;
  }
  u8(x) { this.room(1); this.b[this.n++] = x & 0xff; }
  bytes(a) { this.room(a.length); this.b.set(a, this.n); this.n += a.length; }
  u16fixed(x) { this.room(2); new DataView(this.b.buffer).setUint16(this.n, x, true); this.n += 2; }
  u32fixed(x) { this.room(4); new DataView(this.b.buffer).setUint32(this.n, x >>> 0, true); this.n += 4; }
  varint(x) {
    if (typeof x === "bigint" || x > 0xffffffff) {
      this.u8(0xfd);
      this.room(8);
      new DataView(this.b.buffer).setBigUint64(this.n, BigInt(x), true);
      this.n += 8;
    } else if (x < 251) this.u8(x);
    else if (x <= 0xffff) { this.u8(0xfb); this.u16fixed(x); }
    else { this.u8(0xfc); this.u32fixed(x); }
  }
  zigzag(x) { this.varint(x >= 0 ? x * 2 : -x * 2 - 1); }
  f32(x) { this.room(4); new DataView(this.b.buffer).setFloat32(this.n, x, true); this.n += 4; }
  bool(x) { this.u8(x ? 1 : 0); }
  string(s) { const e = new TextEncoder().encode(s); this.varint(e.length); this.bytes(e); }
  done() { return this.b.slice(0, this.n); }
}

// ---- client messages -------------------------------------------------------------------

/** Encodes a client message (`{Hello: ...}`, `{Input: ...}`, `{Ack: ...}`, `{Ping: ...}`,
 * `{Resync: ...}`). */
export function encodeClient(msg) {
  const w = new Writer();
  const [name, m] = Object.entries(msg)[0];
  w.varint(CLIENT_VARIANTS.indexOf(name));
  switch (name) {
    case "Hello": w.varint(m.version); w.string(m.name); break;
    case "Input": w.varint(m.seq); w.f32(m.move_x); w.f32(m.move_y); w.f32(m.aim); w.bool(m.fire); break;
    case "Ack": w.varint(m.tick); break;
    case "Ping": w.varint(m.nonce); break;
    case "Resync": w.varint(m.tick); break;
    default: throw new Error(`unknown client message ${name}`);
  }
  return w.done();
}

/** Decodes a client message (the server's side; used by the tests). */
export function decodeClient(bytes) {
  const r = new Reader(bytes);
  const name = r.variant(CLIENT_VARIANTS);
  let m;
  switch (name) {
    case "Hello": m = { version: r.varint(), name: r.string() }; break;
    case "Input": m = { seq: r.varint(), move_x: r.f32(), move_y: r.f32(), aim: r.f32(), fire: r.bool() }; break;
    case "Ack": m = { tick: r.varint() }; break;
    case "Ping": m = { nonce: r.varint() }; break;
    case "Resync": m = { tick: r.varint() }; break;
  }
  r.end();
  return { [name]: m };
}

// ---- server messages -------------------------------------------------------------------

function readState(r) {
  const kind = r.u8();
  if (kind === 0) {
    return { Player: { x: r.u16fixed(), y: r.u16fixed(), aim: r.u16fixed(), hp: r.u8(), score: r.varint() } };
  }
  if (kind === 1) {
    return {
      Projectile: {
        x: r.u16fixed(), y: r.u16fixed(), vx: r.zigzag(), vy: r.zigzag(), born: r.u32fixed(), owner: r.varint(),
      },
    };
  }
  throw new Error(`unknown entity kind ${kind}`);
}

function writeState(w, s) {
  if (s.Player) {
    const p = s.Player;
    w.u8(0); w.u16fixed(p.x); w.u16fixed(p.y); w.u16fixed(p.aim); w.u8(p.hp); w.varint(p.score);
  } else {
    const p = s.Projectile;
    w.u8(1); w.u16fixed(p.x); w.u16fixed(p.y); w.zigzag(p.vx); w.zigzag(p.vy); w.u32fixed(p.born); w.varint(p.owner);
  }
}

function readIdGap(r, prev) {
  const g = r.varint();
  if (g === 0) throw new Error("id gap of 0");
  return prev + g;
}

function readBody(r) {
  const created = [], changed = [], removed = [];
  let n = r.varint(), prev = 0;
  for (let k = 0; k < n; k++) {
    prev = readIdGap(r, prev);
    created.push({ id: prev, state: readState(r) });
  }
  n = r.varint(); prev = 0;
  for (let k = 0; k < n; k++) {
    const head = r.u8();
    if (head & COMPACT_FLAG) {
      const inline = (head & 0x70) >> 4;
      prev = inline === 0 ? readIdGap(r, prev) : prev + inline;
      const p = ((head & 0x0f) << 16) | r.u16fixed();
      changed.push({ id: prev, dx: (p & 0x7f) - 64, dy: ((p >> 7) & 0x7f) - 64, daim: ((p >> 14) & 0x3f) - 32, hp: null, score: null });
      continue;
    }
    const mask = head & 0x1f;
    const inline = head >> 5;
    prev = inline === 0 ? readIdGap(r, prev) : prev + inline;
    const c = { id: prev, dx: 0, dy: 0, daim: 0, hp: null, score: null };
    if (mask & MASK_X) c.dx = r.zigzag();
    if (mask & MASK_Y) c.dy = r.zigzag();
    if (mask & MASK_AIM) c.daim = r.zigzag();
    if (mask & MASK_HP) c.hp = r.u8();
    if (mask & MASK_SCORE) c.score = r.varint();
    changed.push(c);
  }
  n = r.varint(); prev = 0;
  for (let k = 0; k < n; k++) {
    prev = readIdGap(r, prev);
    removed.push(prev);
  }
  return { created, changed, removed, checksum: r.u32fixed() };
}

function writeBody(w, body) {
  w.varint(body.created.length);
  let prev = 0;
  for (const u of body.created) { w.varint(u.id - prev); prev = u.id; writeState(w, u.state); }
  w.varint(body.changed.length);
  prev = 0;
  for (const c of body.changed) {
    const gap = c.id - prev;
    prev = c.id;
    const small = [c.dx, c.dy, c.daim].filter((v) => v !== 0).length;
    const compact = c.hp === null && c.score === null && c.dx >= -64 && c.dx <= 63 &&
      c.dy >= -64 && c.dy <= 63 && c.daim >= -32 && c.daim <= 31 && small >= 2;
    if (compact) {
      const p = (c.dx + 64) | ((c.dy + 64) << 7) | ((c.daim + 32) << 14);
      const inline = gap <= 7 ? gap : 0;
      w.u8(COMPACT_FLAG | (inline << 4) | (p >> 16));
      if (inline === 0) w.varint(gap);
      w.u16fixed(p & 0xffff);
      continue;
    }
    const mask = (c.dx ? MASK_X : 0) | (c.dy ? MASK_Y : 0) | (c.daim ? MASK_AIM : 0) |
      (c.hp !== null ? MASK_HP : 0) | (c.score !== null ? MASK_SCORE : 0);
    const inline = gap <= 3 ? gap : 0;
    w.u8(mask | (inline << 5));
    if (inline === 0) w.varint(gap);
    if (c.dx) w.zigzag(c.dx);
    if (c.dy) w.zigzag(c.dy);
    if (c.daim) w.zigzag(c.daim);
    if (c.hp !== null) w.u8(c.hp);
    if (c.score !== null) w.varint(c.score);
  }
  w.varint(body.removed.length);
  prev = 0;
  for (const id of body.removed) { w.varint(id - prev); prev = id; }
  w.u32fixed(body.checksum);
}

/** Decodes a server message. Throws on any malformed input. */
export function decodeServer(bytes) {
  const r = new Reader(bytes);
  const name = r.variant(SERVER_VARIANTS);
  let m;
  switch (name) {
    case "Welcome": {
      const version = r.varint(), player = r.varint(), tick_rate_hz = r.varint(), tick = r.varint();
      const width = r.f32(), height = r.f32();
      const walls = [];
      for (let n = r.varint(); n > 0; n--) walls.push({ min_x: r.f32(), min_y: r.f32(), max_x: r.f32(), max_y: r.f32() });
      const arena = {
        width, height, walls, player_radius: r.f32(), projectile_radius: r.f32(),
        player_speed: r.f32(), projectile_speed: r.f32(),
      };
      const vis = r.varint();
      const visibility = vis === 0 ? "Global" : vis === 1 ? { Aoi: { radius: r.f32() } } : null;
      if (visibility === null) throw new Error("unknown visibility");
      m = { version, player, tick_rate_hz, tick, arena, visibility };
      break;
    }
    case "Snapshot": {
      const tick = r.u32fixed();
      const age = r.u8();
      const header = { tick, baseline: age === 0 ? null : (tick - age) >>> 0, last_input_seq: r.varint() };
      m = { header, body: readBody(r) };
      break;
    }
    case "Pong": m = { nonce: r.varint(), tick: r.varint() }; break;
    case "Error": m = { code: r.varint(), message: r.string() }; break;
  }
  r.end();
  return { [name]: m };
}

/** Encodes a server message (the tests re-encode decoded vectors byte for byte). */
export function encodeServer(msg) {
  const w = new Writer();
  const [name, m] = Object.entries(msg)[0];
  w.varint(SERVER_VARIANTS.indexOf(name));
  switch (name) {
    case "Welcome": {
      w.varint(m.version); w.varint(m.player); w.varint(m.tick_rate_hz); w.varint(m.tick);
      const a = m.arena;
      w.f32(a.width); w.f32(a.height);
      w.varint(a.walls.length);
      for (const r of a.walls) { w.f32(r.min_x); w.f32(r.min_y); w.f32(r.max_x); w.f32(r.max_y); }
      w.f32(a.player_radius); w.f32(a.projectile_radius); w.f32(a.player_speed); w.f32(a.projectile_speed);
      if (m.visibility === "Global") w.varint(0);
      else { w.varint(1); w.f32(m.visibility.Aoi.radius); }
      break;
    }
    case "Snapshot": {
      const h = m.header;
      w.u32fixed(h.tick);
      w.u8(h.baseline === null ? 0 : (h.tick - h.baseline) >>> 0);
      w.varint(h.last_input_seq);
      writeBody(w, m.body);
      break;
    }
    case "Pong": w.varint(m.nonce); w.varint(m.tick); break;
    case "Error": w.varint(m.code); w.string(m.message); break;
    default: throw new Error(`unknown server message ${name}`);
  }
  return w.done();
}

// ---- checksum and replica ---------------------------------------------------------------

function mix(h, k) {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The hash of one entity (docs/PROTOCOL.md, "Checksum"). */
export function entityHash(id, state) {
  const words = state.Player
    ? [id, 0, state.Player.x, state.Player.y, state.Player.aim, state.Player.hp, state.Player.score, 0]
    : [id, 1, state.Projectile.x, state.Projectile.y, state.Projectile.vx & 0xffff,
      state.Projectile.vy & 0xffff, state.Projectile.born, state.Projectile.owner];
  let h = 0x7469636b;
  for (const w of words) h = mix(h, w >>> 0);
  return finish(h ^ 32);
}

/** The checksum of a view: the sum of its entities' hashes, mod 2^32. */
export function viewChecksum(entities) {
  let sum = 0;
  for (const [id, state] of entities) sum = (sum + entityHash(id, state)) >>> 0;
  return sum;
}

/** Where a projectile is at `tick`, in position units. */
export function projectileAt(p, tick) {
  const age = tick - p.born;
  return { x: p.x + p.vx * age, y: p.y + p.vy * age };
}

/** The recent views of one client; applies snapshots and verifies their checksums. */
export class Replica {
  constructor() {
    /** Views, oldest first: `{tick, entities: Map<id, state>}`. */
    this.views = [];
  }
  latest() { return this.views.length ? this.views[this.views.length - 1] : null; }
  clear() { this.views = []; }
  /** Applies a snapshot's header and body; throws (and leaves the replica as it was) on any
   * inconsistency. Returns the new view. */
  apply(header, body) {
    const newest = this.latest();
    if (newest && ((header.tick - newest.tick) | 0) <= 0) throw new Error(`out of order: ${header.tick}`);
    let base;
    if (header.baseline === null) base = new Map();
    else {
      const v = this.views.find((x) => x.tick === header.baseline);
      if (!v) throw new Error(`baseline ${header.baseline} is not in the replica`);
      base = v.entities;
    }
    const e = new Map(base);
    for (const id of body.removed) {
      if (!e.delete(id)) throw new Error(`entity ${id} is not in the baseline`);
    }
    for (const c of body.changed) {
      const s = e.get(c.id);
      if (!s || !s.Player) throw new Error(`delta for entity ${c.id} does not apply`);
      const p = s.Player;
      const x = p.x + c.dx, y = p.y + c.dy;
      if (x < 0 || x > 0xffff || y < 0 || y > 0xffff) throw new Error(`delta for entity ${c.id} does not apply`);
      e.set(c.id, {
        Player: {
          x, y, aim: (((p.aim + c.daim) % AIM_STEPS) + AIM_STEPS) % AIM_STEPS,
          hp: c.hp === null ? p.hp : c.hp, score: c.score === null ? p.score : c.score,
        },
      });
    }
    for (const u of body.created) {
      if (e.has(u.id)) throw new Error(`created entity ${u.id} already exists`);
      e.set(u.id, u.state);
    }
    const actual = viewChecksum(e);
    if (actual !== body.checksum) {
      throw new Error(`checksum mismatch at tick ${header.tick}: server ${body.checksum}, replica ${actual}`);
    }
    if (header.baseline !== null) this.views = this.views.filter((v) => v.tick >= header.baseline);
    if (this.views.length >= 128) this.views.shift();
    const view = { tick: header.tick, entities: e };
    this.views.push(view);
    return view;
  }
}
