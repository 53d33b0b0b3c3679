"""The per-process penalty box: players (else cookie-less clients) cut for abuse refused for a while.

Many people share one address (a school, an office behind NAT), so a penalty falls on who
abused, never on everyone behind their address: when the app cuts a socket for abuse
(`strike`: ping floods, message floods, each a 1008) or refuses a handshake (`hold`: over the
snapshot bucket), it boxes the socket's player, or its address only for a socket opened
without the player cookie (a script: the page always has one), and that player's next
handshakes are refused (`RefuseBoxed`, 403) before the consumer, its neighbours' are not.

A strike boxes for VIRUS_ABUSE_PENALTY seconds, doubled for each strike after the previous
box ended, up to VIRUS_ABUSE_PENALTY_MAX; someone quiet for that long after their box is
forgotten and starts again from the first. Sockets cut while the box is on (the abuser's
others) add nothing. A hold boxes for as long as the refusal would last anyway (the bucket's
wait) and never doubles. Out of the box and until forgotten, the boxed are on probation:
PROBATION_RATE new sockets a second at most.

A refused handshake still costs a TCP accept, daphne's HTTP parse and autobahn's handshake,
and an abuser that reconnects at once makes a hundred of those a second (docs/performance.md,
the abuse phase). So every refused handshake also counts against its address (`refused`);
past ABUSIVE_RATE a second sustained (ABUSIVE_BURST at once), far more than a school's pages
make (they back off after a refusal), the address itself is blocked for VIRUS_ABUSE_PENALTY
seconds at daphne's accept (transport.gate_accepts, before a byte is read; page loads
included): the one address-level penalty, for volumes no honest crowd reaches. Behind a
proxy daphne's peer is the proxy, so nothing is blocked at accept; the proxy's limit_req /
limit_conn are the address-level limits there, and across processes and nodes
(docs/production.md).
"""

import logging
import time
from functools import cache, lru_cache

from django.conf import settings

from viruses import players
from viruses.logs import kv

from .ratelimit import client_key

# Addresses remembered at most; beyond, the oldest are forgotten (an attacker rotating
# addresses must not grow the server without bound).
MAX_ADDRESSES = 10_000  # ~2 MB
PRUNE_EVERY = 1024  # boxings between sweeps of forgotten addresses
# Out of the box, an address is on probation until forgotten: new connections at this pace
# at most (per second, and at once). Else an attacker's every socket would reconnect the
# instant its box ends, all reaching the app before the first of them is cut again.
PROBATION_RATE = 2.0
PROBATION_BURST = 4
# Refused handshakes from one address beyond which the address is blocked at accept.
ABUSIVE_RATE = 10.0  # a second, sustained
ABUSIVE_BURST = 100  # at once: a school's 60 pages refused together, with room to spare

logger = logging.getLogger(__name__)

_key = lru_cache(maxsize=4096)(client_key)  # at accept, for every connection


class Box:
    """One address: boxed until when, strikes in a row, then its probation bucket."""

    __slots__ = ("until", "strikes", "tokens", "stamp")

    def __init__(self, until: float, strikes: int):
        self.until, self.strikes = until, strikes
        self.tokens, self.stamp = float(PROBATION_BURST), until  # full when the box ends


class Pace:
    """One address's refused handshakes: a bucket of ABUSIVE_BURST, and blocked until when."""

    __slots__ = ("tokens", "stamp", "until")

    def __init__(self, now: float):
        self.tokens, self.stamp, self.until = float(ABUSIVE_BURST), now, 0.0


