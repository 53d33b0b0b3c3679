"""The Redis clients for state every server shares: rate-limit buckets, admission places, idempotency keys."""

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio

from . import sentinel

# Short timeouts: each call sits on a request, an action or a handshake, and all of them
# fail open when Redis is slow or gone.
TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}


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
