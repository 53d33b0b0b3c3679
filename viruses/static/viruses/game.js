// Covid Clicker — the game page.
//
// The server is the single source of truth: it picks each virus's position and look,
// and every change reaches this page as a WebSocket push carrying a global `seq`.
// The page therefore never draws from the answer to its own action (that would show the
// virus twice); it only applies pushes, in seq order, and replaces its whole state from a
// snapshot whenever it (re)connects or detects a gap it cannot fill.
//
// Loaded as <script type="module">: strict mode, deferred, nothing leaks to globals.
// The seq rules live in feed.js and the actions (socket, else HTTP) in actions.js, neither
// touching the DOM; this file draws and talks to the server.

import { Actions, failureMessage } from "./actions.js";
import { Board } from "./board.js";
import { Events } from "./events.js";
import { Feed, messagesOf } from "./feed.js";
import { bdi } from "./names.js";
import { closeNotice, nextRetry, roomRefusal } from "./reconnect.js";
import { RoomCard, RoomEntry } from "./rooms.js";
import { Rounds } from "./rounds.js";
import { Sound } from "./sound.js";

const KIND_NAMES = ["green", "pink", "yellow", "purple", "blue", "orange"];

// A room's page (/r/<code>/) plays in that room: its API and socket, the same messages.
const ROOM = document.body.dataset.room || "";
const API_URL = ROOM ? `/api/rooms/${ROOM}/viruses/` : "/api/viruses/";
const WS_URL =
  (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + (ROOM ? `/ws/rooms/${ROOM}/` : "/ws/viruses/");

const STABLE_AFTER_MS = 10000; // a connection that lived this long resets the backoff
const POP_MS = 420; // matches the longest "dying" animation in game.css
const TOAST_MS = 3200;
const HTTP_REFRESH_MIN_GAP_MS = 5000;

const $ = (selector) => document.querySelector(selector);
const playground = $("#playground");
const addButton = $("#add-virus");
const onlineCount = $("#online-count");
const connectionStatus = $("#connection-status");
const connectionLabel = connectionStatus.querySelector(".label");
const emptyState = $("#empty-state");
const aliveCount = $("#alive-count");
const toast = $("#toast");
const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

const state = {
  viruses: new Map(), // id -> live <button>; dying nodes are already gone from here
  rendered: false, // false until the first snapshot has been drawn (no spawn animation for it)
};

// Ids we asked to kill; repeated taps on them are ignored until the push removes them.
const pendingKills = new Set();

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

// Small stable hash so each virus keeps the same tilt and bobbing phase in every window.
function hashOf(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

function clampPercent(value) {
  const n = Number(value);
  return Number.isFinite(n) ? Math.min(100, Math.max(0, n)) : 50;
}

function normaliseVirus(raw) {
  if (!raw || typeof raw.id !== "string" || raw.id === "") return null;
  const kind = Number.isInteger(raw.kind) && raw.kind >= 0 ? raw.kind % KIND_NAMES.length : 0;
  return { id: raw.id, kind, x: clampPercent(raw.x), y: clampPercent(raw.y) };
}

function createVirusButton(virus) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "virus";
  button.dataset.virusId = virus.id;
  button.dataset.kind = String(virus.kind);
  button.setAttribute("aria-label", `Kill ${KIND_NAMES[virus.kind]} virus`);

  const h = hashOf(virus.id);
  const style = button.style;
  style.setProperty("--x", String(virus.x));
  style.setProperty("--y", String(virus.y));
  style.setProperty("--tilt", `${(h % 31) - 15}deg`);
  style.setProperty("--bob-delay", `${-((h >>> 5) % 3000)}ms`);
  style.setProperty("--bob-duration", `${2400 + ((h >>> 12) % 1400)}ms`);

  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#virus-${virus.kind}`);
  svg.append(use);
  button.append(svg);
  return button;
}

// Adding a virus we already have is a no-op (contract: idempotent creates).
function addVirus(raw, { animate = true, delayMs = 0 } = {}) {
  const virus = normaliseVirus(raw);
  if (!virus || state.viruses.has(virus.id)) return;
  const button = createVirusButton(virus);
  if (animate && !reducedMotion.matches) {
    button.classList.add("is-new");
    if (delayMs) button.style.setProperty("--spawn-delay", `${delayMs}ms`);
  }
  state.viruses.set(virus.id, button);
  positions.set(button, virus);
  insertInReadingOrder(button, virus);
  fitSoon();
}

// ---------------------------------------------------------------------------
// A dish you can read: reading order for the keyboard, sizes that never hide a virus
// ---------------------------------------------------------------------------

const positions = new WeakMap(); // live button -> its virus ({x, y} in percent)
const ROW_BAND = 12; // percent of the dish's height per row of the Tab order (the server's spacing)
const FIT_MARGIN = 0.9; // a virus's round button stays this far inside half the gap to its neighbour

function readsBefore(a, b) {
  const rowA = Math.floor(a.y / ROW_BAND);
  const rowB = Math.floor(b.y / ROW_BAND);
  return rowA !== rowB ? rowA < rowB : a.x < b.x;
}

// Tab goes through the viruses in rows from the top, left to right, as the eye does,
// whatever order they were created in.
function insertInReadingOrder(button, virus) {
  for (const other of playground.querySelectorAll("button[data-virus-id]")) {
    const at = positions.get(other);
    if (other !== button && at && readsBefore(virus, at)) {
      playground.insertBefore(button, other);
      return;
    }
  }
  playground.append(button);
}

// The server keeps viruses apart, but a crowded dish on a small screen can still be too
// tight for their full size: shrink them all just enough that no round button covers the
// centre of another (each centre then stays a click target).
const probe = Object.assign(document.createElement("div"), { className: "virus-probe" });
playground.append(probe);
let fitQueued = false;
function fitSoon() {
  if (fitQueued) return;
  fitQueued = true;
  requestAnimationFrame(fitViruses);
}

function fitViruses() {
  fitQueued = false;
  const base = probe.getBoundingClientRect().width;
  const { width, height } = playground.getBoundingClientRect();
  // Positions map into the dish inset by one virus; the full size gives the tightest spread.
  const w = Math.max(0, width - base) / 100;
  const h = Math.max(0, height - base) / 100;
  const points = [...state.viruses.values()].map((b) => positions.get(b)).filter(Boolean);
  let closest = Infinity;
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dx = (points[i].x - points[j].x) * w;
      const dy = (points[i].y - points[j].y) * h;
      closest = Math.min(closest, dx * dx + dy * dy);
    }
  }
  const fit = 2 * FIT_MARGIN * Math.sqrt(closest);
  if (fit < base) playground.style.setProperty("--virus-fit", `${Math.max(12, Math.floor(fit))}px`);
  else playground.style.removeProperty("--virus-fit");
}

