"""The Redis client for state every server shares: rate-limit buckets and admission places."""

from functools import cache

import redis

from . import sentinel


@cache
def redis_client(url: str) -> redis.Redis:
    # Short timeouts: each call sits on a request or a handshake, and both fail open when
    # Redis is slow or gone.
    if sentinel.is_sentinel_url(url):
        return sentinel.client(url, socket_timeout=1, socket_connect_timeout=1)
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