class PenaltyBox:
    def __init__(self, first: float, longest: float, clock=time.monotonic):
        self.first, self.longest, self.clock = first, max(first, longest), clock
        self.boxes: dict[str, Box] = {}  # by player, else by address (`client_key`)
        self.paces: dict[str, Pace] = {}  # by address
        self.boxings = 0

    @property
    def on(self) -> bool:
        return self.first > 0

    def boxed(self, address: str, player=None) -> bool:
        """Whether `player` (else cookie-less `address`) is in the box now."""
        box = self.boxes.get(_key(address, player and str(player)))
        return box is not None and box.until > self.clock()

    def refuses(self, address: str, player=None) -> bool:
        """Whether to refuse a socket of `player` (else cookie-less `address`) now: boxed, or over
        its probation pace."""
        box = self.boxes.get(_key(address, player and str(player)))
        if box is None:
            return False
        now = self.clock()
        if box.until > now:
            return True
        if now - box.until > self.longest:
            return False  # forgotten
        box.tokens = min(PROBATION_BURST, box.tokens + (now - box.stamp) * PROBATION_RATE)
        box.stamp = now
        if box.tokens < 1:
            return True
        box.tokens -= 1
        return False

    def strike(self, address: str, reason: str, player=None) -> float | None:
        """Box `player` (else cookie-less `address`) for abuse: the seconds, None if boxed already."""
        if not self.on or not address:
            return None
        now, key = self.clock(), _key(address, player and str(player))
        box = self.boxes.get(key)
        if box is not None and box.until > now:
            return None  # another of its sockets, cut for the same abuse
        strikes = 1 if box is None or now - box.until > self.longest else box.strikes + 1
        seconds = min(self.first * 2 ** (strikes - 1), self.longest)
        self._put(key, Box(now + seconds, strikes), now)
        logger.warning(
            kv("ws.penalty", client=address, reason=reason, seconds=seconds, strikes=strikes, player=player)
        )
        return seconds

    def hold(self, address: str, seconds: float, player=None) -> None:
        """Box `player` (else cookie-less `address`) for `seconds` after a refused handshake
        (no strike: never doubles)."""
        if not self.on or not address or seconds <= 0:
            return
        now, key = self.clock(), _key(address, player and str(player))
        box = self.boxes.get(key)
        if box is not None and box.until >= now + seconds:
            return
        # Keep its strikes: a refusal must not make an abuser's record look clean.
        strikes = box.strikes if box is not None and now - box.until <= self.longest else 0
        self._put(key, Box(now + seconds, strikes), now)

    def refused(self, address: str) -> None:
        """Count a handshake refused to someone at `address`; past the abusive pace, block the address."""
        if not self.on or not address:
            return
        now, key = self.clock(), _key(address)
        pace = self.paces.get(key)
        if pace is None:
            if len(self.paces) >= MAX_ADDRESSES:
                self._prune(now)
            pace = self.paces[key] = Pace(now)
        pace.tokens = min(ABUSIVE_BURST, pace.tokens + (now - pace.stamp) * ABUSIVE_RATE)
        pace.stamp = now
        if pace.tokens >= 1:
            pace.tokens -= 1
            return
        if pace.until <= now:
            logger.warning(kv("ws.blocked", client=address, seconds=self.first, rate=ABUSIVE_RATE))
        pace.until = now + self.first

    def blocks(self, address: str) -> bool:
        """Whether to refuse every new connection from `address` at accept (an abusive pace)."""
        pace = self.paces.get(_key(address))
        return pace is not None and pace.until > self.clock()

    def _put(self, key: str, box: Box, now: float) -> None:
        self.boxes.pop(key, None)  # re-insert: the dict's order is then oldest boxing first
        self.boxes[key] = box
        self.boxings += 1
        if self.boxings % PRUNE_EVERY == 0 or len(self.boxes) > MAX_ADDRESSES:
            self._prune(now)

    def _prune(self, now: float) -> None:
        forgotten = [key for key, box in self.boxes.items() if now - box.until > self.longest]
        for key in forgotten:
            del self.boxes[key]
        while len(self.boxes) > MAX_ADDRESSES:
            del self.boxes[next(iter(self.boxes))]
        # A pace whose bucket has refilled and that blocks nothing is as good as new.
        refilled = ABUSIVE_BURST / ABUSIVE_RATE
        for key in [k for k, p in self.paces.items() if p.until <= now and now - p.stamp > refilled]:
            del self.paces[key]
        while len(self.paces) >= MAX_ADDRESSES:
            del self.paces[next(iter(self.paces))]


@cache
def box() -> PenaltyBox:
    """This process's box, from VIRUS_ABUSE_PENALTY and VIRUS_ABUSE_PENALTY_MAX."""
    return PenaltyBox(settings.VIRUS_ABUSE_PENALTY, settings.VIRUS_ABUSE_PENALTY_MAX)


class RefuseBoxed:
    """Refuse (403) the WebSocket handshake of a boxed player (else cookie-less address) before
    anything else runs, and count it against its address (`PenaltyBox.refused`)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, scope, receive, send):
        # Not async: it returns the coroutine to run, so an idle socket holds no frame of it.
        client = scope.get("client")
        if scope["type"] == "websocket" and client and box().refuses(client[0], players.from_scope(scope)):
            box().refused(client[0])
            return self.refuse(receive, send)
        return self.inner(scope, receive, send)

    @staticmethod
    async def refuse(receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.close"})
