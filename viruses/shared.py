"""Where state every server shares lives: rate-limit buckets, admission places, idempotency
keys, the leaderboard's claim. `store_url()` chooses, in this one place, between the first
REDIS_URL's Redis (every process and node) and this process's memory (no Redis: one process).
"""

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio
from django.conf import settings

from . import sentinel

# Short timeouts: each call sits on a request, an action or a handshake, and all of them
# fail open when Redis is slow or gone.
TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}


def store_url() -> str | None:
    """The Redis that holds the shared state, or None: each module keeps it in memory."""
    return settings.REDIS_URLS[0] if settings.REDIS_URLS else None


@cache
def redis_client(url: str) -> redis.Redis:
    if sentinel.is_sentinel_url(url):
        return sentinel.client(url, **TIMEOUTS)
    return redis.Redis.from_url(url, **TIMEOUTS)


# An asyncio client's connections belong to the event loop that opened them: one client per loop.
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def aredis_client(url: str) -> redis.asyncio.Redis:
    """`redis_client` for the running event loop: its calls need no thread."""
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    if url not in clients:
        if sentinel.is_sentinel_url(url):
            clients[url] = sentinel.aclient(url, **TIMEOUTS)
        else:
            clients[url] = redis.asyncio.Redis.from_url(url, **TIMEOUTS)
    return clients[url]
