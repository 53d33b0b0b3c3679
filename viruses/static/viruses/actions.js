// The player's two actions, create and kill, apart from the DOM: over the socket while it
// is open (each action carries a ref that the server echoes in its answer), else over
// HTTP. Either way an action settles to an outcome {status, error, retryAfter}: 201 or 204
// done, 4xx or 5xx refused, 0 no answer (unreachable). Nothing here draws: viruses come
// and go only from the pushes, in every window alike.
//
// An action whose answer never came (the socket closed first: a server restart) or that
// met a gateway error is sent again over HTTP with the same idempotency key, so the server
// does it at most once and answers a repeat as it answered the first (the same virus, the
// same 204). A restart thus costs the player nothing but a moment.

const RETRY_STATUSES = new Set([0, 502, 503, 504]); // no answer, or a proxy with no server behind
const HTTP_RETRIES = 4; // after the first try: about 4 s of retries in all
const RETRY_BASE_MS = 250;

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Actions {
  // send(message): send over the socket; return false when it is not open.
  // http(type, id, key): the same action over HTTP with its idempotency key; resolve to an outcome.
  // sleep(ms), newKey(): the clock and the keys (tests pass their own).
  constructor({ send, http, sleep = (ms) => new Promise((r) => setTimeout(r, ms)), newKey = randomKey }) {
    this.transport = { send, http };
    this.sleep = sleep;
    this.newKey = newKey;
    this.pending = new Map(); // ref -> {action, key, resolve}, for actions sent over the socket
    this.count = 0;
  }

  create() {
    return this.act({ type: "create" });
  }

  kill(id) {
    return this.act({ type: "kill", id });
  }

  act(action) {
    const key = this.newKey();
    return new Promise((resolve) => {
      const ref = String(++this.count);
      this.pending.set(ref, { action, key, resolve });
      if (this.transport.send({ ...action, ref, idempotency_key: key })) return;
      this.pending.delete(ref);
      this.overHttp({ action, key, resolve });
    });
  }

  // Over HTTP, again with the same key while no server answers (a restart, a gateway error).
  async overHttp({ action, key, resolve }) {
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.transport.http(action.type, action.id, key);
      if (!RETRY_STATUSES.has(outcome.status) || attempt >= HTTP_RETRIES) {
        resolve(outcome);
        return;
      }
      await this.sleep(RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random()));
    }
  }

  // An "ack" or "error" from the socket: settle the action it answers; false if none.
  answer(message) {
    const entry = this.pending.get(message?.ref);
    if (!entry) return false;
    this.pending.delete(message.ref);
    const status = Number.isInteger(message.status) ? message.status : 0;
    const error = message.type === "error" && typeof message.error === "string" ? message.error : "";
    entry.resolve({ status, error, retryAfter: null });
    return true;
  }

  // The socket is gone: what it did not answer may or may not have been done; ask again
  // over HTTP with the same keys (done: the first answer; not done: done now).
  lost() {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const entry of waiting) this.overHttp(entry);
  }
}

// What to tell the player about an action that was not done. `action`: "add" or "kill".
export function failureMessage({ status, error, retryAfter }, action) {
  if (status === 429) {
    return retryAfter ? `Slow down! Try again in ${retryAfter} s` : "Slow down! Try again in a moment";
  }
  if (status === 409 && action === "add") return "The playground is full";
  if (status === 404 && action === "kill") return "Too late — that virus is already gone";
  if (status === 0) return "Can't reach the server";
  if (error?.trim()) return error.trim();
  if (status === 403) return "Your session expired — please reload the page";
  return `Something went wrong (error ${status})`;
}
