// The page's seq rules (viruses/static/viruses/feed.js), without a browser: `node --test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// feed.js is an ES module named .js outside any package.json: Node before 20.19 would load
// it as CommonJS. Importing its text as a module works on every Node with node:test.
const source = readFileSync(new URL("../../viruses/static/viruses/feed.js", import.meta.url));
const { Feed, messagesOf } = await import(`data:text/javascript;base64,${source.toString("base64")}`);

// Timers the test advances by hand: no waiting, no wall clock.
class FakeTimers {
  constructor() {
    this.now = 0;
    this.next = 1;
    this.due = new Map(); // handle -> [time, callback]
  }
  setTimeout = (callback, delay) => {
    this.due.set(this.next, [this.now + delay, callback]);
    return this.next++;
  };
  clearTimeout = (handle) => {
    this.due.delete(handle);
  };
  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const ready = [...this.due].filter(([, [at]]) => at <= until).sort((a, b) => a[1][0] - b[1][0]);
      if (ready.length === 0) break;
      const [handle, [at, callback]] = ready[0];
      this.due.delete(handle);
      this.now = at;
      callback();
    }
    this.now = until;
  }
  get pending() {
    return this.due.size;
  }
}

function setup({ canSend = true } = {}) {
  const timers = new FakeTimers();
  const log = { applied: [], resyncs: 0, wedged: 0 };
  const feed = new Feed({
    apply: (change) => log.applied.push(change.seq ?? change.type),
    resync: () => {
      if (canSend) log.resyncs += 1;
      return canSend;
    },
    wedged: () => (log.wedged += 1),
    timers,
  });
  return { feed, timers, log };
}

// A feed at seq 1 that has received change 3: a hole where 2 should be.
function withHole(options) {
  const harness = setup(options);
  harness.feed.snapshot(1);
  harness.feed.receive(created(3));
  return harness;
}

const created = (seq) => ({ type: "virus.created", seq, virus: { id: `v${seq}` } });

test("changes in order are applied on top of the snapshot, old ones ignored", () => {
  const { feed, log } = setup();
  feed.snapshot(3);
  for (const seq of [2, 3, 4, 5, 5]) feed.receive(created(seq));
  assert.deepEqual(log.applied, [4, 5]);
  assert.equal(feed.seq, 5);
});

test("a change ahead of a hole waits for the hole and no resync follows once it is filled", () => {
  const { feed, timers, log } = withHole();
  assert.deepEqual(log.applied, []);
  timers.advance(1000);
  feed.receive(created(2));
  assert.deepEqual(log.applied, [2, 3]);
  timers.advance(5000);
  assert.equal(log.resyncs, 0);
  assert.equal(timers.pending, 0);
});

test("a hole open for the gap timeout asks once for a resync, counted from when it opened", () => {
  const { feed, timers, log } = withHole();
  timers.advance(1000);
  feed.receive(created(5)); // a second hole does not restart the timer
  timers.advance(499);
  assert.equal(log.resyncs, 0);
  timers.advance(1);
  assert.equal(log.resyncs, 1);
  feed.requestResync(); // one outstanding at a time
  assert.equal(log.resyncs, 1);
});

test("the snapshot answering a resync replaces the state and keeps only later changes", () => {
  const { feed, timers, log } = withHole();
  feed.receive(created(6));
  timers.advance(1500);
  feed.snapshot(5);
  assert.deepEqual(log.applied, [6]);
  assert.equal(feed.seq, 6);
  timers.advance(10000);
  assert.equal(log.wedged, 0);
  assert.equal(timers.pending, 0);
});

test("a resync nobody answers declares the socket wedged", () => {
  const { feed, timers, log } = withHole();
  timers.advance(1500 + 4999);
  assert.equal(log.wedged, 0);
  timers.advance(1);
  assert.equal(log.wedged, 1);
});

test("a resync that cannot be sent waits for the reconnect's snapshot", () => {
  const { feed, timers, log } = withHole({ canSend: false });
  timers.advance(10000);
  assert.equal(log.wedged, 0);
});

test("before the socket's snapshot changes are kept, then applied after it", () => {
  const { feed, timers, log } = setup();
  feed.snapshot(1);
  feed.receive(created(3)); // a hole on the old socket...
  feed.reset(); // ...which closed: nothing pending survives it
  assert.equal(timers.pending, 0);
  for (const seq of [4, 7, 5, 6]) feed.receive(created(seq));
  assert.deepEqual(log.applied, []);
  feed.snapshot(5); // it includes 4 and 5
  assert.deepEqual(log.applied, [6, 7]);
  assert.equal(feed.live, true);
  timers.advance(10000);
  assert.equal(log.resyncs, 0);
});

test("a snapshot read over HTTP is not the socket's: changes stay held until the socket's", () => {
  const { feed, log } = setup();
  feed.snapshot(4, { live: false });
  feed.receive(created(5));
  assert.deepEqual(log.applied, []);
  assert.equal(feed.live, false);
});

test("a change without a seq is applied as it comes (creates and kills are idempotent)", () => {
  const { feed, log } = setup();
  feed.receive({ type: "virus.killed", id: "x" });
  assert.deepEqual(log.applied, ["virus.killed"]);
});

test("a frame is one message or an array of them in order; anything else is nothing", () => {
  assert.deepEqual(messagesOf('{"type": "presence", "online": 2}'), [{ type: "presence", online: 2 }]);
  assert.deepEqual(messagesOf('[{"type": "a"}, {"type": "b"}]'), [{ type: "a" }, { type: "b" }]);
  assert.deepEqual(messagesOf("not json"), []);
  assert.deepEqual(messagesOf('[1, null, {"type": "c"}]'), [{ type: "c" }]);
});
