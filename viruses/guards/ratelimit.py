"""Token buckets per player or client address, shared by every server through Redis.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each
action takes one. A person clicking fast gets the burst at once and then the sustained
rate; a script cannot double its allowance at a clock-minute boundary, as it could with
fixed windows. Buckets:

- "action": creates and kills, over HTTP and WebSocket (VIRUS_RATE_LIMIT per minute
  sustained, VIRUS_RATE_BURST at once);
- "snapshot": full snapshots, i.e. GET /api/viruses/, WebSocket connects and resyncs
  (VIRUS_SNAPSHOT_RATE per second, VIRUS_SNAPSHOT_BURST at once);
- "rename": renames, per player (VIRUS_RENAME_RATE per minute, VIRUS_RENAME_BURST at once);
- "player": new players, per client address (VIRUS_NEW_PLAYER_RATE per minute,
  VIRUS_NEW_PLAYER_BURST at once), so that cookie-less requests cannot fill the table;
- "room" and "room_address": new rooms, per player (VIRUS_ROOM_CREATE_RATE per minute,
  VIRUS_ROOM_CREATE_BURST at once) and per client address (VIRUS_ROOM_ADDRESS_RATE,
  VIRUS_ROOM_ADDRESS_BURST).

A rate of 0 turns a bucket off. Without REDIS_URL the buckets live in this process.
"""

import ipaddress
import logging
import threading
import time
import weakref
from functools import cache

import redis
from django.conf import settings

from viruses.logs import kv
from viruses.shared import aredis_client, redis_client, store_url

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, now (s). Returns "0" when a token was
# taken, else the seconds until one is there (as a string: Lua numbers become integers).
# The caller's clock is used so that every server's view agrees when clocks are in sync;
# a clock running backwards only delays the refill.
TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""

clock = time.time  # replaced by tests


def limits(bucket: str) -> tuple[float, int]:
    """Return the bucket's (rate per second, burst) from the settings."""
    if bucket == "action":
        return settings.VIRUS_RATE_LIMIT / 60, settings.VIRUS_RATE_BURST
    if bucket == "snapshot":
        return settings.VIRUS_SNAPSHOT_RATE, settings.VIRUS_SNAPSHOT_BURST
    if bucket == "rename":
        return settings.VIRUS_RENAME_RATE / 60, settings.VIRUS_RENAME_BURST
    if bucket == "player":
        return settings.VIRUS_NEW_PLAYER_RATE / 60, settings.VIRUS_NEW_PLAYER_BURST
    if bucket == "room":
        return settings.VIRUS_ROOM_CREATE_RATE / 60, settings.VIRUS_ROOM_CREATE_BURST
    if bucket == "room_address":
        return settings.VIRUS_ROOM_ADDRESS_RATE / 60, settings.VIRUS_ROOM_ADDRESS_BURST
    raise ValueError(f"unknown rate-limit bucket {bucket!r}")


def retry_after(bucket: str, address: str, player: str | None = None) -> float | None:
    """Take one token for `player` (else the client `address`); None if allowed, else seconds to wait.

    Fails open: when Redis does not answer the action is allowed and a line is logged.
    """
    request = _request(bucket, address, player)
    if request is None:
        return None
    url = store_url()
    if url is None:
        return _memory.take(*request) or None
    key, *args = request
    try:
        return float(_script(url)(keys=[key], args=args)) or None
    except redis.RedisError as exc:
        return _unavailable(bucket, exc)


async def aretry_after(bucket: str, address: str, player: str | None = None) -> float | None:
    """`retry_after` for consumers: the round trip through the event loop's own Redis client, no thread."""
    request = _request(bucket, address, player)
    if request is None:
        return None
    url = store_url()
    if url is None:
        return _memory.take(*request) or None  # in this process: no I/O
    key, *args = request
    try:
        return float(await _ascript(url)(keys=[key], args=args)) or None
    except redis.RedisError as exc:
        return _unavailable(bucket, exc)


def _request(bucket: str, address: str, player: str | None) -> tuple | None:
    """The bucket's key, rate, burst and the time now; None when the bucket is off."""
    rate, burst = limits(bucket)
    if rate <= 0:
        return None
    key = f"{settings.REDIS_PREFIX}:rate:{bucket}:{client_key(address, player)}"
    return key, rate, max(1, burst), clock()


def _unavailable(bucket: str, exc: Exception) -> None:
    # The game must stay playable when Redis is down: fail open, loudly.
    logger.warning(kv("ratelimit.unavailable", bucket=bucket, error=type(exc).__name__))


def client_key(address: str, player: str | None = None) -> str:
    """Who a bucket belongs to: the player if known, else the address (IPv6 by its /64)."""
    if player:
        return f"p:{player}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"a:{address[:64]}"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return f"a:{ip.ipv4_mapped}"
        # One subscriber usually gets a whole /64: counting single addresses would give
        # each of them 2**64 buckets.
        return f"a:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"a:{ip}"


@cache
def _script(url: str):
    return redis_client(url).register_script(TAKE)  # EVALSHA, loaded on demand


_ascripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per asyncio client, so per loop


def _ascript(url: str):
    client = aredis_client(url)
    if client not in _ascripts:
        _ascripts[client] = client.register_script(TAKE)
    return _ascripts[client]


class MemoryBuckets:
    """The same buckets in this process, for development and tests without Redis."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, burst: int, now: float) -> float:
        with self.lock:
            tokens, at = self.buckets.get(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - at) * rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate
            self.buckets[key] = (tokens, max(now, at))
            if len(self.buckets) > 100_000:  # forget the oldest clients rather than grow
                self.buckets = dict(list(self.buckets.items())[50_000:])
            return wait


_memory = MemoryBuckets()
