// Rooms on the page: create or join one from the public page, and a room's own header
// (copy its link, lock it). The room's world itself (socket, API) is game.js's.
//
// Codes are the server's alphabet (no 0/O, 1/I/L); the page checks a typed code before
// asking GET /api/rooms/<code>/, so a typo gets a friendly word here, never a 404 page.

export const CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";
export const CODE_LENGTH = 5;
const COPIED_MS = 2500;

// A typed code in the server's form ({code}), or why it cannot be one ({error}).
// Any case, spaces and dashes anywhere ("k7q m2", "K7Q-M2") are fine.
export function normaliseCode(text) {
  const code = String(text ?? "")
    .replace(/[\s-]+/g, "")
    .toUpperCase();
  if (!code) return { error: "Type the room's code, like K7QM2." };
  if (code.length !== CODE_LENGTH || [...code].some((c) => !CODE_ALPHABET.includes(c))) {
    return { error: `A room code is ${CODE_LENGTH} letters and digits, without 0, O, 1, I or L, like K7QM2.` };
  }
  return { code };
}

// What a failed answer of the rooms API says, for the player.
export function failureText(status, error) {
  if (status === 0) return "Can't reach the server. Try again in a moment.";
  if (status === 429) return "That's a lot of rooms at once: wait a minute, then try again.";
  if (!error) return `Something went wrong (error ${status}).`;
  const text = `${error[0].toUpperCase()}${error.slice(1)}`;
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

const $ = (selector) => document.querySelector(selector);

async function callApi(url, { method = "GET", body, csrfToken } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken;
  let response;
  try {
    response = await fetch(url, { method, credentials: "same-origin", headers, body: body && JSON.stringify(body) });
  } catch {
    return { status: 0, data: null };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    /* not JSON (say, a proxy's error page) */
  }
  return { status: response.status, data };
}

// The public page's two forms: "Create a room" and "Join with a code".
export class RoomEntry {
  constructor({ csrfToken }) {
    this.csrfToken = csrfToken;
    this.form("#create-room-form", "#create-room-error", () => this.create());
    this.form("#join-room-form", "#join-room-error", () => this.join());
  }

  form(selector, errorSelector, submit) {
    const form = $(selector);
    const error = $(errorSelector);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      error.textContent = "";
      const problem = await submit().finally(() => (button.disabled = false));
      if (problem) {
        error.textContent = problem;
        form.querySelector("input").setAttribute("aria-invalid", "true");
        form.querySelector("input").focus();
      }
    });
    form.querySelector("input").addEventListener("input", (event) => event.target.removeAttribute("aria-invalid"));
  }

  // Resolve to what went wrong, or go to the new room.
  async create() {
    const name = $("#create-room-name").value.trim();
    const { status, data } = await callApi("/api/rooms/", {
      method: "POST",
      body: name ? { name } : {},
      csrfToken: this.csrfToken,
    });
    if (status !== 201 || typeof data?.url !== "string") return failureText(status, data?.error);
    location.assign(data.url);
    return "";
  }

  async join() {
    const typed = normaliseCode($("#join-room-code").value);
    if (typed.error) return typed.error;
    const { status, data } = await callApi(`/api/rooms/${typed.code}/`);
    if (status === 404) return `No room has the code ${typed.code}. Check it with whoever shared it.`;
    if (status !== 200 || typeof data?.url !== "string") return failureText(status, data?.error);
    location.assign(data.url);
    return "";
  }
}

// A room's header: copy its link; the host locks and unlocks it, everyone sees whether it is.
export class RoomCard {
  constructor({ code, csrfToken, toast }) {
    this.code = code;
    this.csrfToken = csrfToken;
    this.toast = toast;
    this.card = $("#room-card");
    this.link = $("#room-link");
    this.copyButton = $("#copy-link");
    this.copyLabel = this.copyButton.querySelector(".label");
    this.copyStatus = $("#copy-status");
    this.lockButton = $("#room-lock"); // the host's only
    this.lockedBadge = $("#room-locked");
    this.copiedTimer = 0;
    this.copyButton.addEventListener("click", () => this.copy());
    this.lockButton?.addEventListener("click", () => this.setLocked(this.card.dataset.locked !== "true"));
  }

  async copy() {
    const link = this.card.dataset.link;
    let copied = false;
    try {
      await navigator.clipboard.writeText(link);
      copied = true;
    } catch {
      // No clipboard API (plain http on another host, older browsers) or refused: the old way.
      this.link.focus();
      this.link.select();
      try {
        copied = document.execCommand("copy");
      } catch {
        copied = false;
      }
    }
    // Said on the button itself, where the player looks; the status repeats it for screen readers.
    this.said(copied ? "Copied" : "Press Ctrl+C");
  }

  said(text) {
    clearTimeout(this.copiedTimer);
    this.copyLabel.textContent = text;
    this.copyStatus.textContent = text === "Copied" ? "Link copied" : "Link selected: press Ctrl+C (or ⌘C) to copy it";
    this.card.dataset.copied = text === "Copied" ? "true" : "";
    this.copiedTimer = setTimeout(() => {
      this.copyLabel.textContent = "Copy link";
      this.copyStatus.textContent = "";
      this.card.dataset.copied = "";
    }, COPIED_MS);
  }

  async setLocked(locked) {
    this.lockButton.disabled = true;
    const { status, data } = await callApi(`/api/rooms/${this.code}/`, {
      method: "PATCH",
      body: { locked },
      csrfToken: this.csrfToken,
    });
    this.lockButton.disabled = false;
    if (status === 200 && typeof data?.locked === "boolean") this.room(data);
    else this.toast(failureText(status, data?.error));
  }

  // The Room of the API or of a snapshot.
  room(room) {
    if (typeof room?.locked !== "boolean") return;
    this.card.dataset.locked = String(room.locked);
    this.lockedBadge.hidden = !room.locked;
    if (this.lockButton) {
      this.lockButton.setAttribute("aria-pressed", String(room.locked));
      this.lockButton.textContent = room.locked ? "Unlock room" : "Lock room";
    }
  }
}
