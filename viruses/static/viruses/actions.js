// The player's two actions, create and kill, apart from the DOM: over the socket while it
// is open (each action carries a ref that the server echoes in its answer), else over
// HTTP. Either way an action settles to an outcome {status, error, retryAfter}: 201 or 204
// done, 4xx or 5xx refused, 0 no answer (unreachable, or the socket closed first; the next
// snapshot shows whether it happened). Nothing here draws: viruses come and go only from
// the pushes, in every window alike.

export class Actions {
  // send(message): send over the socket; return false when it is not open.
  // http(type, id): the same action over HTTP; resolve to an outcome.
  constructor({ send, http }) {
    this.transport = { send, http };
    this.pending = new Map(); // ref -> resolve, for actions sent over the socket
    this.count = 0;
  }

  create() {
    return this.act({ type: "create" });
  }

  kill(id) {
    return this.act({ type: "kill", id });
  }

  act(action) {
    const ref = String(++this.count);
    return new Promise((resolve) => {
      this.pending.set(ref, resolve);
      if (this.transport.send({ ...action, ref })) return;
      this.pending.delete(ref);
      resolve(this.transport.http(action.type, action.id));
    });
  }

  // An "ack" or "error" from the socket: settle the action it answers; false if none.
  answer(message) {
    const resolve = this.pending.get(message?.ref);
    if (!resolve) return false;
    this.pending.delete(message.ref);
    const status = Number.isInteger(message.status) ? message.status : 0;
    const error = message.type === "error" && typeof message.error === "string" ? message.error : "";
    resolve({ status, error, retryAfter: null });
    return true;
  }

  // The socket is gone: what it did not answer settles with no answer.
  lost() {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const resolve of waiting) resolve({ status: 0, error: "", retryAfter: null });
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
