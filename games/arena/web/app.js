// The arena's browser page, on the Tickwire JavaScript SDK (served at /sdk/tickwire.js): the
// SDK connects, decodes every snapshot through the arena's schema, verifies its checksum and
// acks on inputs; this page adds the arena's own rules: drawing, its movement rule for
// prediction (plugged into the SDK's Predictor), and interpolation of everyone else about
// 100 ms in the past (the SDK's Interpolator). `window.tickwire` exposes its state for tests.

import {
  Interpolator, Predictor, TickwireClient, component, joinOrCreate, joinRoom, statics,
} from "/sdk/tickwire.js";

const INTERP_DELAY_MS = 100;
const VIEW_WORLD_WIDTH = 2000; // World units across the canvas.
const POS_SCALE = 2; // Position units per world unit (the schema's Position scale).

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");

let s = null; // The state of the current connection.
const keys = new Set();
let mouse = { x: 0, y: 0, down: false, clicked: false };

/** Rust's f32::round: halves away from zero. */
const roundAway = (x) => Math.sign(x) * Math.round(Math.abs(x));
const toQ = (v) => roundAway(v * POS_SCALE);

/** The arena's wall sliding, in position units (games/arena/src/map.rs). */
function slide(p, d, arena) {
  const r = arena.radius;
  const axis = (pos, delta, a) => {
    const o = 1 - a;
    let v = Math.min(Math.max(pos[a] + delta, r), arena.size[a] - r);
    for (const w of arena.walls) {
      if (pos[o] + r <= w.min[o] || pos[o] - r >= w.max[o]) continue;
      if (delta > 0 && pos[a] + r <= w.min[a] && v + r > w.min[a]) v = Math.min(v, w.min[a] - r);
      else if (delta < 0 && pos[a] - r >= w.max[a] && v - r < w.max[a]) v = Math.max(v, w.max[a] + r);
    }
    return v;
  };
  const q = [p[0], p[1]];
  q[0] = axis(q, d[0], 0);
  q[1] = axis(q, d[1], 1);
  return q;
}

/** The arena's movement rule for one input (games/arena/src/systems.rs, move_players). */
function step(arena, p, input) {
  let [mx, my] = [input.move_x, input.move_y];
  const len = Math.hypot(mx, my);
  if (len > 1) { mx /= len; my /= len; }
  if (mx === 0 && my === 0) return p;
  return slide(p, [roundAway(Math.fround(mx * arena.step)), roundAway(Math.fround(my * arena.step))], arena);
}

function arenaOf(welcome) {
  const [rules] = statics(welcome, "Rules");
  return {
    rules,
    size: [toQ(rules.width), toQ(rules.height)],
    walls: statics(welcome, "Wall").map((w) => ({ min: [toQ(w.min_x), toQ(w.min_y)], max: [toQ(w.max_x), toQ(w.max_y)], ...w })),
    radius: toQ(rules.player_radius),
    step: (rules.player_speed * POS_SCALE) / welcome.tick_rate_hz,
    tickMs: 1000 / welcome.tick_rate_hz,
  };
}

function freshState() {
  return {
    client: null, status: "connecting", welcome: null, kills: [], arena: null, predictor: null, predicted: null,
    interp: new Interpolator({ delayMs: INTERP_DELAY_MS }), rttMs: null, pings: new Map(),
    mismatches: 0, unapplied: 0, applied: 0, closeCode: null, closeReason: "", lastError: "",
    timers: [], bytesWindow: [], snapshotTimes: [], latest: null,
  };
}

/** Our player's replicated state, as the server last confirmed it. */
function own() {
  if (!s.latest || !s.welcome) return null;
  const e = s.latest.entities.get(s.welcome.player);
  if (!e) return null;
  const pos = component(s.welcome.schema, e, "Position");
  const aim = component(s.welcome.schema, e, "Aim");
  const vitals = component(s.welcome.schema, e, "Vitals");
  return pos && aim && vitals ? { ...pos, ...aim, ...vitals } : null;
}

