// The rooms forms' pure rules (viruses/static/viruses/rooms.js), without a browser: `node --test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// Imported from its text, as feed.test.mjs explains.
const source = readFileSync(new URL("../../viruses/static/viruses/rooms.js", import.meta.url));
const { normaliseCode, failureText, CODE_ALPHABET } = await import(
  `data:text/javascript;base64,${source.toString("base64")}`
);

test("a typed code is taken in any case, with spaces or a dash anywhere, answered in upper case", () => {
  for (const typed of ["K7QM2", "k7qm2", "  k7qm2 ", "K7Q M2", "k7q-m2", "\tK 7 Q M 2\n"]) {
    assert.deepEqual(normaliseCode(typed), { code: "K7QM2" }, JSON.stringify(typed));
  }
});

test("a code with a look-alike, the wrong length or another alphabet is refused before asking the server", () => {
  for (const typed of ["K7QM0", "O7QM2", "K7QI2", "K7QL2", "K1QM2", "K7QM", "K7QM2X", "K7Q?2", "ÉCOLE"]) {
    const answer = normaliseCode(typed);
    assert.equal(answer.code, undefined, typed);
    assert.match(answer.error, /5 letters and digits, without 0, O, 1, I or L/, typed);
  }
  assert.match(normaliseCode("   ").error, /type the room's code/i);
  assert.match(normaliseCode(undefined).error, /type the room's code/i);
});

test("the page's alphabet is the server's (DESIGN.md): no 0, O, 1, I or L", () => {
  assert.equal(CODE_ALPHABET, "23456789ABCDEFGHJKMNPQRSTUVWXYZ");
});

test("a failed rooms call says why in a sentence: offline, too many, or the server's own word", () => {
  assert.match(failureText(0, undefined), /can't reach the server/i);
  assert.match(failureText(429, "too many rooms"), /wait a minute/i);
  assert.equal(failureText(400, "names may hold letters"), "Names may hold letters.");
  assert.equal(failureText(403, "only the room's host may do that!"), "Only the room's host may do that!");
  assert.equal(failureText(502, undefined), "Something went wrong (error 502).");
});
