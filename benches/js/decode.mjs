// How long the JavaScript SDK takes to apply one snapshot to a replica (decode the body, check
// the checksum), per snapshot and per entity, on the arena's schema.
//
//   node benches/js/decode.mjs [SDK] [--players N] [--runs R]
//
// SDK is the module to measure (default: sdk/js/tickwire.js), so an older SDK can be measured
// in the same sitting: `git show <commit>:sdk/js/tickwire.js > /tmp/base.js`, then this with
// /tmp/base.js. The world is N players (Position, Aim, Vitals) and N/5 shots (Position, Shot)
// that move every tick, as in the arena; each snapshot is a delta against the tick before (a
// client that acknowledges every snapshot), encoded by the SDK's own encoder (whose bytes the
// golden vectors hold equal to the server's). Every snapshot is verified by the replica: a
// wrong decoder fails here, it does not look fast. Prints one JSON line: the best of R runs.
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve } from "node:path";

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} takes a positive integer`);
  args.splice(i, 2);
  return v;
};
const players = flag("--players", 1000);
const runs = flag("--runs", 20);
const root = fileURLToPath(new URL("../..", import.meta.url));
const sdkPath = resolve(args[0] ?? `${root}/sdk/js/tickwire.js`);
const tw = await import(pathToFileURL(sdkPath).href);

const vectors = JSON.parse(readFileSync(`${root}/tests/golden/vectors.json`, "utf8"));
const unhex = (h) => Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16)));
const schema = tw.decodeServer(unhex(vectors.games.arena.welcome.hex)).Welcome.schema;
const names = schema.components.map((c) => c.name).join(",");
if (names !== "Position,Aim,Vitals,Shot") throw new Error(`the arena's components changed: ${names}`);

// A fixed pseudo-random sequence, so every run measures the same bodies.
let seed = 7;
const rnd = (n) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
const clamp = (v) => Math.min(65535, Math.max(0, v));
const shots = Math.floor(players / 5);
let world = new Map();
for (let id = 1; id <= players; id++) {
  world.set(id, { mask: 0b0111, words: [rnd(60000), rnd(60000), rnd(1024), 100, rnd(50)] });
}
for (let id = players + 1; id <= players + shots; id++) {
  world.set(id, { mask: 0b1001, words: [rnd(60000), rnd(60000), rnd(60000), rnd(60000), rnd(1000) - 500, rnd(1000) - 500, rnd(100), rnd(players) + 1] });
}
const TICKS = 40;
const views = [world];
for (let t = 0; t < TICKS; t++) {
  const next = new Map();
  for (const [id, s] of world) {
    const w = s.words.slice();
    w[0] = clamp(w[0] + rnd(33) - 16);
    w[1] = clamp(w[1] + rnd(33) - 16);
    if (s.mask === 0b0111) {
      if (rnd(4) === 0) w[2] = (w[2] + rnd(21) - 10 + 1024) % 1024;
      if (rnd(50) === 0) w[3] = rnd(101);
    }
    next.set(id, { mask: s.mask, words: w });
  }
  world = next;
  views.push(world);
}
const full = tw.writeBody(schema, new Map(), views[0], tw.viewChecksum(views[0]));
const bodies = [];
for (let t = 1; t <= TICKS; t++) {
  bodies.push(tw.writeBody(schema, views[t - 1], views[t], tw.viewChecksum(views[t])));
}

let best = Infinity;
for (let run = 0; run < runs; run++) {
  const replica = new tw.Replica(schema);
  replica.apply({ tick: 1, baseline: null }, full);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < bodies.length; i++) replica.apply({ tick: i + 2, baseline: i + 1 }, bodies[i]);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / bodies.length;
  best = Math.min(best, us);
  const last = replica.latest().entities;
  if (last.size !== players + shots || last.get(1).words[0] !== views[TICKS].get(1).words[0]) {
    throw new Error("the replica does not hold the last view");
  }
}
const entities = players + shots;
const bytes = bodies.reduce((a, b) => a + b.length, 0) / bodies.length;
console.log(JSON.stringify({
  sdk: sdkPath.startsWith(root) ? sdkPath.slice(root.length) : sdkPath,
  node: process.version,
  entities,
  body_bytes: Math.round(bytes),
  us_per_snapshot: Number(best.toFixed(1)),
  ns_per_entity: Math.round((best * 1000) / entities),
}));