new ResizeObserver(fitSoon).observe(playground);

// Killing a virus we lack is a no-op. The virus leaves the state at once; only its
// node lingers for the pop, stripped of data-virus-id so scripts and tests never
// mistake a dying virus for a live one.
function removeVirus(id, { animate = true } = {}) {
  const button = state.viruses.get(id);
  if (!button) return;
  state.viruses.delete(id);
  pendingKills.delete(id);
  fitSoon();

  const hadFocus = document.activeElement === button;
  const next = hadFocus ? nearestVirus(button) : null;

  delete button.dataset.virusId;
  button.classList.remove("is-new", "is-hit");
  button.disabled = true;
  button.tabIndex = -1;
  button.setAttribute("aria-hidden", "true");

  // Keyboard players keep their place: focus moves to the closest remaining virus.
  if (hadFocus) (next ?? addButton).focus({ preventScroll: true });

  if (!animate || reducedMotion.matches || document.hidden) {
    button.remove();
    return;
  }
  button.classList.add("is-dying");
  setTimeout(() => button.remove(), POP_MS);
}

// The last virus squashed: a short celebration (the toast says who did it, politely).
function celebrateClearDish(message) {
  if (message.by) showToast("Dish cleared by ", bdi(message.by.name), "!");
  else showToast("Dish cleared!");
  if (reducedMotion.matches) return;
  playground.classList.remove("is-cleared");
  void playground.offsetWidth; // restart the animation if it is still running
  playground.classList.add("is-cleared");
  setTimeout(() => playground.classList.remove("is-cleared"), 1300);
}

function nearestVirus(from) {
  const a = from.getBoundingClientRect();
  let best = null;
  let bestDistance = Infinity;
  for (const other of state.viruses.values()) {
    if (other === from) continue;
    const b = other.getBoundingClientRect();
    const d = (a.x - b.x) ** 2 + (a.y - b.y) ** 2;
    if (d < bestDistance) {
      bestDistance = d;
      best = other;
    }
  }
  return best;
}