function connect() {
  if (s) for (const t of s.timers) clearInterval(t);
  s = freshState();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  // A join token (servers with join tokens on) and a room to join by id come in the page's
  // own URL: `/?token=...&room=...`; without a room, any room with a free seat.
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const room = params.get("room") ? joinRoom(params.get("room")) : joinOrCreate();
  const client = new TickwireClient(url, { name: "browser", token, room });
  s.client = client;
  client.on("welcome", (w) => {
    s.welcome = w;
    $("room").textContent = w.room;
    s.arena = arenaOf(w);
    s.predictor = new Predictor((p, input) => step(s.arena, p, input));
    s.status = "connected";
    // One input per tick, each timed by the SDK to reach the server just before its tick.
    client.startInputs(sendInput);
    let nonce = 0;
    s.timers.push(setInterval(() => {
      nonce += 1;
      s.pings.set(nonce, performance.now());
      client.send({ Ping: { nonce } });
    }, 1000));
  });
  client.on("snapshot", ({ view, header }) => {
    const now = performance.now();
    s.applied += 1;
    s.latest = view;
    s.snapshotTimes.push(now);
    s.interp.push(view, now);
    const me = own();
    if (me) {
      // The server's position at the acknowledged input, then the inputs it has not seen.
      const server = [toQ(me.x), toQ(me.y)];
      s.predicted = me.hp > 0 ? s.predictor.reconcile(server, header.last_input_seq) : server;
    }
  });
  client.on("unapplied", (e) => {
    s.unapplied += 1;
    if (/checksum/.test(e.message)) s.mismatches += 1;
    s.lastError = e.message;
    console.error(`snapshot not applied: ${e.message}`);
  });
  client.on("pong", ({ nonce }) => {
    const sent = s.pings.get(nonce);
    if (sent !== undefined) { s.rttMs = performance.now() - sent; s.pings.delete(nonce); }
  });
  // The kill feed arrives as server events: each once, in order, across resumes too.
  client.on("events", (events) => {
    for (const e of events) {
      if (e.type !== "Kill") continue;
      s.kills.push({ killer: e.killer, victim: e.victim });
      const me = s.welcome?.player;
      const who = (id) => (id === me ? "you" : `#${id}`);
      const line = document.createElement("div");
      line.textContent = `${who(e.killer)} → ${who(e.victim)}`;
      $("feed").append(line);
      while ($("feed").childElementCount > 5) $("feed").firstChild.remove();
    }
  });
  // A dropped connection: the SDK resumes the same player by itself.
  client.on("reconnecting", ({ attempt }) => { s.status = "reconnecting"; s.reconnects = attempt; });
  client.on("resumed", (w) => {
    s.welcome = w;
    s.status = "connected";
    s.resumes = (s.resumes ?? 0) + 1;
  });
  client.on("close", ({ code, reason }) => {
    s.status = "closed";
    s.closeCode = code;
    s.closeReason = reason || s.lastError || "(no reason given)";
    for (const t of s.timers) clearInterval(t);
  });
  client.on("error", (e) => {
    if (s.status !== "closed" && s.status !== "reconnecting") s.status = "error";
    s.lastError = e.message;
  });
  const down = client.receive.bind(client);
  client.receive = (bytes) => { s.bytesWindow.push([performance.now(), bytes.length]); down(bytes); };
}

function sendInput() {
  let mx = (keys.has("d") || keys.has("arrowright") ? 1 : 0) - (keys.has("a") || keys.has("arrowleft") ? 1 : 0);
  let my = (keys.has("s") || keys.has("arrowdown") ? 1 : 0) - (keys.has("w") || keys.has("arrowup") ? 1 : 0);
  const len = Math.hypot(mx, my);
  if (len > 0) { mx /= len; my /= len; }
  let aim = 0;
  if (s.predicted) {
    const [sx, sy] = worldToScreen(s.predicted[0] / POS_SCALE, s.predicted[1] / POS_SCALE);
    aim = Math.atan2(mouse.y - sy, mouse.x - sx);
  }
  const fire = mouse.down || mouse.clicked;
  mouse.clicked = false;
  // What the server will see: the schema quantizes move to 1/127 steps.
  const input = { move_x: Math.round(mx * 127) / 127, move_y: Math.round(my * 127) / 127, aim, fire };
  const seq = s.client.sendInput(input);
  if (!seq) return;
  s.predictor.sent(seq, input);
  const me = own();
  if (s.predicted && me && me.hp > 0) s.predicted = step(s.arena, s.predicted, input);
}

// ---- drawing ---------------------------------------------------------------------------------

let camera = { x: 0, y: 0, scale: 1 };

