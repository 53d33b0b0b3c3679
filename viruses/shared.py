"""The Redis client for state every server shares: rate-limit buckets and admission places."""

from functools import cache

import redis


@cache
def redis_client(url: str) -> redis.Redis:
    # Short timeouts: each call sits on a request or a handshake, and both fail open when
    # Redis is slow or gone.
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