function updateCounters() {
  const n = state.viruses.size;
  if (feed.seq === null) {
    emptyState.textContent = "Looking for viruses…";
    emptyState.hidden = false;
    aliveCount.textContent = "\u00a0";
    return;
  }
  emptyState.hidden = n > 0;
  emptyState.textContent = "All clear! Press + to release a virus.";
  aliveCount.textContent = n === 1 ? "1 virus alive" : `${n} viruses alive`;
}

function setOnline(count) {
  if (!Number.isInteger(count) || count < 0) return;
  onlineCount.dataset.online = String(count);
  // One inline wrapper, so the pill's flex layout doesn't split the sentence into
  // separate boxes (innerText would then read "3\nplayers online").
  const text = document.createElement("span");
  text.append(
    Object.assign(document.createElement("b"), { textContent: String(count) }),
    count === 1 ? " player online" : " players online",
  );
  onlineCount.replaceChildren(text);
}

const STATUS_LABELS = { open: "Connected", connecting: "Reconnecting…", closed: "Offline" };

// `notice`: why the server closed the socket, shown instead of the label until the next state.
function setStatus(next, notice = "") {
  document.body.dataset.connection = next;
  if (connectionStatus.dataset.state === next && state.rendered && !notice) return;
  connectionStatus.dataset.state = next;
  connectionStatus.dataset.notice = notice ? "true" : "";
  // Before the first snapshot this is the first connection, not a reconnection.
  const label = next === "connecting" && !state.rendered ? "Connecting…" : STATUS_LABELS[next];
  connectionLabel.textContent = notice ? `${notice}, retrying…` : label;
}

// ---------------------------------------------------------------------------
// Applying server state: snapshots and seq-ordered changes
// ---------------------------------------------------------------------------

// A snapshot replaces everything: viruses it lacks go, missing ones come; the feed then
// applies the buffered changes it does not include. `live`: it came over the socket.
function applySnapshot(message, { live = true } = {}) {
  if (!Array.isArray(message.viruses) || !Number.isInteger(message.seq)) return;
  const firstRender = !state.rendered;
  const incoming = new Map();
  for (const raw of message.viruses) {
    const virus = normaliseVirus(raw);
    if (virus) incoming.set(virus.id, raw);
  }

  for (const id of [...state.viruses.keys()]) {
    if (!incoming.has(id)) removeVirus(id, { animate: !firstRender });
  }
  // First paint: a quick staggered pop-in (capped so big dishes don't crawl in).
  const step = firstRender ? Math.min(40, 600 / Math.max(1, incoming.size)) : 0;
  let i = 0;
  for (const raw of incoming.values()) addVirus(raw, { animate: true, delayMs: Math.round(i++ * step) });

  state.rendered = true;
  feed.snapshot(message.seq, { live });
  if (Number.isInteger(message.online)) setOnline(message.online);
  board.snapshot(message);
  roomCard?.room(message.room);
  rounds?.snapshot(message);
  events.presence(message);
  updateCounters();
}

function applyChange(message) {
  if (message.type === "virus.created") {
    addVirus(message.virus);
    const virus = normaliseVirus(message.virus);
    if (virus) events.created(message, KIND_NAMES[virus.kind]);
    sound.play("spawn");
  } else if (message.type === "virus.killed" && typeof message.id === "string") {
    const kind = state.viruses.get(message.id)?.dataset.kind;
    removeVirus(message.id);
    board.killed(message); // in seq order, after the snapshot: each of our kills counts once
    events.killed(message, kind === undefined ? "" : KIND_NAMES[Number(kind)]);
    sound.play("squash");
    if (state.viruses.size === 0) celebrateClearDish(message);
  }
}

const feed = new Feed({
  apply: applyChange,
  resync: () => socket.send({ type: "resync" }),
  wedged: () => socket.restart(),
});

function handleMessage(message) {
  switch (message?.type) {
    case "snapshot":
      applySnapshot(message);
      socket.notice = "";
      setStatus("open");
      break;
    case "virus.created":
    case "virus.killed":
      feed.receive(message);
      updateCounters();
      break;
    case "presence":
      setOnline(message.online);
      events.presence(message);
      break;
    case "leaderboard":
      board.leaderboard(message);
      break;
    case "room":
      roomCard?.room(message.room);
      break;
    case "round":
      rounds?.message(message);
      break;
    case "ack":
      actions.answer(message);
      break;
    case "error":
      // An answer to one of our actions, or to something else we sent.
      if (!actions.answer(message)) console.warn("Server says:", message.error);
      break;
    default:
      break; // unknown types are ignored so the server can add new ones safely
  }
}

