// Tickwire JavaScript SDK: one dependency-free ES module for browsers and node. It speaks the
// binary protocol of docs/PROTOCOL.md for any game: the welcome carries the game's schema, and
// everything here (snapshot bodies, checksums, inputs, typed access) is driven by it.
//
// - The codec: every message, byte for byte as the Rust codec writes it (tests/js checks this
//   against the Rust-written golden vectors of each game).
// - Schema-driven parts: bits, snapshot bodies, entity hashes, the replica, input records.
// - `TickwireClient`: a WebSocket connection that says hello, keeps a verified replica, acks on
//   inputs, and reports snapshots, closes (code and reason) and errors as events.
// - Plumbing a game page plugs its own rules into: `Interpolator` (render others between two
//   snapshots) and `Predictor` (input history, replay after the acknowledged input).
//
// Messages are plain objects shaped like the JSON subprotocol (`tickwire.v1.json`):
// `{Hello: {version, name}}`, `{Snapshot: {header, body}}`, and so on.

export const PROTOCOL_VERSION = 10;
/** The unit of a snapshot header's `input_lead`, microseconds. */
export const INPUT_LEAD_UNIT_US = 100;
/** The binary subprotocol. */
export const SUBPROTOCOL = "tickwire.v1";
/** The prefix of the subprotocol that carries a join token. */
export const TOKEN_SUBPROTOCOL_PREFIX = "tickwire.token.";

const CLIENT_VARIANTS = ["Hello", "Input", "Ack", "Ping", "Resync", "Resume", "Events"];
const SERVER_VARIANTS = ["Welcome", "Snapshot", "Pong", "Error", "Events"];
const ENCODINGS = ["Fixed", "Angle", "UInt", "Int", "VarUInt", "VarInt", "Bool", "Str", "EntityRef"];
const DELTAS = ["Absolute", "Diff", "AngleDiff"];

// ---- bincode (little-endian, varints) ---------------------------------------------------

/** Reads the bincode-standard encoding from a byte array. */
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
  /** An unsigned varint (values past 2^53 are refused: no field of the protocol has them). */
  varint() {
    const t = this.u8();
    if (t < 251) return t;
    if (t === 0xfb) { const x = this.u16fixed(); if (x < 251) throw new Error("varint not minimal"); return x; }
    if (t === 0xfc) { const x = this.u32fixed(); if (x < 0x10000) throw new Error("varint not minimal"); return x; }
    if (t === 0xfd) {
      this.need(8);
      const x = this.v.getBigUint64(this.i, true);
      this.i += 8;
      if (x < 0x100000000n) throw new Error("varint not minimal");
      if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("varint out of range");
      return Number(x);
    }
    throw new Error(`unsupported varint tag ${t}`);
  }
  zigzag() { const z = this.varint(); return z % 2 === 0 ? z / 2 : -(z + 1) / 2; }
  f32() { this.need(4); const x = this.v.getFloat32(this.i, true); this.i += 4; return x; }
  option(read) {
    const t = this.u8();
    if (t > 1) throw new Error("bad option tag");
    return t === 1 ? read() : null;
  }
  string() {
    const n = this.varint();
    this.need(n);
    const s = new TextDecoder("utf-8", { fatal: true }).decode(this.b.subarray(this.i, this.i + n));
    this.i += n;
    return s;
  }
  vec(read) {
    const n = this.varint();
    if (n > this.b.length - this.i) throw new Error("length exceeds the message");
    const out = [];
    for (let k = 0; k < n; k++) out.push(read());
    return out;
  }
  variant(names) {
    const k = this.varint();
    if (k >= names.length) throw new Error(`unknown variant ${k}`);
    return names[k];
  }
  rest() { const r = this.b.slice(this.i); this.i = this.b.length; return r; }
  end() {
    if (this.i !== this.b.length) throw new Error(`${this.b.length - this.i} trailing bytes`);
  }
}

/** Writes the bincode-standard encoding into a growing byte array. */
class Writer {
  constructor() { this.b = new Uint8Array(64); this.n = 0; }
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
    if (x < 251) this.u8(x);
    else if (x <= 0xffff) { this.u8(0xfb); this.u16fixed(x); }
    else if (x <= 0xffffffff) { this.u8(0xfc); this.u32fixed(x); }
    else {
      this.u8(0xfd);
      this.room(8);
      new DataView(this.b.buffer).setBigUint64(this.n, BigInt(x), true);
      this.n += 8;
    }
  }
  zigzag(x) { this.varint(x >= 0 ? x * 2 : -x * 2 - 1); }
  f32(x) { this.room(4); new DataView(this.b.buffer).setFloat32(this.n, x, true); this.n += 4; }
  option(x, write) { if (x === null || x === undefined) this.u8(0); else { this.u8(1); write(x); } }
  string(s) { const e = new TextEncoder().encode(s); this.varint(e.length); this.bytes(e); }
  vec(a, write) { this.varint(a.length); for (const x of a) write(x); }
  done() { return this.b.slice(0, this.n); }
}

// ---- the schema ----------------------------------------------------------------------------

function readEncoding(r) {
  const name = r.variant(ENCODINGS);
  switch (name) {
    case "Fixed": return { Fixed: { scale: r.f32(), min: r.zigzag(), max: r.zigzag() } };
    case "Angle": return { Angle: { steps: r.varint() } };
    case "UInt": return { UInt: { max: r.varint() } };
    case "Int": return { Int: { min: r.zigzag(), max: r.zigzag() } };
    case "Str": return { Str: { max_bytes: r.u8() } };
    default: return name;
  }
}

function writeEncoding(w, e) {
  const [name, p] = typeof e === "string" ? [e, null] : Object.entries(e)[0];
  w.varint(ENCODINGS.indexOf(name));
  switch (name) {
    case "Fixed": w.f32(p.scale); w.zigzag(p.min); w.zigzag(p.max); break;
    case "Angle": w.varint(p.steps); break;
    case "UInt": w.varint(p.max); break;
    case "Int": w.zigzag(p.min); w.zigzag(p.max); break;
    case "Str": w.u8(p.max_bytes); break;
  }
}

function readDelta(r) {
  const name = r.variant(DELTAS);
  return name === "Absolute" ? name : { [name]: { bits: r.u8() } };
}

function writeDelta(w, d) {
  if (d === "Absolute") { w.varint(0); return; }
  const [name, p] = Object.entries(d)[0];
  w.varint(DELTAS.indexOf(name));
  w.u8(p.bits);
}

const readField = (r) => ({ name: r.string(), encoding: readEncoding(r), delta: readDelta(r) });
const writeField = (w, f) => { w.string(f.name); writeEncoding(w, f.encoding); writeDelta(w, f.delta); };
const readComponent = (r) => ({ name: r.string(), fields: r.vec(() => readField(r)) });
const writeComponent = (w, c) => { w.string(c.name); w.vec(c.fields, (f) => writeField(w, f)); };

/** The kind and parameters of an encoding. */
function enc(e) {
  return typeof e === "string" ? [e, {}] : Object.entries(e)[0];
}

/** Words a field takes. */
export function fieldWords(f) {
  const [kind, p] = enc(f.encoding);
  return kind === "Str" ? 1 + Math.ceil(p.max_bytes / 4) : 1;
}

