// Cross-language check of the JavaScript SDK against the Rust codec: every golden vector
// written by tests/golden.rs (tests/golden/vectors.json) must decode to its message and
// re-encode to the same bytes; bodies must apply with the server's checksums, give the same
// views as the Rust replica, and re-encode from the two views byte for byte; inputs must
// encode from the schema to the same bytes. Run by `cargo test` with node's test runner.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  applyBody, decodeClient, decodeFields, decodeServer, encodeClient, encodeFields, encodeServer,
  entityHash, readRecord, Replica, viewChecksum, writeBody, writeRecord, component, statics,
  Predictor, Interpolator, joinOrCreate, joinRoom, createRoom, InputClock, INPUT_LEAD_UNIT_US,
  BitReader, BitWriter,
} from "../../sdk/js/tickwire.js";

const vectors = JSON.parse(readFileSync(new URL("../golden/vectors.json", import.meta.url), "utf8"));

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const toView = (rows) => new Map(rows.map(([id, mask, words]) => [id, { mask, words }]));
const fromView = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([id, s]) => [id, s.mask, s.words]);

/** Deep equality where numbers compare as f32 (JSON carries f32 values as short decimals). */
function sameValue(a, b, path = "") {
  if (typeof a === "number" && typeof b === "number") {
    assert.ok(a === b || Math.fround(a) === Math.fround(b), `${path}: ${a} != ${b}`);
  } else if (Array.isArray(a)) {
    assert.ok(Array.isArray(b) && a.length === b.length, `${path}: array lengths differ`);
    a.forEach((x, i) => sameValue(x, b[i], `${path}[${i}]`));
  } else if (a !== null && typeof a === "object") {
    assert.ok(b !== null && typeof b === "object", `${path}: not an object`);
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${path}: keys differ`);
    for (const k of Object.keys(a)) sameValue(a[k], b[k], `${path}.${k}`);
  } else {
    assert.equal(a, b, path);
  }
}

test("golden vectors cover every message type and at least one game", () => {
  const names = new Set(vectors.messages.map((v) => Object.keys(v.json)[0]));
  for (const n of ["Hello", "Input", "Ack", "Ping", "Resync", "Resume", "Snapshot", "Pong", "Error"]) {
    assert.ok(names.has(n), `no vector for ${n}`);
  }
  assert.ok(Object.keys(vectors.games).length >= 1);
});

for (const [i, v] of vectors.messages.entries()) {
  const name = Object.keys(v.json)[0];
  test(`message ${i} (${v.direction} ${name}: ${v.note}) decodes and re-encodes byte for byte`, () => {
    const bytes = unhex(v.hex);
    const decode = v.direction === "client" ? decodeClient : decodeServer;
    const encode = v.direction === "client" ? encodeClient : encodeServer;
    const msg = decode(bytes);
    sameValue(msg, v.json, name);
    assert.equal(hex(encode(msg)), v.hex, "re-encoding the decoded message");
    assert.equal(hex(encode(v.json)), v.hex, "encoding the JSON form");
  });
}

test("entity hashes match the Rust ones", () => {
  for (const h of vectors.hashes) {
    assert.equal(entityHash(h.id, { mask: h.mask, words: h.words }), h.hash);
  }
});

test("the synthetic schema's bodies apply and re-encode byte for byte", () => {
  const s = vectors.synthetic;
  const base = toView(s.base), cur = toView(s.cur);
  const full = new Map();
  assert.equal(applyBody(s.schema, full, unhex(s.full_hex)), viewChecksum(base));
  sameValue(fromView(full), s.base, "full");
  const view = new Map(base);
  assert.equal(applyBody(s.schema, view, unhex(s.delta_hex)), viewChecksum(cur));
  sameValue(fromView(view), s.cur, "delta");
  // The same change in three sections (as a server builds bodies from grid cells).
  const sectioned = new Map(base);
  assert.equal(applyBody(s.schema, sectioned, unhex(s.sections_hex)), viewChecksum(cur));
  sameValue(fromView(sectioned), s.cur, "sections");
  const cutSections = unhex(s.sections_hex);
  for (let cut = 0; cut < cutSections.length; cut++) {
    assert.throws(() => applyBody(s.schema, new Map(base), cutSections.subarray(0, cut)), `cut ${cut}`);
  }
  assert.equal(hex(writeBody(s.schema, new Map(), base, viewChecksum(base))), s.full_hex);
  assert.equal(hex(writeBody(s.schema, base, cur, viewChecksum(cur))), s.delta_hex);
  // Typed access: a string and a wrapped angle come back as natural values.
  assert.equal(component(s.schema, cur.get(2), "Tag").name, "bye");
  assert.equal(component(s.schema, cur.get(2), "Body"), null);
  // Hostile bytes: every truncation and trailing byte is an error.
  const bytes = unhex(s.delta_hex);
  for (let cut = 0; cut < bytes.length; cut++) {
    assert.throws(() => applyBody(s.schema, new Map(base), bytes.subarray(0, cut)), `cut ${cut}`);
  }
  assert.throws(() => applyBody(s.schema, new Map(base), new Uint8Array([...bytes, 0])));
});

for (const [game, g] of Object.entries(vectors.games)) {
  test(`${game}: the welcome decodes (schema and static data) and re-encodes`, () => {
    const msg = decodeServer(unhex(g.welcome.hex));
    sameValue(msg, g.welcome.json, "Welcome");
    assert.equal(hex(encodeServer(msg)), g.welcome.hex);
    assert.equal(msg.Welcome.schema.game, game);
  });

  test(`${game}: ${g.snapshots.length} snapshots apply with the server's checksums and re-encode`, () => {
    const welcome = decodeServer(unhex(g.welcome.hex)).Welcome;
    const r = new Replica(welcome.schema);
    let deltas = 0;
    for (const [k, f] of g.snapshots.entries()) {
      const { Snapshot: s } = decodeServer(unhex(f.hex));
      assert.equal(hex(encodeServer({ Snapshot: s })), f.hex, `frame ${k}`);
      const base = s.header.baseline === null
        ? new Map()
        : r.views.find((v) => v.tick === s.header.baseline).entities;
      const view = r.apply(s.header, s.body);
      if (f.view) sameValue(fromView(view.entities), f.view, `frame ${k}`);
      // The replica keeps the checksum as entities change: the same as hashing them all.
      assert.equal(view.checksum, viewChecksum(view.entities), `frame ${k} checksum`);
      for (const [id, e] of view.entities) {
        if (e.hash !== undefined) assert.equal(e.hash, entityHash(id, e), `frame ${k} entity ${id}`);
      }
      assert.equal(hex(writeBody(welcome.schema, base, view.entities, viewChecksum(view.entities))), hex(s.body), `frame ${k} re-encoded`);
      deltas += s.header.baseline === null ? 0 : 1;
    }
    assert.ok(deltas > 10, "deltas were exercised");
    // A wrong checksum is detected and leaves the replica as it was.
    const last = decodeServer(unhex(g.snapshots.at(-1).hex)).Snapshot;
    const before = r.latest();
    const body = [...last.body];
    body[body.length - 1] ^= 1;
    assert.throws(() => r.apply({ ...last.header, tick: last.header.tick + 1 }, body), /checksum/);
    assert.equal(r.latest(), before);
  });

  test(`${game}: inputs encode from the schema byte for byte`, () => {
    const { schema } = decodeServer(unhex(g.welcome.hex)).Welcome;
    for (const i of g.inputs) {
      assert.equal(hex(writeRecord(schema.input, i.words)), i.hex);
      assert.deepEqual(readRecord(schema.input, unhex(i.hex)), i.words);
      // Natural values and back give the same words.
      assert.deepEqual(encodeFields(schema.input, decodeFields(schema.input, i.words)), i.words);
    }
    assert.ok(g.inputs.length > 0);
  });
}

