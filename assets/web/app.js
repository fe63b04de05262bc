// The Tickwire browser client: connects with the WebSocket API (binary protocol tickwire.v1),
// keeps a verified replica of its view (acking each snapshot), predicts its own player and
// reconciles with the server's acknowledged input, interpolates everyone else about 100 ms in
// the past, and draws the arena on a canvas. `window.tickwire` exposes its state for tests.

import {
  AIM_STEPS, POS_SCALE, PROTOCOL_VERSION, Replica, decodeServer, encodeClient, projectileAt,
} from "./protocol.js";

const INTERP_DELAY_MS = 100;
const VIEW_WORLD_WIDTH = 2000; // World units across the canvas.

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");

let s = null; // The state of the current connection.
const keys = new Set();
let mouse = { x: 0, y: 0, down: false, clicked: false };

function freshState() {
  return {
    ws: null, status: "connecting", welcome: null, replica: new Replica(), seq: 0, pending: [],
    predicted: null, views: [], pings: new Map(), rttMs: null, mismatches: 0, closeCode: null,
    closeReason: "", lastError: "", timers: [], bytesWindow: [], snapshotTimes: [],
    // Every snapshot that could not be applied, for any reason (and undecodable messages).
    unapplied: 0, applied: 0, recovering: false,
  };
}

/** Rust's f32::round: halves away from zero. */
const roundAway = (x) => Math.sign(x) * Math.round(Math.abs(x));

function toQ(v) { return roundAway(v * POS_SCALE); }