// ---------------------------------------------------------------------------
// WebSocket with reconnect (exponential backoff, full jitter)
// ---------------------------------------------------------------------------

const socket = {
  ws: null,
  attempt: 0,
  retryTimer: 0,
  stableTimer: 0,
  stopped: false, // page is being hidden for good (navigation): do not reconnect
  notice: "", // why the server refused the last socket (reconnect.js), until the next snapshot

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    if (this.ws || this.stopped) return;
    // Offline we still try (localhost works without a network) but say "Offline".
    setStatus(navigator.onLine ? "connecting" : "closed", this.notice);

    let ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (error) {
      console.warn("WebSocket failed to start:", error);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    feed.reset();

    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.stableTimer = setTimeout(() => (this.attempt = 0), STABLE_AFTER_MS);
    });
    ws.addEventListener("message", (event) => {
      // A frame carries one message or, when the server had several ready, an array of them.
      for (const message of messagesOf(event.data)) {
        if (this.ws !== ws) return;
        handleMessage(message);
      }
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.detach();
      const refusal = roomRefusal(event.code);
      if (refusal) {
        this.stopped = true;
        showRefusal(event.code, refusal);
        return;
      }
      this.scheduleReconnect(event.code);
    });
    // "error" is always followed by "close"; nothing to do here.
  },

  // Forget the current socket (if any) without triggering its reconnect path.
  detach() {
    clearTimeout(this.stableTimer);
    feed.reset();
    actions.lost();
    this.ws = null;
  },

  // `code`: the close code of the socket that went (reconnect.js says how long to wait).
  scheduleReconnect(code = 0) {
    if (this.stopped || this.retryTimer) return;
    this.notice = closeNotice(code); // said until a snapshot arrives
    setStatus(navigator.onLine ? "connecting" : "closed", this.notice);
    const { delayMs, attempt } = nextRetry(code, this.attempt);
    this.attempt = attempt;
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
    refreshOverHttp();
  },

  // Reconnect right now if there is no socket (used on "online" and tab visible).
  connectNow() {
    if (this.ws || this.stopped) return;
    this.connect();
  },

  restart() {
    const old = this.ws;
    this.detach();
    if (old) {
      try {
        old.close(4000, "client restart");
      } catch {
        /* already closing */
      }
    }
    this.connect();
  },

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  },
};

window.addEventListener("online", () => {
  socket.attempt = 0;
  socket.connectNow();
});
window.addEventListener("offline", () => {
  // A live socket (say, to localhost) may well survive; only an idle one is "Offline".
  if (!feed.live) setStatus("closed");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") socket.connectNow();
});
// Leaving the page: close quietly instead of flashing "Reconnecting…".
window.addEventListener("pagehide", (event) => {
  if (!event.persisted) socket.stopped = true;
});
// Restored from the back/forward cache: the old socket is gone, start again.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    socket.stopped = false;
    socket.restart();
  }
});

// While the live feed is down, a plain GET keeps the dish roughly current. It only
// ever applies when no socket snapshot is in charge and it is newer than what we show.
let lastHttpRefresh = -Infinity;
async function refreshOverHttp({ force = false } = {}) {
  const now = performance.now();
  if (feed.live || (!force && now - lastHttpRefresh < HTTP_REFRESH_MIN_GAP_MS)) return;
  lastHttpRefresh = now;
  try {
    const response = await fetch(API_URL, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    if (feed.live || !Number.isInteger(data?.seq)) return;
    if (feed.seq === null || data.seq > feed.seq) applySnapshot(data, { live: false });
  } catch {
    /* server unreachable: the reconnect loop keeps trying */
  }
}

// ---------------------------------------------------------------------------
// Actions: add and kill over the socket, over HTTP while it is down
// ---------------------------------------------------------------------------

const actions = new Actions({ send: (message) => socket.send(message), http: actOverHttp });

function request(method, url, idempotencyKey) {
  return fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken, Accept: "application/json", "Idempotency-Key": idempotencyKey },
  });
}

// The HTTP API's create or kill, settled to an outcome as actions.js describes.
async function actOverHttp(type, id, key) {
  const [method, url] = type === "create" ? ["POST", API_URL] : ["DELETE", `${API_URL}${encodeURIComponent(id)}/`];
  let response;
  try {
    response = await request(method, url, key);
  } catch {
    return { status: 0, error: "", retryAfter: null };
  }
  if (response.ok) return { status: response.status, error: "", retryAfter: null };
  return { status: response.status, error: await errorText(response), retryAfter: retryAfterSeconds(response) };
}