test("arena static data reads as natural values", () => {
  const welcome = decodeServer(unhex(vectors.games.arena.welcome.hex)).Welcome;
  const [rules] = statics(welcome, "Rules");
  assert.equal(rules.player_speed, 250);
  assert.ok(statics(welcome, "Wall").length > 0);
});

test("prediction replays the inputs after the acknowledged one; interpolation brackets", () => {
  const p = new Predictor((x, dx) => x + dx);
  p.sent(1, 5); p.sent(2, 7); p.sent(3, 11);
  assert.equal(p.reconcile(100, 1), 118);
  assert.equal(p.pending(), 2);
  const i = new Interpolator({ delayMs: 0 });
  assert.equal(i.sample(0), null);
  i.push({ tick: 1 }, 0); i.push({ tick: 2 }, 100);
  const s = i.sample(25);
  assert.equal(s.from.tick, 1); assert.equal(s.to.tick, 2); assert.equal(s.t, 0.25);
});

test("a join token is offered as a subprotocol beside the format, never alone", async () => {
  const { TickwireClient, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX } = await import("../../sdk/js/tickwire.js");
  const opened = [];
  class FakeSocket {
    constructor(url, protocols) { opened.push({ url, protocols }); this.readyState = 0; }
    send() {}
  }
  new TickwireClient("ws://127.0.0.1:1/ws", { WebSocketImpl: FakeSocket });
  new TickwireClient("ws://127.0.0.1:1/ws", { token: "abc-_9", WebSocketImpl: FakeSocket });
  assert.deepEqual(opened[0].protocols, SUBPROTOCOL);
  assert.deepEqual(opened[1].protocols, [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + "abc-_9"]);
  assert.equal(opened[1].url, "ws://127.0.0.1:1/ws", "the token stays out of the URL");
});

