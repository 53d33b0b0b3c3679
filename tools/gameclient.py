"""The page's rules for following the game over a socket, for every Python client.

`Feed` is what viruses/static/viruses/feed.js is to the page: it applies changes in `seq`
order, ignores ones it already has, holds back ones that arrive ahead of a hole, says when
a hole has stayed open long enough to ask for a resync, and lets a snapshot replace
everything. It does no I/O and reads no clock: callers pass `now` and send the resync.
"""

import json

GAP_TIMEOUT = 1.5  # s a hole may stay open before a resync (feed.js's GAP_TIMEOUT_MS)
CHANGES = ("virus.created", "virus.killed")


def decode(frame: str | bytes) -> list[dict]:
    """The messages of one server frame: a JSON object, or a JSON array of them in order."""
    data = json.loads(frame)
    return data if isinstance(data, list) else [data]


class Feed:
    """One client's view of the game, built from snapshots and seq-ordered changes."""

    def __init__(self, gap_timeout: float = GAP_TIMEOUT):
        self.gap_timeout = gap_timeout
        self.seq: int | None = None  # last applied change; None until this socket's snapshot
        self.viruses: dict[str, dict] = {}
        self.online = 0
        self.ahead: dict[int, dict] = {}  # seq -> change that arrived ahead of a hole
        self.gap_since: float | None = None  # when the hole opened, or the last resync was asked
        self.resync_pending = False

    def reset(self) -> None:
        """A new socket: its snapshot rules, so forget what the last one left pending."""
        self.seq, self.ahead, self.gap_since, self.resync_pending = None, {}, None, False

    def receive(self, message: dict, now: float) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.seq = message["seq"]
            self.viruses = {v["id"]: v for v in message["viruses"]}
            self.online = message.get("online", self.online)
            self.resync_pending = False
            self.gap_since = None
            self._drain(now)
        elif kind == "presence":
            self.online = message["online"]
        elif kind in CHANGES:
            if self.seq is not None and message["seq"] <= self.seq:
                return  # already applied, or included in the snapshot
            self.ahead[message["seq"]] = message  # before the snapshot, keep it for after
            self._drain(now)

    def _drain(self, now: float) -> None:
        if self.seq is None:
            return
        while (message := self.ahead.pop(self.seq + 1, None)) is not None:
            self.seq = message["seq"]
            if message["type"] == "virus.created":
                self.viruses[message["virus"]["id"]] = message["virus"]
            else:
                self.viruses.pop(message["id"], None)
        self.ahead = {seq: m for seq, m in self.ahead.items() if seq > self.seq}
        if not self.ahead:
            self.gap_since = None
        elif self.gap_since is None:
            self.gap_since = now  # the timer runs from when the hole opened

    @property
    def resync_at(self) -> float | None:
        """When to ask for a snapshot if the hole is still open then (None: no hole)."""
        return None if self.gap_since is None else self.gap_since + self.gap_timeout

    def resync_due(self, now: float) -> bool:
        return self.resync_at is not None and now >= self.resync_at

    def resync_sent(self, now: float) -> None:
        """A resync went out: the next one is due a gap timeout later if no snapshot answers."""
        self.resync_pending = True
        self.gap_since = now

    @property
    def behind(self) -> bool:
        return bool(self.ahead) or self.resync_pending
