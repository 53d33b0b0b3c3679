// A room's rounds: the countdown, the host's Start and Stop buttons, and the podium.
//
// The server times everything (docs/architecture.md#rounds). Each snapshot and `round`
// message carries the server's `now`; the page keeps the offset from its own clock and
// counts down to `ends_at` on the server's time, so every device shows the same second
// whatever its clock says. The round's end is the server's `round` message, never the
// countdown reaching zero. Names are only ever set as textContent.

import { bdi } from "./names.js";

const $ = (selector) => document.querySelector(selector);

export class Rounds {
  constructor({ room, csrfToken, toast, me }) {
    this.url = `/api/rooms/${room}/round/`;
    this.csrfToken = csrfToken;
    this.toast = toast;
    this.me = me; // () => this player's id
    this.panel = $("#round");
    this.status = $("#round-status");
    this.clock = $("#round-countdown");
    this.hostControls = $("#round-host");
    this.stopButton = $("#round-stop");
    this.podium = $("#podium");
    this.round = null;
    this.offset = 0; // server time minus this page's clock, in ms
    this.host = false;
    this.timer = 0;

    for (const button of document.querySelectorAll("[data-round-seconds]")) {
      button.addEventListener("click", () => this.start(Number(button.dataset.roundSeconds)));
    }
    this.stopButton.addEventListener("click", () => this.stop());
    $("#podium-close").addEventListener("click", () => this.closePodium());
    this.podium.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closePodium();
    });
  }

  // --- from the server ------------------------------------------------------------

  snapshot(message) {
    this.syncClock(message.now);
    this.host = Boolean(message.room?.host && message.room.host.id === this.me());
    this.show(message.round ?? null);
  }

  message(message) {
    this.syncClock(message.now);
    this.show(message.round);
    if (message.round?.state === "over") this.showPodium(message.round, message.board);
    else if (message.round?.state === "running") this.closePodium();
  }

  syncClock(now) {
    const server = Date.parse(now);
    if (Number.isFinite(server)) this.offset = server - Date.now();
  }

  // --- drawing --------------------------------------------------------------------

  show(round) {
    this.round = round && typeof round.ends_at === "string" ? round : null;
    const running = this.round?.state === "running";
    this.panel.dataset.state = this.round ? this.round.state : "none";
    this.hostControls.hidden = !this.host;
    this.hostControls.dataset.running = running ? "true" : "false";
    this.stopButton.hidden = !running;
    this.status.textContent = running
      ? `Round ${this.round.number}`
      : this.round
        ? `Round ${this.round.number} is over`
        : "No round yet";
    this.tick();
  }

  // Redrawn just after each of the server's second boundaries, so pages switch together.
  tick() {
    clearTimeout(this.timer);
    if (this.round?.state !== "running") {
      this.clock.textContent = "";
      this.clock.dataset.seconds = "";
      return;
    }
    const left = Date.parse(this.round.ends_at) - (Date.now() + this.offset);
    const seconds = Math.max(0, Math.ceil(left / 1000));
    this.clock.dataset.seconds = String(seconds);
    this.clock.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    if (seconds > 0) this.timer = setTimeout(() => this.tick(), (left % 1000 || 1000) + 15);
  }

  showPodium(round, board) {
    const top = Array.isArray(board?.top) ? board.top : [];
    $("#podium-title").textContent = `Round ${round.number} is over`;
    const places = $("#podium-places");
    places.replaceChildren(
      ...top.slice(0, 3).map((entry) => {
        const place = document.createElement("li");
        place.className = `podium-place place-${entry.rank}`;
        place.dataset.playerId = entry.id;
        const kills = document.createElement("span");
        kills.className = "podium-kills";
        kills.textContent = `${entry.kills} squashed`;
        place.append(bdi(entry.name), kills);
        return place;
      }),
    );
    $("#podium-empty").hidden = top.length > 0;
    const mine = top.find((entry) => entry.id === this.me());
    $("#podium-me").textContent = mine
      ? `You placed #${mine.rank} with ${mine.kills} squashed.`
      : "You did not score this round.";
    this.podium.hidden = false;
    $("#podium-close").focus();
  }

  closePodium() {
    this.podium.hidden = true;
  }

  // --- the host's actions (the server checks they are the host) --------------------

  start(seconds) {
    this.closePodium();
    return this.send("POST", { seconds });
  }

  stop() {
    return this.send("DELETE");
  }

  async send(method, body) {
    try {
      const response = await fetch(this.url, {
        method,
        headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrfToken },
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({}));
        this.toast(answer.error || `The round could not be changed (${response.status}).`);
      }
    } catch {
      this.toast("Offline: the round could not be changed.");
    }
  }
}