test("the room request helpers build what the Rust codec encodes", () => {
  const hellos = vectors.messages.filter((v) => v.direction === "client" && "Hello" in v.json);
  const made = {
    JoinOrCreate: (m) => joinOrCreate(Object.fromEntries(m.filter), m.game),
    Join: (m) => joinRoom(m.id),
    Create: (m) => createRoom(Object.fromEntries(m.props), m.game),
  };
  const seen = new Set();
  for (const v of hellos) {
    const [kind, m] = Object.entries(v.json.Hello.room)[0];
    seen.add(kind);
    const hello = { Hello: { ...v.json.Hello, room: made[kind](m) } };
    assert.equal(hex(encodeClient(hello)), v.hex, kind);
  }
  assert.deepEqual([...seen].sort(), ["Create", "Join", "JoinOrCreate"]);
});

test("events are taken once and in order, acknowledged, and sent again after a resume", async () => {
  const { TickwireClient } = await import("../../sdk/js/tickwire.js");
  const opened = [];
  class FakeSocket {
    constructor(url, protocols) { this.url = url; this.protocols = protocols; this.readyState = 0; this.sent = []; opened.push(this); }
    send(bytes) { this.sent.push(decodeClient(bytes)); }
    open() { this.readyState = 1; this.onopen(); }
    deliver(msg) { this.onmessage({ data: encodeServer(msg).buffer }); }
  }
  const welcome = vectors.games.whiteboard.welcome.json.Welcome;
  const client = new TickwireClient("ws://127.0.0.1:1/ws", {
    WebSocketImpl: FakeSocket, reconnect: { tries: 2, firstDelayMs: 1, maxDelayMs: 1 },
  });
  const taken = [];
  client.on("events", (es) => taken.push(...es));
  const first = opened[0];
  first.open();
  assert.ok("Hello" in first.sent[0]);
  first.deliver({ Welcome: { ...welcome, resume: "secret-1", events_received: 0 } });
  const say = welcome.schema.client_events.findIndex((c) => c.name === "Say");
  const chat = welcome.schema.server_events.findIndex((c) => c.name === "Chat");
  assert.ok(say >= 0 && chat >= 0, "the whiteboard declares its chat events");

  assert.equal(client.sendEvent("Say", { text: "one" }), 1);
  assert.deepEqual(first.sent.at(-1).Events.first, 1);
  const line = (text) => ({ kind: chat, words: encodeFields(welcome.schema.server_events[chat].fields, { from: 7, text }) });
  first.deliver({ Events: { ack: 1, first: 1, events: [line("x"), line("y")] } });
  assert.deepEqual(taken.map((e) => [e.seq, e.type, e.from, e.text]), [[1, "Chat", 7, "x"], [2, "Chat", 7, "y"]]);
  client.flushEventAck();
  assert.deepEqual(first.sent.at(-1), { Events: { ack: 2, first: 2, events: [] } }, "the ack of both");
  // A client that sends inputs acknowledges on its next input instead: one message, no Events.
  first.deliver({ Events: { ack: 1, first: 3, events: [line("w")] } });
  const before = first.sent.length;
  const seq = client.sendInput({ x: 1, y: 2, down: false, colour: 3, width: 4, clear: false });
  assert.ok(seq > 0);
  assert.equal(first.sent.length, before + 1, "the input alone");
  assert.equal(first.sent.at(-1).Input.events_ack, 3, "the events ack rode on the input");
  client.flushEventAck();
  assert.equal(first.sent.length, before + 1, "nothing more was owed");
  client.sendInput({ x: 1, y: 2, down: false, colour: 3, width: 4, clear: false });
  assert.equal(first.sent.at(-1).Input.events_ack, 0, "acknowledged once");
  assert.equal(client.sendEvent("Say", { text: "two" }), 2);

  // The connection drops: the client resumes with what it took, and sends again what the
  // server had not taken.
  first.onclose({ code: 1006, reason: "", wasClean: false });
  await new Promise((r) => setTimeout(r, 50));
  const second = opened[1];
  assert.ok(second.url.endsWith("?resume=1"));
  second.open();
  assert.deepEqual(second.sent[0], {
    Resume: { version: welcome.version, secret: "secret-1", last_tick: null, events_received: 3 },
  });
  second.deliver({ Welcome: { ...welcome, resume: "secret-2", events_received: 1 } });
  const again = second.sent.at(-1).Events;
  assert.equal(again.first, 2, "only the event the server had not taken");
  assert.equal(again.events.length, 1);
  // The server goes on after what the client took (its resume said 3).
  second.deliver({ Events: { ack: 2, first: 4, events: [line("z")] } });
  assert.deepEqual(taken.map((e) => e.text), ["x", "y", "w", "z"]);
  assert.equal(client.events.lost, 0);
  assert.equal(client.stats.resumes, 1);
});

