// The whiteboard's browser page, on the Tickwire JavaScript SDK (/sdk/tickwire.js): the SDK
// connects, decodes the board through the whiteboard's schema and verifies every snapshot;
// this page draws strokes and cursors and sends the pointer as the input (pen down while the
// button is held). `window.tickwire` exposes its state for tests.

import { TickwireClient, component, joinOrCreate, joinRoom, statics } from "/sdk/tickwire.js";

const COLOURS = ["#2e3440", "#bf616a", "#d08770", "#ebcb8b", "#a3be8c", "#88c0d0", "#5e81ac", "#b48ead",
  "#8fbcbb", "#81a1c1", "#4c566a", "#d8dee9", "#e5e9f0", "#3b4252", "#a3be8c", "#bf616a"];

const $ = (id) => document.getElementById(id);
const canvas = $("board");
const ctx = canvas.getContext("2d");

let s = null;
const pointer = { x: 0, y: 0, down: false, inside: false };
let colour = 0, width = 3, clearRequested = false;
let pageErrors = 0;

function fresh() {
  return { client: null, status: "connecting", welcome: null, chat: [], size: 4096, latest: null, applied: 0,
    unapplied: 0, mismatches: 0, closeCode: null, closeReason: "", timers: [], snapshotTimes: [] };
}

function connect() {
  if (s) for (const t of s.timers) clearInterval(t);
  s = fresh();
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
    s.size = statics(w, "Board")[0].size;
    s.status = "connected";
    // One input per tick, each timed by the SDK to reach the server just before its tick.
    client.startInputs(sendInput);
  });
  client.on("snapshot", ({ view }) => {
    s.latest = view;
    s.applied += 1;
    s.snapshotTimes.push(performance.now());
  });
  client.on("unapplied", (e) => {
    s.unapplied += 1;
    if (/checksum/.test(e.message)) s.mismatches += 1;
    console.error(`snapshot not applied: ${e.message}`);
  });
  // Chat lines arrive as server events: each once, in order, across resumes too.
  client.on("events", (events) => {
    for (const e of events) {
      if (e.type !== "Chat") continue;
      s.chat.push({ from: e.from, text: e.text });
      const line = document.createElement("div");
      line.textContent = `${e.from === s.welcome?.player ? "me" : `#${e.from}`}: ${e.text}`;
      $("lines").append(line);
      while ($("lines").childElementCount > 50) $("lines").firstChild.remove();
      $("lines").scrollTop = $("lines").scrollHeight;
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
    s.closeReason = reason || "(no reason given)";
    for (const t of s.timers) clearInterval(t);
  });
  client.on("error", () => {
    if (s.status !== "closed" && s.status !== "reconnecting") s.status = "error";
  });
}

function sendInput() {
  const scale = s.size / canvas.width;
  s.client.sendInput({
    x: pointer.x * scale, y: pointer.y * scale, down: pointer.down && pointer.inside,
    colour, width, clear: clearRequested,
  });
  clearRequested = false;
}

/** Strokes and cursors of the newest view. */
function board() {
  const strokes = [], cursors = [];
  if (!s.latest || !s.welcome) return { strokes, cursors };
  const schema = s.welcome.schema;
  for (const [id, e] of s.latest.entities) {
    const st = component(schema, e, "Stroke");
    if (st) { strokes.push(st); continue; }
    const c = component(schema, e, "Cursor");
    if (c) cursors.push({ id, ...c, ...component(schema, e, "Pen"), ...component(schema, e, "Name") });
  }
  return { strokes, cursors };
}