async function errorText(response) {
  try {
    const data = await response.json();
    if (data && typeof data.error === "string") return data.error;
  } catch {
    /* not JSON (e.g. Django's HTML CSRF page) */
  }
  return "";
}

function retryAfterSeconds(response) {
  const header = response.headers.get("Retry-After");
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(1, Math.ceil(seconds));
  const date = Date.parse(header); // Retry-After may also be an HTTP date
  return Number.isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

async function addVirusClicked() {
  // Visual press feedback for keyboard and touch, where :active is brief or absent.
  addButton.classList.add("is-pressed");
  setTimeout(() => addButton.classList.remove("is-pressed"), 120);
  const outcome = await actions.create();
  if (outcome.status !== 201) {
    showToast(failureMessage(outcome, "add"));
    return;
  }
  // Success draws nothing: the virus appears when its push arrives, exactly once.
  if (!feed.live) refreshOverHttp({ force: true });
}

async function killVirusClicked(button) {
  const id = button.dataset.virusId;
  if (!id || pendingKills.has(id)) return;
  pendingKills.add(id);
  button.classList.add("is-hit");
  const outcome = await actions.kill(id);
  if (outcome.status === 204) {
    // Stay in pendingKills until the push removes it: a second tap must not earn a 404.
    // The score counts the push's "by" (board.js), so every tab of this player agrees.
    // The virus goes when its "virus.killed" push arrives, in every window alike.
    if (!feed.live) refreshOverHttp({ force: true });
    return;
  }
  if (outcome.status === 404) {
    // Someone else got it first. Deletions are final, so dropping it locally is safe
    // even if we somehow missed the push.
    removeVirus(id);
    updateCounters();
  } else {
    pendingKills.delete(id);
    button.classList.remove("is-hit");
  }
  showToast(failureMessage(outcome, "kill"));
}

// One delegated listener: "click" covers mouse, touch, Enter and Space on a <button>.
playground.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-virus-id]");
  if (button && playground.contains(button)) killVirusClicked(button);
});
addButton.addEventListener("click", addVirusClicked);

// "+" anywhere adds a virus (handy for keyboard players); ignored while typing or with modifiers.
document.addEventListener("keydown", (event) => {
  if (event.key !== "+" || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
  event.preventDefault();
  addButton.click();
});

// A room's final refusal, said over the dish (not in a toast that fades): full, locked, gone.
function showRefusal(code, text) {
  document.body.dataset.refused = String(code);
  setStatus("closed");
  addButton.disabled = true; // nothing to play here: the dish is not this page's
  for (const id of [...state.viruses.keys()]) removeVirus(id, { animate: false });
  emptyState.hidden = true;
  const notice = $("#room-refusal");
  notice.querySelector(".room-refusal-title").textContent = text;
  notice.hidden = false;
}

// ---------------------------------------------------------------------------
// Toast
// ---------------------------------------------------------------------------

let toastTimer = 0;
// Text and names (<bdi> elements) in one message.
function showToast(...parts) {
  clearTimeout(toastTimer);
  // Clearing first makes screen readers announce a repeated message again.
  toast.textContent = "";
  toast.classList.add("is-visible");
  requestAnimationFrame(() => {
    toast.replaceChildren(...parts);
  });
  toastTimer = setTimeout(() => {
    toast.classList.remove("is-visible");
    toastTimer = setTimeout(() => (toast.textContent = ""), 250);
  }, TOAST_MS);
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

const board = new Board({ csrfToken, toast: showToast, reducedMotion, room: ROOM });
const roomCard = ROOM ? new RoomCard({ code: ROOM, csrfToken, toast: showToast }) : null;
if (!ROOM) new RoomEntry({ csrfToken });
const sound = new Sound($("#sound-toggle"));
const events = new Events({ list: $("#event-list"), online: $("#online-names") });
const rounds = ROOM ? new Rounds({ room: ROOM, csrfToken, toast: showToast, me: () => board.me.id }) : null;
updateCounters();
socket.connect();

// Read-only handle for debugging in the console; the DOM hooks are the real interface.
window.virusGame = Object.freeze({
  get seq() {
    return feed.seq;
  },
  get viruses() {
    return [...state.viruses.keys()];
  },
  get live() {
    return feed.live;
  },
  resync: () => feed.requestResync(),
  reconnect: () => socket.restart(),
});