test("the input clock settles inputs a margin before their tick, like the Rust one", () => {
  // A server ticking every period from t0 takes, at tick n, the inputs that arrived by
  // t0 + n periods; the network takes oneWay each way.
  const period = 1000 / 30, oneWay = 0.3, t0 = 1000;
  const clock = new InputClock(30);
  clock.snapshot({ tick: 0, baseline: null, last_input_seq: 0, input_lead: 0 });
  let now = t0 + period / 3, tick = 0;
  const early = [];
  for (let seq = 1; seq <= 300; seq++) {
    const { at, tick: k } = clock.next(now);
    assert.ok(at >= now, "never in the past");
    now = at;
    clock.sent(seq, at, k);
    const leadMs = t0 + k * period - (at + oneWay);
    const lead = Math.trunc((leadMs * 1000) / INPUT_LEAD_UNIT_US);
    early.push(leadMs);
    const applied = lead < 0 ? k + 1 : k;
    // A late one's own tick's snapshot comes first, without it.
    if (lead < 0 && k > tick) clock.snapshot({ tick: k, baseline: null, last_input_seq: seq - 1, input_lead: 0 });
    tick = Math.max(tick, applied);
    now = Math.max(now, t0 + tick * period + 1.5 * oneWay);
    clock.snapshot({ tick, baseline: null, last_input_seq: seq, input_lead: lead });
  }
  const settled = early.slice(30);
  assert.ok(settled.every((ms) => ms >= 0), `none late after settling: ${settled}`);
  assert.ok(Math.max(...settled) < 5, `a margin early, not a tick: ${Math.max(...settled)} ms`);
  assert.equal(clock.late, 0);
  // A late report widens the margin at once.
  const before = clock.marginMs;
  const { at, tick: k } = clock.next(now);
  clock.sent(301, at, k);
  clock.snapshot({ tick: k + 1, baseline: null, last_input_seq: 301, input_lead: -20 });
  // 2 ms late: wider by that and half a millisecond.
  assert.ok(Math.abs(clock.marginMs - Math.min(before + 2.5, InputClock.MAX_MARGIN_MS)) < 1e-9);
});

