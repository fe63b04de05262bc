// Cross-language codec check: every golden vector written by the Rust codec
// (tests/golden/vectors.json) must decode to its message and re-encode to the same bytes, and
// the replica vectors must apply with matching checksums. Run by `cargo test` (tests/golden.rs)
// with node's built-in test runner; no browser needed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  decodeClient, decodeServer, encodeClient, encodeServer, entityHash, Replica,
} from "../../assets/web/protocol.js";

const vectors = JSON.parse(readFileSync(new URL("../golden/vectors.json", import.meta.url), "utf8"));

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));

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

test("golden vectors cover every message type", () => {
  const names = new Set(vectors.messages.map((v) => Object.keys(v.json)[0]));
  for (const n of ["Hello", "Input", "Ack", "Ping", "Welcome", "Snapshot", "Pong", "Error"]) {
    assert.ok(names.has(n), `no vector for ${n}`);
  }
});

for (const [i, v] of vectors.messages.entries()) {
  const name = Object.keys(v.json)[0];
  test(`vector ${i} (${v.direction} ${name}: ${v.note}) decodes and re-encodes byte for byte`, () => {
    const bytes = unhex(v.hex);
    const decode = v.direction === "client" ? decodeClient : decodeServer;
    const encode = v.direction === "client" ? encodeClient : encodeServer;
    const msg = decode(bytes);
    sameValue(msg, v.json, name);
    assert.equal(hex(encode(msg)), v.hex, "re-encoding the decoded message");
    assert.equal(hex(encode(v.json)), v.hex, "encoding the JSON form");
  });
}

test("malformed bytes are errors, not garbage", () => {
  const snapshot = vectors.messages.find((v) => Object.keys(v.json)[0] === "Snapshot");
  const bytes = unhex(snapshot.hex);
  for (let cut = 0; cut < bytes.length; cut++) {
    assert.throws(() => decodeServer(bytes.subarray(0, cut)), `cut at ${cut}`);
  }
  assert.throws(() => decodeServer(new Uint8Array([...bytes, 0])), /trailing/);
  assert.throws(() => decodeServer(new Uint8Array([9])), /variant/);
});

test("entity hashes match the protocol document's test vectors", () => {
  assert.equal(entityHash(1, { Player: { x: 4, y: 8, aim: 256, hp: 100, score: 1 } }), 0xfd808e73);
  assert.equal(
    entityHash(9, { Projectile: { x: 400, y: 800, vx: -120, vy: 3, born: 77, owner: 1 } }),
    0xaf554b5b,
  );
});

test("the replica applies a full snapshot and deltas with the server's checksums", () => {
  const r = new Replica();
  for (const hexed of vectors.replica) {
    const msg = decodeServer(unhex(hexed));
    r.apply(msg.Snapshot.header, msg.Snapshot.body);
  }
  const last = decodeServer(unhex(vectors.replica.at(-1))).Snapshot;
  assert.equal(r.latest().tick, last.header.tick);
  // A wrong checksum is detected and leaves the replica as it was.
  const before = r.latest();
  const bad = { ...last.body, checksum: (last.body.checksum + 1) >>> 0 };
  assert.throws(() => r.apply({ ...last.header, tick: last.header.tick + 1 }, bad), /checksum/);
  assert.equal(r.latest(), before);
});