/** The smallest and largest value of a one-word encoding. */
function range(e) {
  const [kind, p] = enc(e);
  switch (kind) {
    case "Fixed": case "Int": return [p.min, p.max];
    case "Angle": return [0, p.steps - 1];
    case "UInt": return [0, p.max];
    case "VarUInt": case "EntityRef": return [0, 0xffffffff];
    case "VarInt": return [-0x80000000, 0x7fffffff];
    case "Bool": return [0, 1];
    case "Str": return [0, p.max_bytes];
  }
  throw new Error(`unknown encoding ${kind}`);
}

/** Bits needed for 0..=max. */
const bitsFor = (max) => (max === 0 ? 0 : Math.floor(Math.log2(max)) + 1);

function fixedBits(e) {
  const [kind] = enc(e);
  if (!["Fixed", "Int", "Angle", "UInt", "Bool"].includes(kind)) return null;
  const [lo, hi] = range(e);
  return bitsFor(hi - lo);
}

/** Checks a value's words (a string's length word, bytes and zero padding included). */
function check(e, words) {
  const [kind, p] = enc(e);
  if (kind === "Str") {
    const [len, ...packed] = words;
    if (!(len >= 0 && len <= p.max_bytes) || packed.length !== Math.ceil(p.max_bytes / 4)) return false;
    const bytes = strBytes(words);
    for (let i = len; i < packed.length * 4; i++) if (bytes.padded[i] !== 0) return false;
    try { new TextDecoder("utf-8", { fatal: true }).decode(bytes.text); } catch { return false; }
    return true;
  }
  const [lo, hi] = range(e);
  return words.length === 1 && Number.isInteger(words[0]) && words[0] >= lo && words[0] <= hi;
}

function strBytes(words) {
  const packed = words.slice(1);
  const padded = new Uint8Array(packed.length * 4);
  packed.forEach((w, i) => {
    for (let j = 0; j < 4; j++) padded[4 * i + j] = (w >>> (8 * j)) & 0xff;
  });
  return { padded, text: padded.subarray(0, words[0]) };
}

/** The fields of the components in `mask`, in word order. */
export function fieldsOf(schema, mask) {
  const out = [];
  schema.components.forEach((c, i) => { if (mask & (1 << i)) out.push(...c.fields); });
  return out;
}

// ---- bits ----------------------------------------------------------------------------------

/** Appends bits, least significant first within each byte, bytes in order. */
export class BitWriter {
  constructor() { this.bytes = []; this.acc = 0; this.held = 0; }
  /** Writes the low `n` (<= 32) bits of `v`. */
  put(v, n) {
    for (let k = 0; k < n; k++) {
      const bit = Math.floor(v / 2 ** k) % 2;
      this.acc |= bit << this.held;
      if (++this.held === 8) { this.bytes.push(this.acc); this.acc = 0; this.held = 0; }
    }
  }
  /** Elias gamma code of v >= 1. */
  gamma(v) {
    const k = Math.floor(Math.log2(v));
    this.put(0, k);
    this.put(1, 1);
    this.put(v - 2 ** k, k);
  }
  append(other) {
    for (const b of other.bytes) this.put(b, 8);
    this.put(other.acc, other.held);
  }
  bitLength() { return this.bytes.length * 8 + this.held; }
  finish() { return Uint8Array.from(this.held ? [...this.bytes, this.acc] : this.bytes); }
}

/** 2^k for k in 0..=40. */
const POW2 = Array.from({ length: 41 }, (_, k) => 2 ** k);

/** Reads bits written by `BitWriter`. */
export class BitReader {
  constructor(bytes) { this.b = bytes; this.pos = 0; }
  remaining() { return this.b.length * 8 - this.pos; }
  /** The next `n` bits as a number (least significant first), a byte at a time. */
  get(n) {
    if (n > this.remaining()) throw new Error("truncated body");
    const b = this.b;
    let pos = this.pos, v = 0, got = 0;
    while (got < n) {
      const off = pos & 7;
      const take = Math.min(8 - off, n - got);
      v += ((b[pos >> 3] >> off) & ((1 << take) - 1)) * POW2[got];
      got += take;
      pos += take;
    }
    this.pos = pos;
    return v;
  }
  /** Elias gamma code: k zeros, a one, then k bits; more than 33 zeros is refused. */
  gamma() {
    const b = this.b, end = b.length * 8;
    let k = 0, pos = this.pos;
    for (;;) {
      if (pos >= end) throw new Error("truncated body");
      const off = pos & 7;
      const x = b[pos >> 3] >> off;
      if (x === 0) {
        k += 8 - off;
        pos += 8 - off;
      } else {
        const zeros = 31 - Math.clz32(x & -x);
        k += zeros;
        pos += zeros + 1;
        break;
      }
      if (k > 33) throw new Error("bad gamma code");
    }
    if (k > 33) throw new Error("bad gamma code");
    this.pos = pos;
    return POW2[k] + this.get(k);
  }
  /** Skips the zero padding to the next whole byte. */
  align() {
    const pad = (8 - (this.pos % 8)) % 8;
    if (this.get(pad) !== 0) throw new Error("padding is not zero");
  }
  /** Checks the zero padding and returns the bytes after it. */
  finish() {
    this.align();
    return this.b.subarray(this.pos >> 3);
  }
}

const zigzag = (v) => (v >= 0 ? v * 2 : -v * 2 - 1);
const unzigzag = (z) => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

function writeFull(w, e, words) {
  const [kind, p] = enc(e);
  switch (kind) {
    case "VarUInt": case "EntityRef": w.gamma(words[0] + 1); return;
    case "VarInt": w.gamma(zigzag(words[0]) + 1); return;
    case "Str": {
      const { text } = strBytes(words);
      w.put(words[0], bitsFor(p.max_bytes));
      for (const b of text) w.put(b, 8);
      return;
    }
    default: w.put(words[0] - range(e)[0], fixedBits(e));
  }
}

/** Reads a value in full; returns its words, or throws if out of range. */
function readFull(r, e) {
  const [kind, p] = enc(e);
  let words;
  switch (kind) {
    case "VarUInt": case "EntityRef": words = [r.gamma() - 1]; break;
    case "VarInt": words = [unzigzag(r.gamma() - 1)]; break;
    case "Str": {
      const len = r.get(bitsFor(p.max_bytes));
      const padded = new Uint8Array(Math.ceil(p.max_bytes / 4) * 4);
      for (let i = 0; i < Math.min(len, p.max_bytes); i++) padded[i] = r.get(8);
      words = [len];
      for (let i = 0; i < padded.length; i += 4) {
        words.push((padded[i] | (padded[i + 1] << 8) | (padded[i + 2] << 16) | (padded[i + 3] << 24)) >>> 0);
      }
      break;
    }
    default: words = [r.get(fixedBits(e)) + range(e)[0]];
  }
  if (!check(e, words)) throw new Error("value out of range");
  return words;
}

/** The shortest turn from `a` to `b` in `steps` per turn. */
function turn(a, b, steps) {
  const d = (((b - a) % steps) + steps) % steps;
  return d >= steps / 2 ? d - steps : d;
}

function smallDiff(f, old, now) {
  const [dk, dp] = enc(f.delta);
  let d;
  if (dk === "Diff") d = now - old;
  else if (dk === "AngleDiff") d = turn(old, now, enc(f.encoding)[1].steps);
  else return null;
  // The all-ones value of the field's bits is the escape to a full value.
  const z = zigzag(d) - 1;
  return z >= 0 && z < 2 ** dp.bits - 1 ? [z, dp.bits] : null;
}