test("an input missing from its tick's snapshot is late though no report says so, like the Rust clock", () => {
  const period = 1000 / 30, t = 1000;
  const clock = new InputClock(30);
  const header = (tick, seq, lead) => ({ tick, baseline: null, last_input_seq: seq, input_lead: lead });
  clock.sent(1, t, 10);
  clock.snapshot(header(10, 1, 20)); // 2 ms early
  assert.deepEqual([clock.late, clock.reports], [0, 1]);
  const before = clock.marginMs;
  clock.sent(2, t + period, 11);
  // Tick 11's snapshot comes without input 2: it came too late for its tick.
  clock.snapshot(header(11, 1, 20));
  assert.equal(clock.late, 1);
  assert.ok(Math.abs(clock.marginMs - (before + 0.5)) < 1e-9);
  // Tick 12 applies inputs 2 and 3 and reports on 3 (on time): input 2 is counted once.
  clock.sent(3, t + 2 * period, 12);
  clock.snapshot(header(12, 3, 15));
  clock.snapshot(header(13, 3, 15));
  assert.deepEqual([clock.late, clock.reports], [1, 2]);
  // Counted so, then reported late itself: counted once, the margin takes on its lateness.
  clock.sent(4, t + 3 * period, 14);
  clock.snapshot(header(14, 3, 15));
  assert.equal(clock.late, 2);
  const missed = clock.marginMs;
  clock.snapshot(header(15, 4, -10)); // 1 ms late
  assert.deepEqual([clock.late, clock.reports], [2, 3]);
  assert.ok(Math.abs(clock.marginMs - (missed + 1)) < 1e-9);
  // A snapshot of a tick before the one an input named says nothing about it.
  clock.sent(5, t + 5 * period, 17);
  clock.snapshot(header(16, 4, -10));
  assert.equal(clock.late, 2);
});

test("the bit reader reads what a bit-by-bit reader reads, at every offset, and refuses what it refuses", () => {
  // The reference: one bit at a time, as the SDK read before it read a byte at a time.
  class Slow {
    constructor(b) { this.b = b; this.pos = 0; }
    get(n) {
      if (n > this.b.length * 8 - this.pos) throw new Error("truncated body");
      let v = 0;
      for (let k = 0; k < n; k++, this.pos++) v += ((this.b[this.pos >> 3] >> (this.pos & 7)) & 1) * 2 ** k;
      return v;
    }
    gamma() {
      let k = 0;
      while (this.get(1) === 0) if (++k > 33) throw new Error("bad gamma code");
      return 2 ** k + this.get(k);
    }
  }
  let seed = 3;
  const rnd = (n) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
  const outcome = (f) => { try { return f(); } catch (e) { return e.message; } };
  let errors = 0;
  for (let round = 0; round < 400; round++) {
    // Random bytes, sometimes with long zero runs (gamma codes of every length, and too long).
    const bytes = Uint8Array.from({ length: 1 + rnd(12) }, () => (rnd(3) === 0 ? 0 : rnd(256)));
    const fast = new BitReader(bytes), slow = new Slow(bytes);
    for (let step = 0; step < 12; step++) {
      const n = rnd(34);
      const op = rnd(2) === 0 ? (r) => r.get(n) : (r) => r.gamma();
      const a = outcome(() => op(fast)), b = outcome(() => op(slow));
      assert.equal(a, b, `round ${round} step ${step}`);
      if (typeof b === "string") { errors++; break; }
      assert.equal(fast.pos, slow.pos);
    }
  }
  assert.ok(errors > 50, `errors were exercised: ${errors}`);
  // A gamma code of 33 zeros is read; one of 34 is refused.
  const w = new BitWriter();
  w.put(0, 33); w.put(1, 1); w.put(0, 33);
  assert.equal(new BitReader(w.finish()).gamma(), 2 ** 33);
  const long = new BitWriter();
  long.put(0, 34); long.put(1, 1); long.put(0, 30);
  assert.throws(() => new BitReader(long.finish()).gamma(), /bad gamma code/);
});
