// The player and the leaderboard: your name, rank and score, the inline rename, the top 10
// (the public world's page switches between all time and today: both come in every push).
//
// Everything shown comes from the server (snapshot, `leaderboard` pushes, `by` on kills,
// GET/PATCH /api/me/; in a room, GET /api/rooms/<code>/leaderboard/ for our place). Names
// are only ever set as textContent: whatever a name holds, it is text, never markup; each
// is isolated (<bdi>, dir="auto") so right-to-left names keep their place.

import { bdi } from "./names.js";

const ME_URL = "/api/me/";
const ME_REFRESH_GAP_MS = 10000; // own rank outside the top 10: re-read (GET /api/me/) at most this often
const CELEBRATE_MS = 1800;

const $ = (selector) => document.querySelector(selector);

export class Board {
  constructor({ csrfToken, toast, reducedMotion, room = "" }) {
    this.csrfToken = csrfToken;
    // In a room, ranks and scores are the room's: its board answers with our place ("me").
    this.meUrl = room ? `/api/rooms/${room}/leaderboard/` : ME_URL;
    this.room = room;
    this.toast = toast;
    this.reducedMotion = reducedMotion;
    this.pill = $("#player");
    this.nameEl = $("#player-name");
    this.rankEl = $("#player-rank");
    this.scoreEl = $("#score-value");
    this.list = $("#leaderboard-list");
    this.empty = $("#leaderboard-empty");
    this.meLine = $("#leaderboard-me");
    this.form = $("#rename-form");
    this.input = $("#rename-input");
    this.error = $("#rename-error");
    this.openButton = $("#rename-open");
    this.me = { id: this.pill.dataset.playerId || null, name: this.nameEl.textContent, kills: 0, rank: null };
    this.top = [];
    this.today = []; // today's top 10 (the public world); your name, rank and score stay all-time
    this.scopeButton = $("#board-today");
    this.title = $("#leaderboard-title");
    this.lastMeRefresh = -Infinity;
    this.known = false; // no celebration for a rank we already had when the page loaded

    this.openButton.addEventListener("click", () => this.openRename());
    this.scopeButton?.addEventListener("click", () => {
      const today = this.scopeButton.getAttribute("aria-pressed") !== "true";
      this.scopeButton.setAttribute("aria-pressed", String(today));
      this.title.textContent = today ? "Top squashers today" : "Top squashers";
      this.setMe(this.me);
    });
    $("#rename-cancel").addEventListener("click", () => this.closeRename());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.rename(this.input.value);
    });
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closeRename();
    });
  }

  // --- from the server ------------------------------------------------------------

  snapshot(message) {
    if (message.me && typeof message.me.id === "string") this.setMe(message.me);
    if (message.leaderboard) this.leaderboard(message.leaderboard);
  }

  leaderboard(board) {
    if (!Array.isArray(board.top)) return;
    // A room's board while a round runs is the round's (rounds.js shows the rest of it).
    $("#leaderboard-title").textContent = board.scope === "round" ? `Round ${board.round}` : "Top squashers";
    this.top = board.top.filter((e) => e && typeof e.id === "string");
    if (Array.isArray(board.today?.top)) this.today = board.today.top.filter((e) => e && typeof e.id === "string");
    this.renderList();
    const mine = this.top.find((e) => e.id === this.me.id);
    if (mine) {
      this.setMe({ ...this.me, name: mine.name, kills: mine.kills, rank: mine.rank });
    } else if (this.me.kills > 0) {
      this.refreshMe(); // off the top 10: ask where we stand, now and then
    }
  }

  // A kill pushed in seq order: ours adds to our score at once, if it scored (viruses/scoring.py).
  killed(message) {
    if (message.by && message.by.id === this.me.id && message.scored !== false) {
      this.setMe({ ...this.me, kills: this.me.kills + 1 });
    }
  }

  async refreshMe({ force = false } = {}) {
    const now = performance.now();
    if (!force && now - this.lastMeRefresh < ME_REFRESH_GAP_MS) return;
    this.lastMeRefresh = now;
    try {
      const response = await fetch(this.meUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const data = response.ok ? await response.json() : null;
      const me = this.room ? data?.me : data;
      if (me && typeof me.id === "string") this.setMe(me);
    } catch {
      /* offline: the next snapshot tells */
    }
  }

  // --- drawing --------------------------------------------------------------------

  setMe(me) {
    const before = this.me.rank;
    this.me = { id: me.id, name: String(me.name ?? ""), kills: Number(me.kills) || 0, rank: me.rank ?? null };
    this.pill.dataset.playerId = this.me.id;
    this.nameEl.textContent = this.me.name;
    this.scoreEl.textContent = String(this.me.kills);
    this.rankEl.textContent = this.me.rank ? `#${this.me.rank}` : "";
    const offTop = this.me.rank && this.me.rank > this.top.length && !this.showingToday();
    this.meLine.textContent = offTop ? `You: #${this.me.rank}, ${this.me.kills} squashed` : "";
    if (this.known && this.me.rank && this.me.rank <= 3 && (before === null || before > 3)) this.celebrate();
    this.known = true;
    this.renderList();
  }

  showingToday() {
    return this.scopeButton?.getAttribute("aria-pressed") === "true";
  }

  renderList() {
    const items = (this.showingToday() ? this.today : this.top).map((entry) => {
      const li = document.createElement("li");
      li.dataset.playerId = entry.id;
      if (entry.id === this.me.id) li.setAttribute("aria-current", "true");
      const rank = Object.assign(document.createElement("span"), { className: "rank", textContent: `${entry.rank}.` });
      const name = Object.assign(document.createElement("bdi"), { className: "name", textContent: entry.name });
      const kills = Object.assign(document.createElement("span"), { className: "kills", textContent: String(entry.kills) });
      kills.setAttribute("aria-label", `${entry.kills} squashed`);
      li.append(rank, name, kills);
      return li;
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }

  celebrate() {
    this.toast(`You're #${this.me.rank} on the board!`);
    if (this.reducedMotion.matches) return;
    this.pill.classList.add("is-celebrating");
    setTimeout(() => this.pill.classList.remove("is-celebrating"), CELEBRATE_MS);
  }

  // --- rename ---------------------------------------------------------------------

  openRename() {
    this.form.hidden = false;
    this.openButton.setAttribute("aria-expanded", "true");
    this.input.value = this.me.name;
    this.setError("");
    this.input.focus();
    this.input.select();
  }

  closeRename() {
    this.form.hidden = true;
    this.openButton.setAttribute("aria-expanded", "false");
    this.openButton.focus();
  }

  setError(text) {
    this.error.textContent = text;
    this.input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  async rename(name) {
    let response;
    try {
      response = await fetch(ME_URL, {
        method: "PATCH",
        credentials: "same-origin",
        headers: { "X-CSRFToken": this.csrfToken, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ name }),
      });
    } catch {
      this.setError("Can't reach the server");
      return;
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      /* not JSON */
    }
    if (!response.ok) {
      this.setError(data?.error ? `${data.error[0].toUpperCase()}${data.error.slice(1)}` : `Error ${response.status}`);
      this.input.focus();
      return;
    }
    // The answer's score and rank are the public world's: in a room, only the name is news.
    this.setMe(this.room ? { ...this.me, name: data.name } : data);
    this.closeRename();
    this.toast("You are now ", bdi(data.name));
  }
}