const sameWords = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** One entity's change record (without id gap and mask header), or null if nothing changed. */
function encodeChange(schema, mask, old, now) {
  const payload = new BitWriter();
  let fieldMask = 0n, at = 0;
  const fields = fieldsOf(schema, mask);
  fields.forEach((f, i) => {
    const n = fieldWords(f);
    const o = old.slice(at, at + n), v = now.slice(at, at + n);
    if (!sameWords(o, v)) {
      fieldMask |= 1n << BigInt(i);
      if (f.delta === "Absolute") writeFull(payload, f.encoding, v);
      else {
        const small = smallDiff(f, o[0], v[0]);
        const bits = enc(f.delta)[1].bits;
        if (small) payload.put(small[0], small[1]);
        else { payload.put(2 ** bits - 1, bits); writeFull(payload, f.encoding, v); }
      }
    }
    at += n;
  });
  return fieldMask === 0n ? null : { mask: fieldMask, fields: fields.length, payload };
}

function writeCount(bytes, n) {
  const w = new Writer();
  w.varint(n);
  bytes.push(...w.done());
}

/**
 * Writes the body that turns the view `base` into `cur` (Maps of id -> {mask, words}), the
 * same bytes as the Rust reference encoder (`protocol::body::write_diff`).
 */
export function writeBody(schema, base, cur, checksum) {
  const lists = [new BitWriter(), new BitWriter(), new BitWriter()];
  const counts = [0, 0, 0], prev = [0, 0, 0];
  let prevChange = null;
  const gap = (list, id) => { lists[list].gamma(id - prev[list]); prev[list] = id; counts[list]++; };
  const ids = (m) => [...m.keys()].sort((a, b) => a - b);
  for (const id of ids(cur)) {
    const s = cur.get(id), old = base.get(id);
    if (old && old.mask === s.mask) {
      const c = encodeChange(schema, s.mask, old.words, s.words);
      if (!c) continue;
      gap(1, id);
      const w = lists[1];
      if (prevChange && prevChange.mask === c.mask && prevChange.fields === c.fields) w.put(1, 1);
      else {
        w.put(0, 1);
        w.put(Number(c.mask & 0xffffffffn), Math.min(c.fields, 32));
        w.put(Number(c.mask >> 32n), Math.max(c.fields - 32, 0));
        prevChange = c;
      }
      w.append(c.payload);
    } else {
      gap(0, id);
      lists[0].put(s.mask, schema.components.length);
      let at = 0;
      for (const f of fieldsOf(schema, s.mask)) {
        const n = fieldWords(f);
        writeFull(lists[0], f.encoding, s.words.slice(at, at + n));
        at += n;
      }
    }
  }
  for (const id of ids(base)) {
    const s = cur.get(id);
    if (!s || s.mask !== base.get(id).mask) gap(2, id);
  }
  const out = [];
  counts.forEach((n) => writeCount(out, n));
  const nonEmpty = counts.some((n) => n > 0);
  writeCount(out, nonEmpty ? 1 : 0);
  const all = new BitWriter();
  // One section: its counts, then its lists.
  if (nonEmpty) {
    counts.forEach((n) => all.gamma(n + 1));
    lists.forEach((l) => all.append(l));
  }
  out.push(...all.finish());
  const w = new Writer();
  w.u32fixed(checksum);
  out.push(...w.done());
  return Uint8Array.from(out);
}

/**
 * Applies a body to `view` (a Map of id -> {mask, words}, changed in place: pass a copy of the
 * baseline) and returns the checksum the server sent. A body is sections (each padded to a
 * whole byte), each with its own created, changed and removed lists; creations are added after
 * every change and removal.
 * Throws on any inconsistency.
 */
export function applyBody(schema, view, bytes) {
  return applyTracked(schema, view, bytes, null);
}

/**
 * How the decoder reads the fields of one component set, worked out once per schema and mask:
 * each field's kind (0: a fixed number of bits, 1: VarUInt or EntityRef, 2: VarInt, 3: Str),
 * its range and bits, and its delta mode.
 */
const PLANS = new WeakMap();

function planOf(schema, mask) {
  let byMask = PLANS.get(schema);
  if (!byMask) { byMask = new Map(); PLANS.set(schema, byMask); }
  let plan = byMask.get(mask);
  if (!plan) { plan = fieldsOf(schema, mask).map(fieldPlan); byMask.set(mask, plan); }
  return plan;
}

function fieldPlan(f) {
  const [kind, p] = enc(f.encoding);
  const [lo, hi] = range(f.encoding);
  const code = kind === "VarUInt" || kind === "EntityRef" ? 1 : kind === "VarInt" ? 2 : kind === "Str" ? 3 : 0;
  const dbits = f.delta === "Absolute" ? 0 : enc(f.delta)[1].bits;
  return {
    encoding: f.encoding, code, lo, hi, n: fieldWords(f), bits: code === 0 ? fixedBits(f.encoding) : 0,
    steps: kind === "Angle" ? p.steps : 0, dbits, escape: dbits ? 2 ** dbits - 1 : -1,
  };
}

/** Reads a one-word value in full (kinds 0 to 2), or throws if out of range. */
function readWord(r, fp) {
  let v;
  if (fp.code === 0) v = r.get(fp.bits) + fp.lo;
  else if (fp.code === 1) v = r.gamma() - 1;
  else v = unzigzag(r.gamma() - 1);
  if (v < fp.lo || v > fp.hi) throw new Error("value out of range");
  return v;
}

/** The hash of entity `id`'s state `s`, kept on the state as `s.hash`. */
function hashOf(id, s) {
  if (s.hash === undefined) s.hash = entityHash(id, s);
  return s.hash;
}

/**
 * `applyBody`, and when `track` ({sum}) is given, keeps `track.sum` the checksum of the view as
 * it changes: the checksum of the view before, then each changed, removed or created entity's
 * hash out and in (hashes kept on the states, `s.hash`, so views that share a state hash it
 * once). A replica so never hashes the entities a body did not touch.
 */