function worldToScreen(x, y) {
  return [(x - camera.x) * camera.scale + canvas.width / 2, (y - camera.y) * camera.scale + canvas.height / 2];
}

/** Players and projectiles as they were `INTERP_DELAY_MS` ago. */
function interpolated(now) {
  const sample = s.interp.sample(now);
  const players = new Map();
  const projectiles = [];
  if (!sample) return { players, projectiles };
  const { from, to, t } = sample;
  const schema = s.welcome.schema;
  const renderTick = from.tick + (to.tick - from.tick) * t;
  for (const [id, sb] of to.entities) {
    const pb = component(schema, sb, "Position");
    if (pb) {
      const sa = from.entities.get(id);
      const pa = (sa && component(schema, sa, "Position")) || pb;
      const aim = component(schema, sb, "Aim");
      const vitals = component(schema, sb, "Vitals");
      players.set(id, {
        x: pa.x + (pb.x - pa.x) * t, y: pa.y + (pb.y - pa.y) * t,
        aim: aim ? aim.aim : 0, hp: vitals ? vitals.hp : 0, score: vitals ? vitals.score : 0,
      });
      continue;
    }
    const shot = component(schema, sb, "Shot");
    if (shot) {
      // A shot never changes: it is at origin + velocity * age (velocity in position units).
      const age = renderTick - shot.born;
      projectiles.push({ x: shot.x + (shot.vx * age) / POS_SCALE, y: shot.y + (shot.vy * age) / POS_SCALE });
    }
  }
  return { players, projectiles };
}

function draw(now) {
  requestAnimationFrame(draw);
  if (canvas.width !== innerWidth || canvas.height !== innerHeight) { canvas.width = innerWidth; canvas.height = innerHeight; }
  ctx.fillStyle = "#111418";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  updateHud(now);
  if (!s.welcome) return;
  const w = s.welcome;
  const rules = s.arena.rules;
  camera.scale = canvas.width / VIEW_WORLD_WIDTH;
  if (s.predicted) { camera.x = s.predicted[0] / POS_SCALE; camera.y = s.predicted[1] / POS_SCALE; }
  const [ax, ay] = worldToScreen(0, 0);
  ctx.fillStyle = "#1d2330";
  ctx.fillRect(ax, ay, rules.width * camera.scale, rules.height * camera.scale);
  ctx.fillStyle = "#4c566a";
  for (const r of s.arena.walls) {
    const [x, y] = worldToScreen(r.min_x, r.min_y);
    ctx.fillRect(x, y, (r.max_x - r.min_x) * camera.scale, (r.max_y - r.min_y) * camera.scale);
  }
  if (w.visibility !== "Global" && s.predicted) {
    const [cx, cy] = worldToScreen(camera.x, camera.y);
    ctx.strokeStyle = "rgba(136,192,208,.25)";
    ctx.beginPath(); ctx.arc(cx, cy, w.visibility.Aoi.radius * camera.scale, 0, 2 * Math.PI); ctx.stroke();
  }
  const world = interpolated(now);
  const r = rules.player_radius * camera.scale;
  ctx.fillStyle = "#ebcb8b";
  for (const p of world.projectiles) {
    const [x, y] = worldToScreen(p.x, p.y);
    ctx.beginPath(); ctx.arc(x, y, Math.max(2, rules.projectile_radius * camera.scale), 0, 2 * Math.PI); ctx.fill();
  }
  const me = own();
  for (const [id, p] of world.players) {
    const mine = id === w.player;
    const pos = mine && s.predicted ? [s.predicted[0] / POS_SCALE, s.predicted[1] / POS_SCALE] : [p.x, p.y];
    const aim = mine && me ? me.aim : p.aim;
    const hp = mine && me ? me.hp : p.hp;
    const [x, y] = worldToScreen(pos[0], pos[1]);
    ctx.globalAlpha = hp > 0 ? 1 : 0.3;
    ctx.fillStyle = mine ? "#88c0d0" : "#d08770";
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = "#eceff4";
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + Math.cos(aim) * r * 1.8, y + Math.sin(aim) * r * 1.8); ctx.stroke();
    ctx.fillStyle = "#bf616a"; ctx.fillRect(x - r, y - r - 8, 2 * r, 4);
    ctx.fillStyle = "#a3be8c"; ctx.fillRect(x - r, y - r - 8, (2 * r * hp) / 100, 4);
    ctx.globalAlpha = 1;
  }
  const rows = [...world.players.entries()].sort((a, b) => b[1].score - a[1].score).slice(0, 8);
  $("scores").innerHTML = "<b>score</b><br>" + rows.map(([id, p]) => `${id === w.player ? "you" : "#" + id}: ${p.score}`).join("<br>");
}

