// The page's seq rules, apart from the DOM: apply changes in seq order, ignore ones we
// already have, hold back ones that arrive ahead of a hole, ask for a resync when a hole
// stays open, and let a snapshot replace everything. tools/gameclient.py's `Feed` is the
// same for the Python clients.
//
// The feed owns its two timers (the gap timer and the wedged-resync timer); callers only
// call its methods and get called back.

export const GAP_TIMEOUT_MS = 1500; // how long a hole in the seq stream may stay open before we resync
export const RESYNC_TIMEOUT_MS = 5000; // a resync that gets no snapshot means the socket is wedged

// The messages of one server frame: a JSON object, or a JSON array of them in order.
// Anything else (not JSON, not objects) yields nothing.
export function messagesOf(data) {
  let parsed;
  try {
    parsed = JSON.parse(data);
  } catch {
    return [];
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  return list.filter((message) => message !== null && typeof message === "object" && !Array.isArray(message));
}

export class Feed {
  // apply(change): draw one virus.created / virus.killed.
  // resync(): send {"type": "resync"}; return false when the socket cannot send.
  // wedged(): no snapshot answered a resync in time: start over with a fresh socket.
  // timers: {setTimeout, clearTimeout}, replaceable in tests.
  constructor({
    apply,
    resync,
    wedged,
    gapTimeoutMs = GAP_TIMEOUT_MS,
    resyncTimeoutMs = RESYNC_TIMEOUT_MS,
    timers = globalThis,
  }) {
    this.callbacks = { apply, resync, wedged };
    this.delays = { gap: gapTimeoutMs, resync: resyncTimeoutMs };
    this.timers = timers;
    this.pending = { gap: 0, resync: 0 }; // the only timer handles, started and stopped below
    this.seq = null; // seq of the last applied change; null until the first snapshot
    this.live = false; // true once this socket's snapshot has been applied
    this.buffer = new Map(); // seq -> change that arrived ahead of a gap
  }

  // A new socket, or none: its snapshot rules, so forget what the last one left pending.
  reset() {
    this.live = false;
    this.buffer.clear();
    this.stop("gap");
    this.stop("resync");
  }

  // A snapshot replaces the state (the caller redraws from it); buffered changes it already
  // includes are dropped and later ones applied on top. `live`: it came over the socket.
  snapshot(seq, { live = true } = {}) {
    this.seq = seq;
    if (live) this.live = true;
    this.stop("resync");
    for (const held of [...this.buffer.keys()]) {
      if (held <= seq) this.buffer.delete(held);
    }
    this.drain();
  }

  receive(change) {
    if (!Number.isInteger(change.seq)) {
      // Off-contract, but creates and kills are idempotent, so applying is harmless.
      this.callbacks.apply(change);
      return;
    }
    // Until this socket's snapshot arrives we cannot know where we stand: keep it for later.
    if (!this.live) {
      this.buffer.set(change.seq, change);
      return;
    }
    if (change.seq <= this.seq) return; // already applied (or included in the snapshot)
    this.buffer.set(change.seq, change);
    this.drain();
  }

  // Apply every buffered change that is now next in line; stop at the first hole.
  drain() {
    let next;
    while ((next = this.buffer.get(this.seq + 1))) {
      this.buffer.delete(this.seq + 1);
      this.callbacks.apply(next);
      this.seq += 1;
    }
    if (this.buffer.size === 0) this.stop("gap");
    else if (this.live) this.start("gap", () => this.buffer.size > 0 && this.requestResync()); // from when the hole opened
  }

  requestResync() {
    if (this.pending.resync) return; // one outstanding resync at a time
    if (!this.callbacks.resync()) return; // not open: the reconnect's snapshot will do
    this.start("resync", () => this.callbacks.wedged());
  }

  start(name, then) {
    if (this.pending[name]) return;
    this.pending[name] = this.timers.setTimeout(() => {
      this.pending[name] = 0;
      then();
    }, this.delays[name]);
  }

  stop(name) {
    this.timers.clearTimeout(this.pending[name]);
    this.pending[name] = 0;
  }
}