function applyTracked(schema, view, bytes, track) {
  const r0 = new Reader(bytes);
  const totals = [r0.varint(), r0.varint(), r0.varint()];
  const sections = r0.varint();
  const r = new BitReader(bytes.subarray(r0.i));
  if (totals[0] + totals[1] + totals[2] > r.remaining() || sections * 8 > r.remaining()) {
    throw new Error("malformed body: counts");
  }
  const ncomp = schema.components.length;
  const created = [];
  // Ids already changed or removed by this body: each at most once.
  const touched = new Set();
  const touch = (id) => {
    if (!view.has(id)) throw new Error(`entity ${id} is not in the baseline`);
    if (touched.has(id)) throw new Error(`malformed body: entity ${id} twice`);
    touched.add(id);
  };
  let sum = track ? track.sum : 0;
  const seen = [0, 0, 0];
  for (let sec = 0; sec < sections; sec++) {
    const counts = [r.gamma() - 1, r.gamma() - 1, r.gamma() - 1];
    for (let i = 0; i < 3; i++) {
      seen[i] += counts[i];
      if (seen[i] > totals[i]) throw new Error("malformed body: section counts");
    }
    let prev = 0;
    for (let k = 0; k < counts[0]; k++) {
      prev += r.gamma();
      const mask = r.get(ncomp);
      const words = [];
      for (const fp of planOf(schema, mask)) {
        if (fp.code === 3) words.push(...readFull(r, fp.encoding));
        else words.push(readWord(r, fp));
      }
      created.push([prev, { mask, words, hash: undefined }]);
    }
    prev = 0;
    // The previous change's field mask (two 32-bit halves) and field count, for repeats.
    let prevLo = 0, prevHi = 0, prevFields = -1;
    for (let k = 0; k < counts[1]; k++) {
      prev += r.gamma();
      touch(prev);
      const s = view.get(prev);
      const plan = planOf(schema, s.mask);
      const nf = plan.length;
      let lo, hi;
      if (r.get(1) === 1) {
        if (prevFields !== nf) throw new Error("malformed body: repeat");
        lo = prevLo; hi = prevHi;
      } else {
        lo = r.get(Math.min(nf, 32));
        hi = r.get(Math.max(nf - 32, 0));
        prevLo = lo; prevHi = hi; prevFields = nf;
      }
      if (lo === 0 && hi === 0) throw new Error("malformed body: empty change");
      const words = s.words.slice();
      let at = 0;
      for (let i = 0; i < nf; i++) {
        const fp = plan[i];
        if ((i < 32 ? (lo >>> i) : (hi >>> (i - 32))) & 1) {
          const small = fp.dbits ? r.get(fp.dbits) : -1;
          if (small >= 0 && small !== fp.escape) {
            const d = unzigzag(small + 1);
            const v = fp.steps ? ((((words[at] + d) % fp.steps) + fp.steps) % fp.steps) : words[at] + d;
            if (!(v >= fp.lo && v <= fp.hi)) throw new Error(`entity ${prev}: value out of range`);
            words[at] = v;
          } else if (fp.code === 3) words.splice(at, fp.n, ...readFull(r, fp.encoding));
          else words[at] = readWord(r, fp);
        }
        at += fp.n;
      }
      const next = { mask: s.mask, words, hash: undefined };
      if (track) sum = (sum - hashOf(prev, s) + hashOf(prev, next)) >>> 0;
      view.set(prev, next);
    }
    prev = 0;
    const removed = [];
    for (let k = 0; k < counts[2]; k++) {
      prev += r.gamma();
      touch(prev);
      removed.push(prev);
    }
    for (const id of removed) {
      if (track) sum = (sum - hashOf(id, view.get(id))) >>> 0;
      view.delete(id);
    }
    r.align();
  }
  if (seen.some((n, i) => n !== totals[i])) throw new Error("malformed body: totals");
  for (const [id, s] of created) {
    if (view.has(id)) throw new Error(`created entity ${id} already exists`);
    view.set(id, s);
    if (track) sum = (sum + hashOf(id, s)) >>> 0;
  }
  const tail = r.finish();
  if (tail.length !== 4) throw new Error("malformed body: checksum");
  if (track) track.sum = sum;
  return new DataView(tail.buffer, tail.byteOffset, 4).getUint32(0, true);
}

/** How many entities a body creates, changes and removes. */
export function bodyCounts(bytes) {
  const r = new Reader(bytes);
  return { created: r.varint(), changed: r.varint(), removed: r.varint() };
}

/** Writes a record's words in full (an input's fields), padded to a whole byte. */
export function writeRecord(fields, words) {
  const w = new BitWriter();
  let at = 0;
  for (const f of fields) {
    const n = fieldWords(f);
    writeFull(w, f.encoding, words.slice(at, at + n));
    at += n;
  }
  return w.finish();
}

/** Reads a record written by `writeRecord`, checking every value; the bytes must hold it exactly. */
export function readRecord(fields, bytes) {
  const r = new BitReader(bytes);
  const words = [];
  for (const f of fields) words.push(...readFull(r, f.encoding));
  if (r.finish().length !== 0) throw new Error("trailing bytes after the record");
  return words;
}

// ---- typed values --------------------------------------------------------------------------

/** A value's words as a natural JS value: numbers (fixed-point scaled back, angles in radians),
 * booleans, strings. */
function natural(f, words) {
  const [kind, p] = enc(f.encoding);
  switch (kind) {
    case "Fixed": return words[0] / p.scale;
    case "Angle": return (words[0] * 2 * Math.PI) / p.steps;
    case "Bool": return words[0] !== 0;
    case "Str": return new TextDecoder().decode(strBytes(words).text);
    default: return words[0];
  }
}

/** A natural JS value as a field's words, quantized and clamped into range (NaN becomes 0). */
function toWords(f, v) {
  const [kind, p] = enc(f.encoding);
  if (kind === "Str") {
    let bytes = new TextEncoder().encode(String(v ?? ""));
    let end = Math.min(bytes.length, p.max_bytes);
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // A character boundary.
    bytes = bytes.subarray(0, end);
    const words = [end];
    for (let i = 0; i < Math.ceil(p.max_bytes / 4) * 4; i += 4) {
      words.push(((bytes[i] ?? 0) | ((bytes[i + 1] ?? 0) << 8) | ((bytes[i + 2] ?? 0) << 16) | ((bytes[i + 3] ?? 0) << 24)) >>> 0);
    }
    return words;
  }
  let x;
  if (kind === "Fixed") x = Math.round(Number(v) * p.scale);
  else if (kind === "Angle") {
    const turns = Number(v) / (2 * Math.PI);
    x = Math.round((turns - Math.floor(turns)) * p.steps) % p.steps;
  } else if (kind === "Bool") x = v ? 1 : 0;
  else x = Math.round(Number(v));
  if (!Number.isFinite(x)) x = 0;
  const [lo, hi] = range(f.encoding);
  return [Math.min(hi, Math.max(lo, x))];
}

/** Decodes the words of `fields` into an object of natural values, by field name. */
export function decodeFields(fields, words) {
  const out = {};
  let at = 0;
  for (const f of fields) {
    const n = fieldWords(f);
    out[f.name] = natural(f, words.slice(at, at + n));
    at += n;
  }
  return out;
}

/** Encodes an object of natural values (by field name; missing ones are 0) as words. */
export function encodeFields(fields, values) {
  return fields.flatMap((f) => toWords(f, values[f.name]));
}

/** Component `name` of an entity state as an object of natural values, or null. */
export function component(schema, state, name) {
  const i = schema.components.findIndex((c) => c.name === name);
  if (i < 0 || !(state.mask & (1 << i))) return null;
  let at = 0;
  for (let k = 0; k < i; k++) {
    if (state.mask & (1 << k)) at += schema.components[k].fields.reduce((s, f) => s + fieldWords(f), 0);
  }
  const c = schema.components[i];
  const n = c.fields.reduce((s, f) => s + fieldWords(f), 0);
  return decodeFields(c.fields, state.words.slice(at, at + n));
}

/** The static records of type `name` in a welcome, as objects of natural values. */
export function statics(welcome, name) {
  const kind = welcome.schema.statics.findIndex((c) => c.name === name);
  return welcome.statics
    .filter((r) => r.kind === kind)
    .map((r) => decodeFields(welcome.schema.statics[kind].fields, r.words));
}

// ---- messages ------------------------------------------------------------------------------

const ROOM_REQUESTS = ["JoinOrCreate", "Join", "Create"];

/** A room request: any room of `game` ("" = the server's) whose properties include `filter`, else a new one with them. */
export function joinOrCreate(filter = {}, game = "") {
  return { JoinOrCreate: { game, filter: Object.entries(filter).map(([k, v]) => [k, String(v)]) } };
}
/** A room request: the room with this id. */
export function joinRoom(id) { return { Join: { id } }; }
/** A room request: a new room of `game` ("" = the server's) with these properties. */
export function createRoom(props = {}, game = "") {
  return { Create: { game, props: Object.entries(props).map(([k, v]) => [k, String(v)]) } };
}