function playersInView() {
  if (!s.latest || !s.welcome) return [];
  return [...s.latest.entities].filter(([, e]) => component(s.welcome.schema, e, "Position"));
}

function updateHud(now) {
  const st = $("status");
  st.textContent = s.status;
  st.dataset.s = s.status;
  $("rtt").textContent = s.rttMs === null ? "-" : `${s.rttMs.toFixed(0)} ms`;
  $("tick").textContent = s.latest ? s.latest.tick : "-";
  $("players").textContent = s.latest ? playersInView().length : "-";
  s.bytesWindow = s.bytesWindow.filter(([t]) => now - t < 1000);
  s.snapshotTimes = s.snapshotTimes.filter((t) => now - t < 1000);
  $("rate").textContent = s.snapshotTimes.length;
  const bytes = s.bytesWindow.reduce((n, [, b]) => n + b, 0);
  $("bytes").textContent = `${(bytes / 1024).toFixed(1)} KiB/s`;
  $("mismatches").textContent = s.mismatches;
  $("unapplied").textContent = s.unapplied;
  $("errors").textContent = pageErrors;
  const closed = s.status === "closed";
  $("closed").textContent = closed ? `closed: ${s.closeCode} ${s.closeReason}` : "";
  $("reconnect").style.display = closed || s.status === "error" ? "block" : "none";
}

// ---- input ---------------------------------------------------------------------------------

addEventListener("keydown", (e) => { keys.add(e.key.toLowerCase()); });
addEventListener("keyup", (e) => { keys.delete(e.key.toLowerCase()); });
addEventListener("blur", () => keys.clear());
canvas.addEventListener("mousemove", (e) => { mouse.x = e.clientX; mouse.y = e.clientY; });
canvas.addEventListener("mousedown", () => { mouse.down = true; mouse.clicked = true; });
addEventListener("mouseup", () => { mouse.down = false; });
$("reconnect").addEventListener("click", connect);

// ---- the debug hook --------------------------------------------------------------------------

// Exceptions anywhere in the page count, and show, rather than vanish into the console.
let pageErrors = 0;
addEventListener("error", () => { pageErrors += 1; });
addEventListener("unhandledrejection", () => { pageErrors += 1; });

window.tickwire = {
  /** The kill feed taken, in order: [{killer, victim}]. */
  get kills() { return s.kills; },
  get resumes() { return s.resumes ?? 0; },
  get player() { return s.welcome ? s.welcome.player : null; },
  get room() { return s.welcome ? s.welcome.room : null; },
  get status() { return s.status; },
  get closeCode() { return s.closeCode; },
  get closeReason() { return s.closeReason; },
  get tick() { return s.latest ? s.latest.tick : null; },
  get mismatches() { return s.mismatches; },
  /** Snapshots that could not be applied, for any reason. */
  get unapplied() { return s.unapplied; },
  /** Snapshots applied and verified since this connection opened. */
  get applied() { return s.applied; },
  /** The SDK's input timing: inputs the server reported on, how many of them were late,
   * and the margin the clock keeps before each tick. */
  get inputTiming() {
    const c = s.client?.inputClock;
    return c ? { reports: c.reports, late: c.late, marginMs: c.marginMs } : null;
  },
  /** Uncaught exceptions and rejections in the page. */
  get errors() { return pageErrors; },
  get snapshotsPerSecond() { return s.snapshotTimes.length; },
  /** Our player as the server last confirmed it, in world units. */
  get ownPosition() { const me = own(); return me ? { x: me.x, y: me.y, hp: me.hp } : null; },
  /** Other players in the replica, in world units. */
  get others() {
    if (!s.welcome) return [];
    return playersInView().filter(([id]) => id !== s.welcome.player)
      .map(([id, e]) => { const p = component(s.welcome.schema, e, "Position"); return { id, x: p.x, y: p.y }; });
  },
};

connect();
requestAnimationFrame(draw);
