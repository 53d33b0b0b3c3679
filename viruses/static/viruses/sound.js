// Optional sound for squashes and spawns: off by default, remembered in this browser.
// Tones are synthesised with Web Audio: no files, no requests.

const KEY = "virusgame.sound";
const MIN_GAP_MS = 70; // a burst of pushes plays one sound, not a buzz

export class Sound {
  constructor(button) {
    this.button = button;
    this.context = null;
    this.last = -Infinity;
    this.on = readSetting();
    this.show();
    button.addEventListener("click", () => {
      this.on = !this.on;
      writeSetting(this.on);
      this.show();
      if (this.on) this.play("spawn"); // also unlocks audio: browsers need a gesture first
    });
  }

  show() {
    this.button.setAttribute("aria-pressed", String(this.on));
    this.button.title = this.on ? "Sound on (click to mute)" : "Sound off (click to turn on)";
  }

  play(kind) {
    if (!this.on) return;
    const now = performance.now();
    if (now - this.last < MIN_GAP_MS) return;
    this.last = now;
    try {
      this.context ??= new AudioContext();
      const ctx = this.context;
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const t = ctx.currentTime;
      // Squash: a quick falling pop; spawn: a soft rising blip.
      const [from, to, length] = kind === "squash" ? [520, 140, 0.12] : [300, 620, 0.16];
      osc.type = kind === "squash" ? "square" : "sine";
      osc.frequency.setValueAtTime(from, t);
      osc.frequency.exponentialRampToValueAtTime(to, t + length);
      gain.gain.setValueAtTime(0.08, t);
      gain.gain.exponentialRampToValueAtTime(0.001, t + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + length);
    } catch {
      /* no Web Audio here: stay silent */
    }
  }
}

function readSetting() {
  try {
    return localStorage.getItem(KEY) === "on";
  } catch {
    return false;
  }
}

function writeSetting(on) {
  try {
    localStorage.setItem(KEY, on ? "on" : "off");
  } catch {
    /* private mode: not remembered */
  }
}