function writeEvents(w, m) {
  w.varint(m.ack); w.varint(m.first);
  w.vec(m.events, (e) => { w.varint(e.kind); w.vec(e.words, (x) => w.zigzag(x)); });
}
function readEvents(r) {
  return {
    ack: r.varint(), first: r.varint(),
    events: r.vec(() => ({ kind: r.varint(), words: r.vec(() => r.zigzag()) })),
  };
}

function writePairs(w, pairs) { w.vec(pairs, ([k, v]) => { w.string(k); w.string(v); }); }
function readPairs(r) { return r.vec(() => [r.string(), r.string()]); }

function writeRoomRequest(w, req) {
  const [name, m] = Object.entries(req)[0];
  w.varint(ROOM_REQUESTS.indexOf(name));
  switch (name) {
    case "JoinOrCreate": w.string(m.game); writePairs(w, m.filter); break;
    case "Join": w.string(m.id); break;
    case "Create": w.string(m.game); writePairs(w, m.props); break;
    default: throw new Error(`unknown room request ${name}`);
  }
}

function readRoomRequest(r) {
  const name = r.variant(ROOM_REQUESTS);
  switch (name) {
    case "JoinOrCreate": return { JoinOrCreate: { game: r.string(), filter: readPairs(r) } };
    case "Join": return { Join: { id: r.string() } };
    default: return { Create: { game: r.string(), props: readPairs(r) } };
  }
}

/** Encodes a client message. */
export function encodeClient(msg) {
  const w = new Writer();
  const [name, m] = Object.entries(msg)[0];
  w.varint(CLIENT_VARIANTS.indexOf(name));
  switch (name) {
    case "Hello": w.varint(m.version); w.string(m.name); writeRoomRequest(w, m.room ?? joinOrCreate()); break;
    case "Input":
      w.varint(m.seq);
      w.varint(m.ack === null || m.ack === undefined ? 0 : m.ack + 1);
      w.varint(m.tick === null || m.tick === undefined ? 0 : m.tick + 1);
      w.varint(m.events_ack ?? 0);
      w.bytes(Uint8Array.from(m.fields));
      break;
    case "Ack": w.varint(m.tick); break;
    case "Ping": w.varint(m.nonce); break;
    case "Resync": w.varint(m.tick); break;
    case "Resume":
      w.varint(m.version); w.string(m.secret);
      if (m.last_tick === null || m.last_tick === undefined) w.u8(0); else { w.u8(1); w.varint(m.last_tick); }
      w.varint(m.events_received ?? 0);
      break;
    case "Events": writeEvents(w, m); break;
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
    case "Hello": m = { version: r.varint(), name: r.string(), room: readRoomRequest(r) }; break;
    case "Input": {
      const seq = r.varint(), ack = r.varint(), tick = r.varint(), events_ack = r.varint();
      m = { seq, ack: ack === 0 ? null : ack - 1, tick: tick === 0 ? null : tick - 1, events_ack, fields: [...r.rest()] };
      break;
    }
    case "Ack": m = { tick: r.varint() }; break;
    case "Ping": m = { nonce: r.varint() }; break;
    case "Resync": m = { tick: r.varint() }; break;
    case "Resume": {
      const version = r.varint(), secret = r.string();
      const some = r.u8();
      if (some > 1) throw new Error(`bad option tag ${some}`);
      m = { version, secret, last_tick: some === 1 ? r.varint() : null, events_received: r.varint() };
      break;
    }
    case "Events": m = readEvents(r); break;
  }
  r.end();
  return { [name]: m };
}

function readVisibility(r) {
  const k = r.varint();
  if (k === 0) return "Global";
  if (k === 1) return { Aoi: { radius: r.f32() } };
  throw new Error(`unknown visibility ${k}`);
}

/** Decodes a server message. A snapshot's body stays bytes (`body`), for a replica to apply. */
export function decodeServer(bytes) {
  const r = new Reader(bytes);
  const name = r.variant(SERVER_VARIANTS);
  let m;
  switch (name) {
    case "Welcome":
      m = {
        version: r.varint(),
        player: r.varint(),
        tick_rate_hz: r.varint(),
        tick: r.varint(),
        room: r.string(),
        resume: r.string(),
        events_received: r.varint(),
        visibility: readVisibility(r),
        schema: {
          game: r.string(),
          components: r.vec(() => readComponent(r)),
          input: r.vec(() => readField(r)),
          statics: r.vec(() => readComponent(r)),
          client_events: r.vec(() => readComponent(r)),
          server_events: r.vec(() => readComponent(r)),
        },
        statics: r.vec(() => ({ kind: r.varint(), words: r.vec(() => r.zigzag()) })),
      };
      break;
    case "Snapshot": {
      const tick = r.u32fixed(), age = r.u8();
      const header = {
        tick, baseline: age === 0 ? null : (tick - age) >>> 0, last_input_seq: r.varint(), input_lead: r.zigzag(),
      };
      m = { header, body: [...r.rest()] };
      break;
    }
    case "Pong": m = { nonce: r.varint(), tick: r.varint() }; break;
    case "Error": m = { code: r.varint(), message: r.string() }; break;
    case "Events": m = readEvents(r); break;
  }
  r.end();
  return { [name]: m };
}

/** Encodes a server message (used by the tests to check byte equality). */
export function encodeServer(msg) {
  const w = new Writer();
  const [name, m] = Object.entries(msg)[0];
  w.varint(SERVER_VARIANTS.indexOf(name));
  switch (name) {
    case "Welcome": {
      w.varint(m.version); w.varint(m.player); w.varint(m.tick_rate_hz); w.varint(m.tick);
      w.string(m.room); w.string(m.resume); w.varint(m.events_received);
      if (m.visibility === "Global") w.varint(0);
      else { w.varint(1); w.f32(m.visibility.Aoi.radius); }
      w.string(m.schema.game);
      w.vec(m.schema.components, (c) => writeComponent(w, c));
      w.vec(m.schema.input, (f) => writeField(w, f));
      w.vec(m.schema.statics, (c) => writeComponent(w, c));
      w.vec(m.schema.client_events, (c) => writeComponent(w, c));
      w.vec(m.schema.server_events, (c) => writeComponent(w, c));
      w.vec(m.statics, (s) => { w.varint(s.kind); w.vec(s.words, (x) => w.zigzag(x)); });
      break;
    }
    case "Snapshot": {
      const h = m.header;
      w.u32fixed(h.tick);
      w.u8(h.baseline === null ? 0 : (h.tick - h.baseline) >>> 0);
      w.varint(h.last_input_seq);
      w.zigzag(h.input_lead ?? 0);
      w.bytes(Uint8Array.from(m.body));
      break;
    }
    case "Pong": w.varint(m.nonce); w.varint(m.tick); break;
    case "Error": w.varint(m.code); w.string(m.message); break;
    case "Events": writeEvents(w, m); break;
    default: throw new Error(`unknown server message ${name}`);
  }
  return w.done();
}

// ---- checksums -----------------------------------------------------------------------------

