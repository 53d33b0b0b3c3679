// When the page reconnects (viruses/static/viruses/reconnect.js), without a browser: `node --test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// Imported from its text, as feed.test.mjs explains.
const source = readFileSync(new URL("../../viruses/static/viruses/reconnect.js", import.meta.url));
const { nextRetry, closeNotice, roomRefusal, REFUSED_MESSAGE } = await import(
  `data:text/javascript;base64,${source.toString("base64")}`
);

const worst = () => 0.999999; // the longest jittered wait
const least = () => 0; // the shortest

test("a page refused with 1008 says too many connections from your network", () => {
  assert.equal(closeNotice(1008), REFUSED_MESSAGE);
  assert.match(REFUSED_MESSAGE, /too many connections from your network/i);
  assert.equal(closeNotice(1006), "");
  assert.equal(closeNotice(1012), "");
});

test("refused again and again, the page waits longer each time, up to a minute, never at once", () => {
  let attempt = 0;
  const longest = [];
  for (let i = 0; i < 8; i += 1) {
    longest.push(Math.round(nextRetry(1008, attempt, worst).delayMs / 1000));
    assert.ok(nextRetry(1008, attempt, least).delayMs >= 2000);
    attempt = nextRetry(1008, attempt, worst).attempt;
  }
  assert.deepEqual(longest, [5, 10, 20, 40, 60, 60, 60, 60]);
});

test("a refusal waits longer than a dropped connection, and a restart reconnects at once", () => {
  assert.ok(nextRetry(1008, 0, least).delayMs > nextRetry(1006, 0, worst).delayMs);
  assert.deepEqual(nextRetry(1012, 5, worst).attempt, 0);
  assert.ok(nextRetry(1012, 5, worst).delayMs < 1000);
  assert.ok(nextRetry(1006, 20, worst).delayMs < 15000);
});

test("a room's refusals are final and said plainly; other closes reconnect", () => {
  assert.equal(roomRefusal(4409), "This room is full");
  assert.equal(roomRefusal(4403), "This room is locked");
  assert.equal(roomRefusal(4404), "This room no longer exists");
  for (const code of [1000, 1006, 1008, 1011, 1012, 4000]) assert.equal(roomRefusal(code), "", String(code));
});
