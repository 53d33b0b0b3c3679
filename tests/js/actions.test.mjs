// The page's actions (viruses/static/viruses/actions.js), without a browser: `node --test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// Imported from its text, as feed.test.mjs explains.
const source = readFileSync(new URL("../../viruses/static/viruses/actions.js", import.meta.url));
const { Actions, failureMessage } = await import(`data:text/javascript;base64,${source.toString("base64")}`);

// A socket that is open or not, and an HTTP API that answers `httpAnswer` (or each of
// `httpAnswers` in turn); retries wait for no clock.
function setup({ open = true, httpAnswer = { status: 201, error: "", retryAfter: null }, httpAnswers = [] } = {}) {
  const log = { sent: [], http: [], keys: [], sleeps: [] };
  const link = { open };
  const actions = new Actions({
    send: (message) => {
      if (!link.open) return false;
      log.sent.push(message);
      return true;
    },
    http: async (type, id, key) => {
      log.http.push([type, id]);
      log.keys.push(key);
      return httpAnswers.length ? httpAnswers.shift() : httpAnswer;
    },
    sleep: async (ms) => log.sleeps.push(ms),
  });
  return { actions, log, link };
}

test("actions go over the open socket, each with a ref of its own", () => {
  const { actions, log } = setup();
  actions.create();
  actions.kill("v1");
  assert.equal(log.sent.length, 2);
  assert.deepEqual(log.sent[0], { type: "create", ref: log.sent[0].ref, idempotency_key: log.sent[0].idempotency_key });
  assert.deepEqual(log.sent[1], { type: "kill", id: "v1", ref: log.sent[1].ref, idempotency_key: log.sent[1].idempotency_key });
  assert.notEqual(log.sent[0].ref, log.sent[1].ref);
  assert.notEqual(log.sent[0].idempotency_key, log.sent[1].idempotency_key);
  assert.ok(log.sent.every((m) => typeof m.ref === "string" && m.ref.length <= 64));
  assert.ok(log.sent.every((m) => /^[0-9a-f]{24}$/.test(m.idempotency_key)));
  assert.deepEqual(log.http, []);
});

test("an ack settles the action whose ref it echoes, and only that one", async () => {
  const { actions, log } = setup();
  const created = actions.create();
  const killed = actions.kill("v1");
  const [add, kill] = log.sent;
  assert.equal(actions.answer({ type: "ack", ref: kill.ref, status: 204 }), true);
  assert.deepEqual(await killed, { status: 204, error: "", retryAfter: null });
  assert.equal(actions.answer({ type: "ack", ref: kill.ref, status: 204 }), false); // settled already
  actions.answer({ type: "ack", ref: add.ref, status: 201, virus: { id: "v2" } });
  assert.equal((await created).status, 201);
});

test("an error answer settles with its status and text; one with an unknown ref is not ours", async () => {
  const { actions, log } = setup();
  const killed = actions.kill("v1");
  assert.equal(actions.answer({ type: "error", ref: "nobody's", status: 404, error: "no" }), false);
  assert.equal(actions.answer({ type: "error", error: "not an answer to an action" }), false);
  actions.answer({ type: "error", ref: log.sent[0].ref, status: 404, error: "no such virus" });
  assert.deepEqual(await killed, { status: 404, error: "no such virus", retryAfter: null });
});

test("while the socket is down actions go over HTTP", async () => {
  const { actions, log, link } = setup({ open: false });
  assert.equal((await actions.create()).status, 201);
  await actions.kill("v1");
  assert.deepEqual(log.http, [["create", undefined], ["kill", "v1"]]);
  assert.deepEqual(log.sent, []);
  link.open = true;
  actions.create();
  assert.equal(log.sent.length, 1); // back on the socket once it is open again
  assert.equal(log.http.length, 2);
});

test("actions the socket did not answer before it closed are asked again over HTTP, with the same keys", async () => {
  const { actions, log } = setup({ httpAnswers: [{ status: 201, error: "", retryAfter: null }, { status: 204, error: "", retryAfter: null }] });
  const pending = [actions.create(), actions.kill("v1")];
  const keys = log.sent.map((m) => m.idempotency_key);
  actions.lost(); // a server restart closed the socket (1012) before it answered
  assert.deepEqual(
    (await Promise.all(pending)).map((o) => o.status),
    [201, 204],
  );
  assert.deepEqual(log.http, [["create", undefined], ["kill", "v1"]]);
  assert.deepEqual(log.keys, keys);
  assert.equal(actions.pending.size, 0);
});

test("no answer or a gateway error is tried again a few times with the same key, then settles", async () => {
  const none = { status: 0, error: "", retryAfter: null };
  const badGateway = { status: 502, error: "", retryAfter: null };
  const { actions, log } = setup({ open: false, httpAnswers: [none, badGateway, { status: 201, error: "", retryAfter: null }] });
  assert.equal((await actions.create()).status, 201);
  assert.equal(log.http.length, 3);
  assert.equal(new Set(log.keys).size, 1);
  assert.equal(log.sleeps.length, 2);
  assert.ok(log.sleeps[1] > log.sleeps[0] / 2); // backing off

  const down = setup({ open: false, httpAnswer: none });
  assert.equal((await down.actions.kill("v1")).status, 0); // unreachable for good: the player is told
  assert.equal(down.log.http.length, 5);
  const refused = setup({ open: false, httpAnswer: { status: 404, error: "no such virus", retryAfter: null } });
  assert.equal((await refused.actions.kill("v1")).status, 404); // an answer: never asked again
  assert.equal(refused.log.http.length, 1);
});

test("the player is told why an action was not done", () => {
  const told = (status, action, error = "", retryAfter = null) => failureMessage({ status, error, retryAfter }, action);
  assert.equal(told(429, "add", "too many requests, wait 3 s", 3), "Slow down! Try again in 3 s");
  assert.equal(told(429, "kill", "too many requests, wait 3 s"), "Slow down! Try again in a moment");
  assert.equal(told(409, "add", "the playground is full (100 viruses)"), "The playground is full");
  assert.equal(told(404, "kill", "no such virus"), "Too late — that virus is already gone");
  assert.equal(told(0, "add"), "Can't reach the server");
  assert.equal(told(503, "add", " the database is unavailable "), "the database is unavailable");
  assert.equal(told(403, "add"), "Your session expired — please reload the page");
  assert.equal(told(500, "kill"), "Something went wrong (error 500)");
});