function mix(h, k) {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The hash of one entity: id, component mask, word count, then each word modulo 2^32. */
export function entityHash(id, state) {
  let h = mix(mix(mix(0x7469636b, id), state.mask), state.words.length);
  for (const w of state.words) h = mix(h, w >>> 0);
  return fmix(h);
}

/** The checksum of a view (a Map of id -> state): the wrapping sum of its entities' hashes. */
export function viewChecksum(entities) {
  let sum = 0;
  for (const [id, s] of entities) sum = (sum + entityHash(id, s)) >>> 0;
  return sum;
}

// ---- the replica ---------------------------------------------------------------------------

/** Most views a replica keeps. */
export const MAX_REPLICA_HISTORY = 128;

/** Recent views of one client, decoded through the schema and verified. */
export class Replica {
  constructor(schema) { this.schema = schema; this.views = []; }
  latest() { return this.views.at(-1) ?? null; }
  clear() { this.views = []; }
  /** Component `name` of entity `id` in the newest view, as natural values, or null. */
  get(id, name) {
    const s = this.latest()?.entities.get(id);
    return s ? component(this.schema, s, name) : null;
  }
  /**
   * Applies a snapshot (its header and body bytes) and verifies the checksum. Returns the new
   * view `{tick, entities}`; throws (leaving the replica as it was) if it does not apply.
   * `err.desync` is true when the content disagrees with the server's.
   */
  apply(header, body) {
    const newest = this.latest();
    if (newest && header.tick <= newest.tick) {
      throw Object.assign(new Error(`snapshot ${header.tick} is not after ${newest.tick}`), { desync: false });
    }
    let entities;
    const track = { sum: 0 };
    if (header.baseline === null) entities = new Map();
    else {
      const base = this.views.find((v) => v.tick === header.baseline);
      if (!base) throw Object.assign(new Error(`baseline ${header.baseline} is missing`), { desync: false });
      entities = new Map(base.entities);
      track.sum = base.checksum;
    }
    let expected;
    try {
      expected = applyTracked(this.schema, entities, body instanceof Uint8Array ? body : Uint8Array.from(body), track);
    } catch (e) {
      throw Object.assign(e, { desync: true });
    }
    // The checksum of the baseline's view, with the hashes of what this body changed taken
    // out and put in: the sum of every entity's hash, as the server computes it.
    const actual = track.sum;
    if (actual !== expected) {
      throw Object.assign(new Error(`checksum mismatch at tick ${header.tick}: server ${expected}, replica ${actual}`), { desync: true });
    }
    if (header.baseline !== null) this.views = this.views.filter((v) => v.tick >= header.baseline);
    if (this.views.length >= MAX_REPLICA_HISTORY) this.views.shift();
    const view = { tick: header.tick, entities, checksum: actual };
    this.views.push(view);
    return view;
  }
}

// ---- interpolation and prediction ----------------------------------------------------------

/**
 * Keeps recent views with their arrival times and answers "which two views surround this
 * render time", so a page draws other entities smoothly `delayMs` behind the newest snapshot.
 */
export class Interpolator {
  constructor({ delayMs = 100, capacity = 32 } = {}) { this.delayMs = delayMs; this.capacity = capacity; this.buf = []; }
  push(view, atMs) {
    this.buf.push({ view, at: atMs });
    if (this.buf.length > this.capacity) this.buf.shift();
  }
  /** `{from, to, t}` for render time `nowMs` (t in 0..1), or null before two views arrived. */
  sample(nowMs) {
    const at = nowMs - this.delayMs;
    if (this.buf.length === 0) return null;
    let i = this.buf.findIndex((e) => e.at > at);
    if (i === -1) { const last = this.buf.at(-1); return { from: last.view, to: last.view, t: 1 }; }
    if (i === 0) return { from: this.buf[0].view, to: this.buf[0].view, t: 0 };
    const a = this.buf[i - 1], b = this.buf[i];
    return { from: a.view, to: b.view, t: (at - a.at) / Math.max(1, b.at - a.at) };
  }
}

/**
 * Client-side prediction: keeps the inputs not yet applied by the server and, on each snapshot,
 * replays them on the server's state with the game's own movement rule `step(state, input)`.
 */
export class Predictor {
  constructor(step, { capacity = 128 } = {}) { this.step = step; this.capacity = capacity; this.history = []; }
  /** Records an input sent with sequence number `seq`. */
  sent(seq, input) {
    this.history.push({ seq, input });
    if (this.history.length > this.capacity) this.history.shift();
  }
  /** The predicted state: `authoritative` (the server's, at the snapshot that applied input
   * `lastInputSeq`) with every later input replayed. */
  reconcile(authoritative, lastInputSeq) {
    this.history = this.history.filter((h) => h.seq > lastInputSeq);
    return this.history.reduce((s, h) => this.step(s, h.input), authoritative);
  }
  /** Inputs sent and not yet applied by the server. */
  pending() { return this.history.length; }
}

// ---- the connection ------------------------------------------------------------------------

/**
 * One connection to a Tickwire server: hello, welcome (the schema), a verified replica, acks
 * riding on inputs. Events (`on(name, fn)`): `welcome` (welcome), `snapshot` ({view, header,
 * counts}), `unapplied` (every snapshot that did not apply, with `err.desync`), `desync` (the
 * client resyncs by itself), `pong` ({nonce, tick}), `events` (server events taken, each once
 * and in order: `[{seq, type, ...fields}]`), `reconnecting` ({attempt, delayMs}),
 * `resumed` (the new welcome), `close` ({code, reason}: the connection is over for good),
 * `error`.
 *
 * When the connection drops without a close frame (a network failure: code 1006), the client
 * resumes by itself: it reconnects with backoff (`reconnect.tries` attempts, from
 * `reconnect.firstDelayMs` doubling to `reconnect.maxDelayMs`, with jitter), sends the
 * welcome's resume secret and the newest tick applied, and keeps its replica; the server
 * answers with a welcome for the same player and then snapshots from that tick on. A refused
 * resume (4010) or a close the server chose ends it with `close`.
 */
/**
 * Input timing (docs/PROTOCOL.md, "Input timing"): when to send each input so that it reaches
 * the server a small margin before the tick that applies it. Every input names its tick; every
 * snapshot says how early the newest input it applied arrived for its tick (`input_lead`,
 * negative when late). An input sent at `sent` that arrived `lead` early could have been sent
 * `lead` later, so `sent + lead` is that tick's send deadline, and tick `k + n`'s is `n` periods
 * after. Inputs go a margin before their deadline; a late input widens the margin at once
 * by how late it was (up to 2 ms) and 0.5 ms more, a long run on time narrows it slowly.
 * A snapshot reports only the newest input its tick applied, and a late input is usually
 * applied with the next one, which came on time, so its own report never comes: an input is
 * also counted late when a snapshot of the tick it named (or a later one) comes without it,
 * and the margin widens 0.5 ms for it. Times are `performance.now()` milliseconds. The Rust
 * client's `InputClock` is the same.
 */
export class InputClock {
  static MIN_MARGIN_MS = 1.5;
  static MAX_MARGIN_MS = 15;
  static START_MARGIN_MS = 3;
  constructor(tickRateHz) {
    this.periodMs = 1000 / Math.max(1, tickRateHz);
    this.sentInputs = []; // [seq, sentAt, tick, missed: a snapshot of its tick came without it]
    this.anchor = null; // {tick, at}: a tick and the latest moment an input for it can go
    this.marginMs = InputClock.START_MARGIN_MS;
    this.onTime = 0;
    this.newest = null;
    this.lastNamed = null;
    this.lastSent = null;
    this.reported = 0;
    this.late = 0;
    this.reports = 0;
  }
  deadline(tick) {
    if (!this.anchor) return null;
    const n = ((tick - this.anchor.tick) | 0);
    return this.anchor.at + n * this.periodMs;
  }
  /** Takes a snapshot's header: its tick, and the report on the newest input it applied. */
  snapshot(header) {
    if (this.newest === null || ((header.tick - this.newest) | 0) > 0) this.newest = header.tick;
    const seq = header.last_input_seq;
    // Inputs this snapshot's tick should have applied and did not: too late for their tick.
    for (const s of this.sentInputs) {
      if (s[0] > seq && !s[3] && ((header.tick - s[2]) | 0) >= 0) {
        s[3] = true;
        this.late += 1;
        this.onTime = 0;
        this.marginMs = Math.min(this.marginMs + 0.5, InputClock.MAX_MARGIN_MS);
      }
    }
    if (seq <= this.reported) return;
    this.reported = seq;
    while (this.sentInputs.length > 0 && this.sentInputs[0][0] < seq) this.sentInputs.shift();
    const first = this.sentInputs[0];
    if (!first || first[0] !== seq) return;
    const [, sentAt, named, missed] = first;
    this.reports += 1;
    const leadMs = (header.input_lead * INPUT_LEAD_UNIT_US) / 1000;
    const measured = sentAt + leadMs;
    const late = leadMs < 0;
    if (late && missed) {
      // Counted, and widened 0.5 ms, when its tick's snapshot came without it.
      this.marginMs = Math.min(this.marginMs + Math.min(-leadMs, 2), InputClock.MAX_MARGIN_MS);
    } else if (late) {
      this.late += 1;
      this.onTime = 0;
      // Wide enough for the lateness just seen (up to 2 ms: a stall is not jitter), and 0.5 ms.
      this.marginMs = Math.min(this.marginMs + Math.min(-leadMs, 2) + 0.5, InputClock.MAX_MARGIN_MS);
    } else if (++this.onTime >= 90) {
      this.onTime = 0;
      this.marginMs = Math.max(this.marginMs - 0.25, InputClock.MIN_MARGIN_MS);
    }
    const predicted = this.deadline(named);
    // A late input moves the line at once; otherwise a quarter of the error (most is jitter).
    const at = predicted === null || late ? measured : predicted + (measured - predicted) / 4;
    this.anchor = { tick: named, at };
  }
  /**
   * When to send the next input and the tick it is for, at `now`: the first tick after the
   * newest snapshot and the last input, a margin before its deadline, or now if that has
   * passed (the server counts it late and the margin widens); only a tick whose deadline passed
   * a whole period ago is given up. Before any report: a period after the last input.
   */
  next(now) {
    const after = (t) => (t === null ? 0 : (t + 1) >>> 0);
    let tick = after(this.newest);
    if (this.lastNamed !== null && ((after(this.lastNamed) - tick) | 0) > 0) tick = after(this.lastNamed);
    let deadline = this.deadline(tick);
    if (deadline === null) {
      return { at: this.lastSent === null ? now : Math.max(now, this.lastSent + this.periodMs), tick };
    }
    if (deadline + this.periodMs < now) {
      const skip = Math.ceil((now - deadline) / this.periodMs);
      tick = (tick + skip) >>> 0;
      deadline += skip * this.periodMs;
    }
    return { at: Math.max(now, deadline - this.marginMs), tick };
  }
  /** Records an input sent at `at` for `tick`. */
  sent(seq, at, tick) {
    if (this.sentInputs.length >= 64) this.sentInputs.shift();
    this.sentInputs.push([seq, at, tick, false]);
    this.lastNamed = tick;
    this.lastSent = at;
  }
}

export class TickwireClient {
  /**
   * `token`: a join token for servers that require them (sent as the subprotocol
   * `tickwire.token.<token>` beside `tickwire.v1`, since browsers cannot set headers).
   * `room`: which room to join (`joinOrCreate(filter)`, `joinRoom(id)`, `createRoom(props)`);
   * by default any room of the server's game with a free seat. The welcome's `room` is the
   * id of the room joined. `reconnect`: `{tries, firstDelayMs, maxDelayMs}`, or `false` for
   * no resume.
   */
  constructor(url, {
    name = "player", token = null, room = joinOrCreate(), WebSocketImpl = globalThis.WebSocket,
    reconnect = {},
  } = {}) {
    this.url = url;
    this.name = name;
    this.handlers = {};
    this.seq = 0;
    this.welcome = null;
    this.replica = null;
    this.applied = null; // {tick, acked}
    this.stats = { applied: 0, unapplied: 0, desyncs: 0, bytesDown: 0, bytesUp: 0, resumes: 0 };
    this.inputClock = new InputClock(30);
    this.inputTimer = null;
    this.now = () => globalThis.performance?.now() ?? Date.now();
    this.recovering = false;
    this.closeReason = "";
    this.closedByUser = false;
    this.WebSocketImpl = WebSocketImpl;
    this.reconnect = reconnect === false ? null
      : { tries: 6, firstDelayMs: 100, maxDelayMs: 3000, ...reconnect };
    this.attempt = 0;
    // Reliable events: ours until the server acknowledges them, and how far we took its.
    this.events = { out: [], lastOut: 0, taken: 0, ackOwed: false, sent: 0, received: 0, lost: 0 };
    const protocols = token ? [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token] : SUBPROTOCOL;
    this.open(url, protocols, () => ({ Hello: { version: PROTOCOL_VERSION, name, room } }));
  }
  /** Opens a WebSocket and says `first()` once it is open. */
  open(url, protocols, first) {
    const ws = new this.WebSocketImpl(url, protocols);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.send(first());
    ws.onmessage = (ev) => { if (ws === this.ws) this.receive(new Uint8Array(ev.data)); };
    ws.onclose = (ev) => { if (ws === this.ws) this.closed(ev); };
    ws.onerror = () => { if (ws === this.ws) this.emit("error", new Error("WebSocket error")); };
    this.ws = ws;
  }
  /** The connection closed: resume if it dropped and may be resumed, else report the close. */
  closed(ev) {
    const reason = ev.reason || this.closeReason;
    // 1006: the connection ended without a close frame; 4004: the server gave up on a silent
    // connection (it holds the player for a resume in both cases).
    // 1013 on a resume: the previous connection has not let go of the player yet.
    const dropped = ev.code === 1006 || ev.code === 4004 || (this.resuming && ev.code === 1013);
    const canResume = this.reconnect && !this.closedByUser && this.welcome?.resume
      && dropped && this.attempt < this.reconnect.tries;
    if (!canResume) {
      this.stopInputs();
      this.emit("close", { code: ev.code, reason });
      return;
    }
    const r = this.reconnect;
    const base = Math.min(r.maxDelayMs, r.firstDelayMs * 2 ** this.attempt);
    const delayMs = Math.round(base * (1 + Math.random() / 4));
    this.attempt += 1;
    this.emit("reconnecting", { attempt: this.attempt, delayMs });
    clearTimeout(this.ackTimer);
    setTimeout(() => this.resume(), delayMs);
  }
  /** Takes the player back on a new connection (no token: the secret stands for it). */
  resume() {
    if (this.closedByUser) return;
    const sep = this.url.includes("?") ? "&" : "?";
    const lastTick = this.applied ? this.applied.tick : null;
    this.closeReason = "";
    this.resuming = true;
    this.open(`${this.url}${sep}resume=1`, SUBPROTOCOL, () => ({
      Resume: {
        version: PROTOCOL_VERSION, secret: this.welcome.resume, last_tick: lastTick,
        events_received: this.events.taken,
      },
    }));
    // The resume carried the ack of the last tick.
    if (this.applied) this.applied.acked = true;
  }
  on(name, fn) { (this.handlers[name] ??= []).push(fn); return this; }
  emit(name, arg) { for (const fn of this.handlers[name] ?? []) fn(arg); }
  send(msg) {
    if (this.ws.readyState !== 1) return false;
    const bytes = encodeClient(msg);
    this.stats.bytesUp += bytes.length;
    this.ws.send(bytes);
    return true;
  }
  /** The game's schema (after the welcome). */
  get schema() { return this.welcome?.schema ?? null; }
  receive(bytes) {
    this.stats.bytesDown += bytes.length;
    let msg;
    try { msg = decodeServer(bytes); } catch (e) { this.emit("error", e); return; }
    const [kind, m] = Object.entries(msg)[0];
    if (kind === "Welcome") {
      this.welcome = m;
      this.attempt = 0;
      if (this.resuming) {
        // Same player, same replica: the next snapshot is a delta against the last tick
        // applied, or a full one that replaces the replica's state. Our events the server
        // has not taken go again, in order.
        this.resuming = false;
        this.stats.resumes++;
        const ev = this.events;
        ev.out = ev.out.filter(([seq]) => seq > m.events_received);
        // As many to a message as the server's 512-byte limit takes (it counts what the
        // decoded message holds: about 32 bytes an event and 8 a word).
        let chunk = [];
        let size = 64;
        const flush = () => {
          if (chunk.length === 0) return;
          this.send({ Events: { ack: ev.taken, first: chunk[0][0], events: chunk.map(([, e]) => e) } });
          chunk = []; size = 64;
        };
        for (const item of ev.out) {
          const cost = 32 + 8 * item[1].words.length;
          if (size + cost > 512) flush();
          chunk.push(item); size += cost;
        }
        flush();
        this.emit("resumed", m);
      } else {
        this.replica = new Replica(m.schema);
        this.inputClock = new InputClock(m.tick_rate_hz);
        this.emit("welcome", m);
      }
    } else if (kind === "Snapshot") {
      if (!this.replica) return;
      this.inputClock.snapshot(m.header);
      try {
        const view = this.replica.apply(m.header, m.body);
        this.recovering = false;
        this.stats.applied++;
        this.applied = { tick: m.header.tick, acked: false };
        this.scheduleAck();
        this.emit("snapshot", { view, header: m.header, counts: bodyCounts(Uint8Array.from(m.body)) });
      } catch (e) {
        this.stats.unapplied++;
        if (e.desync) this.stats.desyncs++;
        this.emit("unapplied", e);
        // Drop the replica and ask for a full snapshot; the deltas in flight until it comes
        // fail too (their baseline is gone) and are counted, not resynced again.
        if (!this.recovering) {
          this.recovering = true;
          this.replica.clear();
          this.send({ Resync: { tick: m.header.tick } });
          if (e.desync) this.emit("desync", e);
        }
      }
    } else if (kind === "Pong") {
      this.emit("pong", m);
    } else if (kind === "Events") {
      this.takeEvents(m);
    } else if (kind === "Error") {
      this.closeReason = m.message;
    }
  }
  /** A bare ack only if no input carried this snapshot's ack within half a tick. */
  scheduleAck() {
    const hz = this.welcome?.tick_rate_hz || 30;
    clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(() => {
      if (this.applied && !this.applied.acked) {
        this.applied.acked = true;
        this.send({ Ack: { tick: this.applied.tick } });
      }
      this.flushEventAck();
    }, 500 / hz);
  }
  /**
   * Sends an input given as an object of natural values by field name (`{move_x: 0.5, ...}`),
   * encoded with the schema; the newest snapshot's ack rides on it. Returns its sequence
   * number, or 0 if not connected.
   */
  sendInput(values) {
    if (!this.welcome) return 0;
    const fields = [...writeRecord(this.welcome.schema.input, encodeFields(this.welcome.schema.input, values))];
    let ack = null;
    if (this.applied && !this.applied.acked) { ack = this.applied.tick; this.applied.acked = true; }
    const seq = ++this.seq;
    const now = this.now();
    const { tick } = this.inputClock.next(now);
    // The owed acknowledgement of the server's events rides on the input: one message a tick.
    const ev = this.events;
    const events_ack = ev.ackOwed ? ev.taken : 0;
    const sent = this.send({ Input: { seq, ack, tick, events_ack, fields } });
    if (sent) {
      this.inputClock.sent(seq, now, tick);
      ev.ackOwed = false;
    }
    return sent ? seq : 0;
  }
  /**
   * Calls `produce()` once per tick, each time at the moment the input clock gives (a small
   * margin before the tick that will apply the input); `produce` sends the input with
   * `sendInput`. This is how a game should send its inputs: the round trip of an input is then
   * about one network round trip plus the tick's work, not a whole tick. Stops on close, or
   * when the returned function is called.
   */
  startInputs(produce) {
    this.stopInputs();
    const step = () => {
      if (this.ws?.readyState === 1 && this.welcome) produce();
      const { at } = this.inputClock.next(this.now());
      this.inputTimer = setTimeout(step, Math.max(0, at - this.now()));
    };
    this.inputTimer = setTimeout(step, 0);
    return () => this.stopInputs();
  }
  /** Stops the inputs `startInputs` sends. */
  stopInputs() {
    clearTimeout(this.inputTimer);
    this.inputTimer = null;
  }
  /**
   * Sends a game event of the client event type `name`, given as an object of natural values
   * by field name, reliably: kept until the server acknowledges it and sent again after a
   * resume. Returns its sequence number (0 before the welcome, or with 256 unacknowledged).
   */
  sendEvent(name, values) {
    if (!this.welcome) return 0;
    const kind = this.welcome.schema.client_events.findIndex((c) => c.name === name);
    if (kind < 0) throw new Error(`${name} is not a client event of ${this.welcome.schema.game}`);
    const ev = this.events;
    if (ev.out.length >= 256) return 0;
    const event = { kind, words: encodeFields(this.welcome.schema.client_events[kind].fields, values) };
    const seq = ++ev.lastOut;
    ev.out.push([seq, event]);
    ev.sent++;
    ev.ackOwed = false;
    this.send({ Events: { ack: ev.taken, first: seq, events: [event] } });
    return seq;
  }
  /** Takes the server's events in order (each once) and emits `events` with them decoded. */
  takeEvents(m) {
    const ev = this.events;
    ev.out = ev.out.filter(([seq]) => seq > m.ack);
    const taken = [];
    m.events.forEach((e, i) => {
      const seq = m.first + i;
      if (seq <= ev.taken) { ev.lost++; return; }
      ev.lost += seq - ev.taken - 1;
      ev.taken = seq;
      ev.received++;
      const type = this.welcome.schema.server_events[e.kind];
      taken.push({ seq, type: type.name, ...decodeFields(type.fields, e.words) });
    });
    if (taken.length > 0) {
      ev.ackOwed = true;
      this.emit("events", taken);
      this.scheduleAck();
    }
  }
  /** Acknowledges the server's events taken, if owed. */
  flushEventAck() {
    const ev = this.events;
    if (!ev.ackOwed) return;
    ev.ackOwed = false;
    this.send({ Events: { ack: ev.taken, first: ev.lastOut + 1, events: [] } });
  }
  close() { this.closedByUser = true; this.ws.close(1000, "bye"); }
}