function draw(now) {
  requestAnimationFrame(draw);
  const side = Math.min(innerWidth, innerHeight);
  if (canvas.style.width !== `${side}px`) { canvas.style.width = `${side}px`; canvas.style.height = `${side}px`; }
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const k = canvas.width / s.size;
  const { strokes, cursors } = board();
  ctx.lineCap = "round";
  for (const st of strokes) {
    ctx.strokeStyle = COLOURS[st.colour];
    ctx.lineWidth = Math.max(1, st.width * k);
    ctx.beginPath(); ctx.moveTo(st.x0 * k, st.y0 * k); ctx.lineTo(st.x1 * k, st.y1 * k); ctx.stroke();
  }
  for (const c of cursors) {
    const mine = s.welcome && c.id === s.welcome.player;
    ctx.fillStyle = COLOURS[c.colour];
    ctx.globalAlpha = mine ? 1 : 0.7;
    ctx.beginPath(); ctx.arc(c.x * k, c.y * k, c.down ? 5 : 3, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#2e3440";
    ctx.fillText(mine ? "you" : c.name, c.x * k + 7, c.y * k - 7);
    ctx.globalAlpha = 1;
  }
  s.snapshotTimes = s.snapshotTimes.filter((t) => now - t < 1000);
  const st = $("status");
  st.textContent = s.status;
  st.dataset.s = s.status;
  $("players").textContent = cursors.length;
  $("strokes").textContent = strokes.length;
  $("rate").textContent = s.snapshotTimes.length;
  $("mismatches").textContent = s.mismatches;
  $("unapplied").textContent = s.unapplied;
  $("errors").textContent = pageErrors;
  const closed = s.status === "closed";
  $("closed").textContent = closed ? `closed: ${s.closeCode} ${s.closeReason}` : "";
  $("reconnect").style.display = closed || s.status === "error" ? "block" : "none";
}

// ---- input ---------------------------------------------------------------------------------

const toCanvas = (e) => {
  const r = canvas.getBoundingClientRect();
  pointer.x = Math.min(Math.max(((e.clientX - r.left) / r.width) * canvas.width, 0), canvas.width - 1);
  pointer.y = Math.min(Math.max(((e.clientY - r.top) / r.height) * canvas.height, 0), canvas.height - 1);
  pointer.inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
};
addEventListener("pointermove", toCanvas);
canvas.addEventListener("pointerdown", (e) => { toCanvas(e); pointer.down = true; });
addEventListener("pointerup", () => { pointer.down = false; });
$("say").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || !s.client || !e.target.value) return;
  s.client.sendEvent("Say", { text: e.target.value });
  e.target.value = "";
});
addEventListener("keydown", (e) => {
  if (document.activeElement === $("say")) return; // typing a chat line
  if (e.key >= "1" && e.key <= "9") colour = Number(e.key) - 1;
  else if (e.key === "[") width = Math.max(1, width - 1);
  else if (e.key === "]") width = Math.min(31, width + 1);
  else if (e.key.toLowerCase() === "c") clearRequested = true;
  renderPalette();
});
function renderPalette() {
  $("palette").innerHTML = "";
  COLOURS.slice(0, 9).forEach((c, i) => {
    const b = document.createElement("button");
    b.style.background = c;
    b.className = i === colour ? "on" : "";
    b.title = `colour ${i + 1}`;
    b.onclick = () => { colour = i; renderPalette(); };
    $("palette").append(b);
  });
}
$("reconnect").addEventListener("click", connect);
addEventListener("error", () => { pageErrors += 1; });
addEventListener("unhandledrejection", () => { pageErrors += 1; });

window.tickwire = {
  /** Chat lines taken, in order: [{from, text}]. */
  get chat() { return s.chat; },
  /** Says a chat line (a reliable client event). */
  say(text) { return s.client.sendEvent("Say", { text }); },
  get resumes() { return s.resumes ?? 0; },
  get room() { return s.welcome ? s.welcome.room : null; },
  get status() { return s.status; },
  get game() { return s.welcome ? s.welcome.schema.game : null; },
  get applied() { return s.applied; },
  get unapplied() { return s.unapplied; },
  get mismatches() { return s.mismatches; },
  get errors() { return pageErrors; },
  get strokes() { return board().strokes.length; },
  /** Other players' cursors, board units. */
  get others() {
    return board().cursors.filter((c) => !s.welcome || c.id !== s.welcome.player).map((c) => ({ id: c.id, x: c.x, y: c.y }));
  },
};

renderPalette();
connect();
requestAnimationFrame(draw);
