// Who is online and what just happened: the names online and the last 20 events, all
// built from the pushes the page already gets (seq-ordered changes, presence).
//
// Not a live region: a busy dish would make a screen reader talk without pause.
// Names are only ever set as text, each isolated in a <bdi> (names.js).

import { bdi } from "./names.js";

const MAX_EVENTS = 20;
const GROUP_MS = 3000; // spawner creations this close together make one "N viruses escaped" line

export class Events {
  constructor({ list, online }) {
    this.list = list;
    this.online = online;
    this.known = null; // ids of the named players online at the last presence; null before the first
    this.lastSpawn = null; // { item, count, at } of the latest "escaped the lab" line
  }

  created(message, colour) {
    if (message.by) {
      this.add(bdi(message.by.name), ` released a ${colour} virus`);
      return;
    }
    const now = performance.now();
    if (this.lastSpawn && this.list.firstChild === this.lastSpawn.item && now - this.lastSpawn.at < GROUP_MS) {
      this.lastSpawn.count += 1;
      this.lastSpawn.at = now;
      this.lastSpawn.item.textContent = `${this.lastSpawn.count} viruses escaped the lab`;
      return;
    }
    this.lastSpawn = { item: this.add(`A ${colour} virus escaped the lab`), count: 1, at: now };
  }

  killed(message, colour) {
    const what = colour ? `a ${colour} virus` : "a virus";
    if (message.by) this.add(bdi(message.by.name), ` squashed ${what}`);
    else this.add(`The lab cleared ${what}`);
  }

  // The snapshot and presence messages: names online, and who joined since the last one.
  presence(message) {
    if (!Array.isArray(message.online_players)) return;
    const players = message.online_players.filter((p) => p && typeof p.id === "string");
    if (this.known !== null) {
      for (const player of players) if (!this.known.has(player.id)) this.add(bdi(player.name), " joined");
    }
    this.known = new Set(players.map((p) => p.id));
    const more = Number.isInteger(message.online_more) && message.online_more > 0 ? message.online_more : 0;
    if (!players.length) {
      this.online.textContent = "";
      return;
    }
    const names = players.flatMap((p, i) => (i ? [", ", bdi(p.name)] : [bdi(p.name)]));
    this.online.replaceChildren("Online: ", ...names, more ? ` and ${more} more` : "");
  }

  // One line of text and names (<bdi> elements).
  add(...parts) {
    const item = document.createElement("li");
    item.append(...parts);
    this.list.prepend(item);
    while (this.list.children.length > MAX_EVENTS) this.list.lastChild.remove();
    return item;
  }
}
