"""Socket admission: reserve a place first, then decide, atomically everywhere.

Two kinds of places: an address's (VIRUS_MAX_CONNECTIONS_PER_ADDRESS) and a room's
(VIRUS_ROOM_MAX_PLAYERS), each set keyed by its address or room code.

Counting open sockets and then opening one loses a race: a burst of handshakes from one
address all see the same old count (measured: 961 of 1,000 admitted under a cap of 20).
Here each handshake adds its channel to the address's set and, in the same atomic step,
learns whether the set is now over the cap; if so it takes itself out again and is refused.
With Redis (REDIS_URL) the set is a sorted set shared by every server and node, changed by
one Lua script; each member expires unless its server's presence heartbeat renews it, so a
server that dies leaks nothing for longer than it takes its rows to go stale. Without
Redis (one process) the set lives in memory.
"""

import logging
import threading
import time
from functools import cache

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from viruses.logs import kv
from viruses.shared import redis_client, store_url

logger = logging.getLogger(__name__)

# KEYS[1] the address's set; ARGV: member, now, expiry of the member, the cap, key TTL.
RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[1], ARGV[1])
    return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def lifetime() -> float:
    """Seconds a reservation lasts unless renewed: as long as a stale row counts (selectors)."""
    return 3 * settings.VIRUS_PRESENCE_HEARTBEAT


class RedisPlaces:
    def __init__(self, url: str, prefix: str, kind: str = "address"):
        self.client = redis_client(url)
        self.prefix = f"{prefix}:ws-{kind}"
        self.reserve_script = self.client.register_script(RESERVE)

    def key(self, address: str) -> str:
        return f"{self.prefix}:{address}"

    def reserve(self, address: str, member: str, limit: int) -> bool:
        now = time.time()
        ttl = int(lifetime()) + 1
        args = [member, now, now + lifetime(), limit, ttl]
        return bool(self.reserve_script(keys=[self.key(address)], args=args))

    def release(self, address: str, member: str) -> None:
        self.client.zrem(self.key(address), member)

    def renew(self, places: dict[str, str]) -> None:
        expires = time.time() + lifetime()
        with self.client.pipeline(transaction=False) as pipe:
            for member, address in places.items():
                pipe.zadd(self.key(address), {member: expires}, xx=True)
                pipe.expire(self.key(address), int(lifetime()) + 1)
            pipe.execute()

    def count(self, address: str) -> int:
        self.client.zremrangebyscore(self.key(address), "-inf", time.time())
        return self.client.zcard(self.key(address))


class LocalPlaces:
    """The same for a single process (no Redis): a lock makes reserve-then-decide atomic."""

    def __init__(self):
        self.lock = threading.Lock()
        self.places: dict[str, set[str]] = {}

    def reserve(self, address: str, member: str, limit: int) -> bool:
        with self.lock:
            taken = self.places.setdefault(address, set())
            if len(taken) >= limit:
                return False
            taken.add(member)
            return True

    def release(self, address: str, member: str) -> None:
        with self.lock:
            taken = self.places.get(address, set())
            taken.discard(member)
            if not taken:
                self.places.pop(address, None)

    def renew(self, places: dict[str, str]) -> None:
        pass  # nothing outlives this process

    def count(self, address: str) -> int:
        return len(self.places.get(address, ()))


@cache
def places(kind: str = "address") -> RedisPlaces | LocalPlaces:
    if url := store_url():
        return RedisPlaces(url, settings.REDIS_PREFIX, kind)
    return LocalPlaces()


def reserve(address: str, member: str) -> bool:
    """Take one of the address's VIRUS_MAX_CONNECTIONS_PER_ADDRESS places; False when none is left.

    Fails open (True, logged) when Redis does not answer: the socket would fail anyway.
    """
    limit = settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS
    if limit <= 0 or not address:
        return True
    try:
        return places().reserve(address, member, limit)
    except redis.RedisError as exc:
        logger.warning(kv("ws.admission_unavailable", error=f"{type(exc).__name__}: {exc}"))
        return True


def release(address: str, member: str) -> None:
    """Give the place back; safe to repeat. Failing, it expires (lifetime())."""
    if not address:
        return
    try:
        places().release(address, member)
    except redis.RedisError as exc:
        logger.warning(kv("ws.admission_release_failed", error=f"{type(exc).__name__}: {exc}"))


def renew(places_by_member: dict[str, str], rooms: dict[str, str] | None = None) -> None:
    """Keep this server's sockets' places ({channel: address}, {channel: room code}) from expiring."""
    places().renew({member: address for member, address in places_by_member.items() if address})
    if rooms:
        places("room").renew(rooms)


def count(address: str) -> int:
    """Places taken by one address (for operators and tests)."""
    return places().count(address)


async def areserve(address: str, member: str) -> bool:
    """`reserve` off the event loop; without a cap, no thread hop at all (a connect storm)."""
    if settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS <= 0 or not address:
        return True
    return await sync_to_async(reserve, thread_sensitive=False)(address, member)


async def arelease(address: str, member: str) -> None:
    if settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS <= 0 or not address:
        return  # nothing was reserved
    await sync_to_async(release, thread_sensitive=False)(address, member)


def seat(code: str, member: str) -> bool:
    """Take one of the room's VIRUS_ROOM_MAX_PLAYERS places; False when it is full.

    Exact across processes: concurrent joins cannot overshoot, as counting rows did.
    Fails open like `reserve`.
    """
    try:
        return places("room").reserve(code, member, settings.VIRUS_ROOM_MAX_PLAYERS)
    except redis.RedisError as exc:
        logger.warning(kv("ws.admission_unavailable", error=f"{type(exc).__name__}: {exc}"))
        return True


def unseat(code: str, member: str) -> None:
    try:
        places("room").release(code, member)
    except redis.RedisError as exc:
        logger.warning(kv("ws.admission_release_failed", error=f"{type(exc).__name__}: {exc}"))


aseat = sync_to_async(seat, thread_sensitive=False)
aunseat = sync_to_async(unseat, thread_sensitive=False)
