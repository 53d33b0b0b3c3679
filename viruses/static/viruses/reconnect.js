// When to reconnect after a socket closed, and what to tell the player: no DOM, no clock.
//
// Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2^attempt)),
// which spreads a crowd of reconnecting browsers out instead of stampeding the server.
// A 1012 "service restart" reconnects at once (spread over a second): another server is up.
// A 1008 "policy violation" means the server refused this socket (too many from this
// network, too many snapshots, or a flood): waiting grows from REFUSED_BASE_MS to
// REFUSED_CAP_MS, never less than REFUSED_MIN_MS, so a class of refused pages behind one
// address backs off together instead of making it worse.
// A room's refusals (4403 locked, 4404 gone, 4409 full) are final: reconnecting would only
// be refused again, so the page says why and stops.

export const POLICY_VIOLATION = 1008;
export const SERVICE_RESTART = 1012;
export const REFUSED_MESSAGE = "Too many connections from your network";
const ROOM_REFUSALS = {
  4403: "This room is locked",
  4404: "This room no longer exists",
  4409: "This room is full",
};

const BASE_MS = 500;
const CAP_MS = 15000;
const RESTART_JITTER_MS = 1000;
const REFUSED_BASE_MS = 5000;
const REFUSED_MIN_MS = 2000;
const REFUSED_CAP_MS = 60000;
const MAX_ATTEMPT = 16;

// The delay before the next connect and the attempt count after it.
export function nextRetry(code, attempt, random = Math.random) {
  if (code === SERVICE_RESTART) return { delayMs: random() * RESTART_JITTER_MS, attempt: 0 };
  const next = Math.min(attempt + 1, MAX_ATTEMPT);
  if (code === POLICY_VIOLATION) {
    const ceiling = Math.min(REFUSED_CAP_MS, REFUSED_BASE_MS * 2 ** attempt);
    return { delayMs: REFUSED_MIN_MS + random() * (ceiling - REFUSED_MIN_MS), attempt: next };
  }
  return { delayMs: random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt), attempt: next };
}

// What the connection status says while waiting, or "" for the usual "Reconnecting…".
export function closeNotice(code) {
  return code === POLICY_VIOLATION ? REFUSED_MESSAGE : "";
}

// Why a room refused this socket for good, or "" when the page should reconnect.
export function roomRefusal(code) {
  return ROOM_REFUSALS[code] ?? "";
}
