// The page's actions (viruses/static/viruses/actions.js), without a browser: `node --test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// Imported from its text, as feed.test.mjs explains.
const source = readFileSync(new URL("../../viruses/static/viruses/actions.js", import.meta.url));
const { Actions, failureMessage } = await import(`data:text/javascript;base64,${source.toString("base64")}`);

// A socket that is open or not, and an HTTP API that answers `httpAnswer`.
function setup({ open = true, httpAnswer = { status: 201, error: "", retryAfter: null } } = {}) {
  const log = { sent: [], http: [] };
  const link = { open };
  const actions = new Actions({
    send: (message) => {
      if (!link.open) return false;
      log.sent.push(message);
      return true;
    },
    http: async (type, id) => {
      log.http.push([type, id]);
      return httpAnswer;
    },
  });
  return { actions, log, link };
}

test("actions go over the open socket, each with a ref of its own", () => {
  const { actions, log } = setup();
  actions.create();
  actions.kill("v1");
  assert.equal(log.sent.length, 2);
  assert.deepEqual(log.sent[0], { type: "create", ref: log.sent[0].ref });
  assert.deepEqual(log.sent[1], { type: "kill", id: "v1", ref: log.sent[1].ref });
  assert.notEqual(log.sent[0].ref, log.sent[1].ref);
  assert.ok(log.sent.every((m) => typeof m.ref === "string" && m.ref.length <= 64));
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

test("actions the socket did not answer before it closed settle with no answer", async () => {
  const { actions } = setup();
  const pending = [actions.create(), actions.kill("v1")];
  actions.lost();
  assert.deepEqual(
    (await Promise.all(pending)).map((o) => o.status),
    [0, 0],
  );
  assert.equal(actions.pending.size, 0);
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
