"""The per-process penalty box: client addresses whose new connections are refused for a while.

Refusing an abusive client inside the application is too late on a bare daphne: by then its
connection has cost a TCP accept, daphne's HTTP parse, autobahn's handshake, an ASGI scope,
a consumer and a Redis round trip, and an attacker that reconnects at once after its 1008
makes a hundred of those a second (docs/performance.md#lever-penalty-box). So the app puts
the address in this box when it cuts a socket for abuse (`strike`: ping floods, message
floods, each a 1008) or refuses a handshake (`hold`: over the socket cap or the snapshot
bucket), and daphne's listening socket refuses the address's next connections at accept
(transport.gate_accepts), before a byte is read; behind a proxy, where daphne's peer is the
proxy, the WebSocket handshake is refused instead (`RefuseBoxed`, 403), before the consumer.

A strike boxes the address for VIRUS_ABUSE_PENALTY seconds, doubled for each strike after
the previous box ended, up to VIRUS_ABUSE_PENALTY_MAX; an address quiet for that long after
its box is forgotten and starts again from the first. Sockets cut while the box is on (the
abuser's others) add nothing. A refusal boxes for as long as the refusal would last anyway
(the bucket's wait, or the first penalty for the cap) and never doubles. Out of its box and
until forgotten, an address is on probation: at accept, PROBATION_RATE new connections a
second at most. So honest players behind the abuser's NAT lose new connections (not the
open ones) for the first penalty, then are paced, longer only while the abuse goes on.
Per process: across processes and nodes the proxy's limit_req / limit_conn are the shared
limit (docs/production.md).
"""

import logging
import time
from functools import cache, lru_cache

from django.conf import settings

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

logger = logging.getLogger(__name__)

_key = lru_cache(maxsize=4096)(client_key)  # at accept, for every connection


class Box:
    """One address: boxed until when, strikes in a row, then its probation bucket."""

    __slots__ = ("until", "strikes", "tokens", "stamp")

    def __init__(self, until: float, strikes: int):
        self.until, self.strikes = until, strikes
        self.tokens, self.stamp = float(PROBATION_BURST), until  # full when the box ends


class PenaltyBox:
    def __init__(self, first: float, longest: float, clock=time.monotonic):
        self.first, self.longest, self.clock = first, max(first, longest), clock
        self.boxes: dict[str, Box] = {}
        self.boxings = 0

    @property
    def on(self) -> bool:
        return self.first > 0

    def boxed(self, address: str) -> bool:
        """Whether `address` is in the box now."""
        box = self.boxes.get(_key(address))
        return box is not None and box.until > self.clock()

    def refuses(self, address: str) -> bool:
        """Whether to refuse a new connection from `address` now: boxed, or over its probation pace."""
        box = self.boxes.get(_key(address))
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

    def strike(self, address: str, reason: str) -> float | None:
        """Box `address` for abuse; the seconds, or None if it was boxed already (or off)."""
        if not self.on or not address:
            return None
        now, key = self.clock(), _key(address)
        box = self.boxes.get(key)
        if box is not None and box.until > now:
            return None  # another of its sockets, cut for the same abuse
        strikes = 1 if box is None or now - box.until > self.longest else box.strikes + 1
        seconds = min(self.first * 2 ** (strikes - 1), self.longest)
        self._put(key, Box(now + seconds, strikes), now)
        logger.warning(kv("ws.penalty", client=address, reason=reason, seconds=seconds, strikes=strikes))
        return seconds

    def hold(self, address: str, seconds: float) -> None:
        """Box `address` for `seconds` after a refused handshake (no strike: never doubles)."""
        if not self.on or not address or seconds <= 0:
            return
        now, key = self.clock(), _key(address)
        box = self.boxes.get(key)
        if box is not None and box.until >= now + seconds:
            return
        # Keep its strikes: a refusal must not make an abuser's record look clean.
        strikes = box.strikes if box is not None and now - box.until <= self.longest else 0
        self._put(key, Box(now + seconds, strikes), now)

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


@cache
def box() -> PenaltyBox:
    """This process's box, from VIRUS_ABUSE_PENALTY and VIRUS_ABUSE_PENALTY_MAX."""
    return PenaltyBox(settings.VIRUS_ABUSE_PENALTY, settings.VIRUS_ABUSE_PENALTY_MAX)


class RefuseBoxed:
    """Refuse (403) a WebSocket handshake from a boxed address, before anything else runs.

    Under a bare daphne the accept gate has refused most of them already; behind a proxy
    (daphne --proxy-headers) this is where the client's own address is first known.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        client = scope.get("client")
        if scope["type"] == "websocket" and client and box().boxed(client[0]):
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})
            return None
        return await self.inner(scope, receive, send)