/** The server's wall sliding, in position units (server/src/sim/map.rs). */
function slide(p, d, r, arena) {
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

function arenaOf(w) {
  return {
    size: [toQ(w.arena.width), toQ(w.arena.height)],
    walls: w.arena.walls.map((r) => ({ min: [toQ(r.min_x), toQ(r.min_y)], max: [toQ(r.max_x), toQ(r.max_y)] })),
    radius: toQ(w.arena.player_radius),
    step: (w.arena.player_speed * POS_SCALE) / w.tick_rate_hz,
  };
}

function stepOf(move, arena) {
  return [roundAway(move[0] * arena.step), roundAway(move[1] * arena.step)];
}

function send(msg) {
  if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(encodeClient(msg));
}

function own() {
  const v = s.replica.latest();
  const e = v && s.welcome && v.entities.get(s.welcome.player);
  return e && e.Player ? e.Player : null;
}

function connect() {
  if (s) for (const t of s.timers) clearInterval(t);
  s = freshState();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const ws = new WebSocket(url, "tickwire.v1");
  ws.binaryType = "arraybuffer";
  s.ws = ws;
  ws.onopen = () => {
    s.status = "handshaking";
    send({ Hello: { version: PROTOCOL_VERSION, name: "browser" } });
  };
  ws.onmessage = (ev) => {
    const bytes = new Uint8Array(ev.data);
    const now = performance.now();
    s.bytesWindow.push([now, bytes.length]);
    let msg;
    try {
      msg = decodeServer(bytes);
    } catch (e) {
      s.unapplied += 1;
      s.lastError = `undecodable message: ${e.message}`;
      console.error(s.lastError);
      return;
    }
    if (msg.Welcome) onWelcome(msg.Welcome);
    else if (msg.Snapshot) onSnapshot(msg.Snapshot, now);
    else if (msg.Pong) {
      const sent = s.pings.get(msg.Pong.nonce);
      if (sent !== undefined) { s.rttMs = now - sent; s.pings.delete(msg.Pong.nonce); }
    } else if (msg.Error) s.lastError = `${msg.Error.code}: ${msg.Error.message}`;
  };
  ws.onclose = (ev) => {
    s.status = "closed";
    s.closeCode = ev.code;
    s.closeReason = ev.reason || s.lastError || "(no reason given)";
    for (const t of s.timers) clearInterval(t);
  };
  ws.onerror = () => { if (s.status !== "closed") s.status = "error"; };
}

function onWelcome(w) {
  s.welcome = w;
  s.arena = arenaOf(w);
  s.status = "connected";
  const tickMs = 1000 / w.tick_rate_hz;
  s.tickMs = tickMs;
  s.timers.push(setInterval(sendInput, tickMs));
  let nonce = 0;
  s.timers.push(setInterval(() => { nonce += 1; s.pings.set(nonce, performance.now()); send({ Ping: { nonce } }); }, 1000));
}

function onSnapshot(snap, now) {
  let view;
  try {
    view = s.replica.apply(snap.header, snap.body);
  } catch (e) {
    s.unapplied += 1;
    s.lastError = `snapshot ${snap.header.tick} not applied: ${e.message}`;
    if (/checksum/.test(e.message)) s.mismatches += 1;
    // Deltas that follow a failure are against the replica we drop here: they fail too, and
    // count, until the full snapshot we ask for arrives.
    if (!s.recovering) {
      console.error(s.lastError);
      s.recovering = true;
      s.replica.clear();
      send({ Resync: { tick: snap.header.tick } });
    }
    return;
  }
  s.recovering = false;
  s.applied += 1;
  send({ Ack: { tick: snap.header.tick } });
  s.snapshotTimes.push(now);
  s.views.push({ tick: view.tick, at: now, entities: view.entities });
  while (s.views.length > 30) s.views.shift();
  reconcile(snap.header.last_input_seq);
}

/** Server position of our player at the acknowledged input, then the inputs it has not seen. */
function reconcile(ackedSeq) {
  const me = own();
  if (!me) return;
  s.pending = s.pending.filter((p) => p.seq > ackedSeq);
  let p = [me.x, me.y];
  if (me.hp > 0) for (const input of s.pending) p = slide(p, stepOf(input.move, s.arena), s.arena.radius, s.arena);
  s.predicted = p;
}

function sendInput() {
  const me = own();
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
  s.seq += 1;
  send({ Input: { seq: s.seq, move_x: mx, move_y: my, aim, fire } });
  s.pending.push({ seq: s.seq, move: [mx, my] });
  if (s.pending.length > 120) s.pending.shift();
  if (s.predicted && me && me.hp > 0) s.predicted = slide(s.predicted, stepOf([mx, my], s.arena), s.arena.radius, s.arena);
}

// ---- drawing ---------------------------------------------------------------------------------

let camera = { x: 0, y: 0, scale: 1 };

function worldToScreen(x, y) {
  return [(x - camera.x) * camera.scale + canvas.width / 2, (y - camera.y) * camera.scale + canvas.height / 2];
}

/** Entities as they were `INTERP_DELAY_MS` ago, interpolated between the two views around then. */
function interpolated(now) {
  const vs = s.views;
  if (vs.length === 0) return { tick: 0, players: new Map(), projectiles: [] };
  const last = vs[vs.length - 1];
  const renderTick = last.tick + (now - last.at) / s.tickMs - INTERP_DELAY_MS / s.tickMs;
  let a = vs[0], b = vs[0];
  for (const v of vs) { if (v.tick <= renderTick) a = v; if (v.tick >= renderTick) { b = v; break; } b = v; }
  const t = b.tick === a.tick ? 0 : Math.min(Math.max((renderTick - a.tick) / (b.tick - a.tick), 0), 1);
  const players = new Map();
  const projectiles = [];
  for (const [id, sb] of b.entities) {
    const sa = a.entities.get(id);
    if (sb.Player) {
      const pa = sa && sa.Player ? sa.Player : sb.Player;
      players.set(id, {
        x: (pa.x + (sb.Player.x - pa.x) * t) / POS_SCALE, y: (pa.y + (sb.Player.y - pa.y) * t) / POS_SCALE,
        aim: (sb.Player.aim * 2 * Math.PI) / AIM_STEPS, hp: sb.Player.hp, score: sb.Player.score,
      });
    } else if (sb.Projectile) {
      const p = projectileAt(sb.Projectile, renderTick);
      projectiles.push({ x: p.x / POS_SCALE, y: p.y / POS_SCALE, owner: sb.Projectile.owner });
    }
  }
  return { tick: renderTick, players, projectiles };
}

function draw(now) {
  requestAnimationFrame(draw);
  if (canvas.width !== innerWidth || canvas.height !== innerHeight) { canvas.width = innerWidth; canvas.height = innerHeight; }
  ctx.fillStyle = "#111418";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  updateHud(now);
  if (!s.welcome) return;
  const w = s.welcome;
  camera.scale = canvas.width / VIEW_WORLD_WIDTH;
  if (s.predicted) { camera.x = s.predicted[0] / POS_SCALE; camera.y = s.predicted[1] / POS_SCALE; }
  // Arena and walls.
  const [ax, ay] = worldToScreen(0, 0);
  ctx.fillStyle = "#1d2330";
  ctx.fillRect(ax, ay, w.arena.width * camera.scale, w.arena.height * camera.scale);
  ctx.fillStyle = "#4c566a";
  for (const r of w.arena.walls) {
    const [x, y] = worldToScreen(r.min_x, r.min_y);
    ctx.fillRect(x, y, (r.max_x - r.min_x) * camera.scale, (r.max_y - r.min_y) * camera.scale);
  }
  if (w.visibility !== "Global" && s.predicted) {
    const [cx, cy] = worldToScreen(camera.x, camera.y);
    ctx.strokeStyle = "rgba(136,192,208,.25)";
    ctx.beginPath(); ctx.arc(cx, cy, w.visibility.Aoi.radius * camera.scale, 0, 2 * Math.PI); ctx.stroke();
  }
  const world = interpolated(now);
  const r = w.arena.player_radius * camera.scale;
  ctx.fillStyle = "#ebcb8b";
  for (const p of world.projectiles) {
    const [x, y] = worldToScreen(p.x, p.y);
    ctx.beginPath(); ctx.arc(x, y, Math.max(2, w.arena.projectile_radius * camera.scale), 0, 2 * Math.PI); ctx.fill();
  }
  const me = own();
  for (const [id, p] of world.players) {
    const mine = id === w.player;
    const pos = mine && s.predicted ? [s.predicted[0] / POS_SCALE, s.predicted[1] / POS_SCALE] : [p.x, p.y];
    const aim = mine && me ? (me.aim * 2 * Math.PI) / AIM_STEPS : p.aim;
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
  // Scores of the players in view.
  const rows = [...world.players.entries()].sort((a, b) => b[1].score - a[1].score).slice(0, 8);
  $("scores").innerHTML = "<b>score</b><br>" + rows.map(([id, p]) => `${id === w.player ? "you" : "#" + id}: ${p.score}`).join("<br>");
}

function updateHud(now) {
  const st = $("status");
  st.textContent = s.status;
  st.dataset.s = s.status;
  $("rtt").textContent = s.rttMs === null ? "-" : `${s.rttMs.toFixed(0)} ms`;
  const v = s.replica.latest();
  $("tick").textContent = v ? v.tick : "-";
  let players = 0;
  if (v) for (const e of v.entities.values()) if (e.Player) players += 1;
  $("players").textContent = v ? players : "-";
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
  get status() { return s.status; },
  get closeCode() { return s.closeCode; },
  get closeReason() { return s.closeReason; },
  get tick() { const v = s.replica.latest(); return v ? v.tick : null; },
  get mismatches() { return s.mismatches; },
  /** Snapshots (and messages) that could not be applied, for any reason. */
  get unapplied() { return s.unapplied; },
  /** Snapshots applied and verified since this connection opened. */
  get applied() { return s.applied; },
  /** Uncaught exceptions and rejections in the page. */
  get errors() { return pageErrors; },
  get snapshotsPerSecond() { return s.snapshotTimes.length; },
  /** Our player as the server last confirmed it, in world units. */
  get ownPosition() { const me = own(); return me ? { x: me.x / POS_SCALE, y: me.y / POS_SCALE, hp: me.hp } : null; },
  /** Other players in the replica, in world units. */
  get others() {
    const v = s.replica.latest();
    if (!v || !s.welcome) return [];
    return [...v.entities].filter(([id, e]) => e.Player && id !== s.welcome.player)
      .map(([id, e]) => ({ id, x: e.Player.x / POS_SCALE, y: e.Player.y / POS_SCALE }));
  },
};

connect();
requestAnimationFrame(draw);
