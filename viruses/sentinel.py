"""Redis through Sentinel: `REDIS_URL=redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/SERVICE[/DB]`.

The sentinels tell every client which server is the primary of SERVICE now; after a
failover, new connections go to the promoted replica. Each user of Redis gets it here:
the channel layer (`layer_host`, for channels-redis's own sentinel support), the cache that
holds the spawner's lock (`SentinelRedisCache`) and the short-timeout client of the rate
limits and admission (`client`, through `shared.redis_client`).

PASSWORD is the primary's and replicas' (`requirepass`, `masterauth`); the sentinels are
asked without one, so keep them on the private network.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio.sentinel
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.sentinel import Sentinel

SCHEME = "redis+sentinel"
FORMAT = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]"
SENTINEL_TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}
# A spawn turn counts once this many replicas hold the lock (and the primary could fail).
LOCK_REPLICAS = 1
LOCK_REPLICAS_WAIT_MS = 500  # under the cache's 1 s socket timeout (settings)


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse(url: str) -> SentinelURL:
    """Parse a `redis+sentinel://` URL; ValueError says what is wrong."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for host in filter(None, hosts.split(",")):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"sentinel {host!r} is not HOST:PORT; expected {FORMAT}")
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme != SCHEME or not sentinels or not path or len(path) > 2:
        raise ValueError(f"expected {FORMAT}")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"the database must be a number; expected {FORMAT}")
    password = unquote(parts.password) if parts.password else None
    return SentinelURL(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0, password)


def layer_host(url: str, **options) -> dict:
    """A channels-redis host entry that finds the primary through the sentinels."""
    config = parse(url)
    return {
        "sentinels": [list(s) for s in config.sentinels],
        "master_name": config.service,
        "sentinel_kwargs": dict(SENTINEL_TIMEOUTS),
        "db": config.db,
        "password": config.password,
        **options,
    }


def pool(url: str, **options) -> redis.sentinel.SentinelConnectionPool:
    """A connection pool to the service's current primary (redis-py's sync client)."""
    config = parse(url)
    sentinel = Sentinel(config.sentinels, sentinel_kwargs=dict(SENTINEL_TIMEOUTS))
    return redis.sentinel.SentinelConnectionPool(
        config.service, sentinel, db=config.db, password=config.password, **options
    )


def client(url: str, **options) -> redis.Redis:
    return redis.Redis(connection_pool=pool(url, **options))


def aclient(url: str, **options) -> redis.asyncio.Redis:
    """`client` for an event loop (redis-py's asyncio client)."""
    config = parse(url)
    sentinel = redis.asyncio.sentinel.Sentinel(config.sentinels, sentinel_kwargs=dict(SENTINEL_TIMEOUTS))
    return sentinel.master_for(config.service, db=config.db, password=config.password, **options)


class SentinelPoolFactory:
    """What Django's RedisCacheClient calls `pool_class`: `from_url(location, **options)`."""

    @staticmethod
    def from_url(url: str, **options) -> redis.sentinel.SentinelConnectionPool:
        return pool(url, **options)


class ReplicationNotConfirmed(redis.RedisError):
    """No replica acknowledged a lock in time: after a failover it might not exist."""


class SentinelRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options):
        super().__init__(servers, pool_class=SentinelPoolFactory, **options)

    def add(self, key, value, timeout):
        """SET NX, then WAIT until a replica has it: a lock that outlives a failover.

        The primary replicates asynchronously: without WAIT, a lock taken just before the
        primary dies may be missing on the promoted replica, and a second spawner would
        take it again in the same window. Unconfirmed, the lock stays taken and this raises.
        """
        if timeout == 0:
            return super().add(key, value, timeout)
        with self.get_client(key, write=True).pipeline(transaction=False) as pipe:
            pipe.set(key, self._serializer.dumps(value), ex=timeout, nx=True)
            pipe.execute_command("WAIT", LOCK_REPLICAS, LOCK_REPLICAS_WAIT_MS)
            added, replicas = pipe.execute()
        if added and replicas < LOCK_REPLICAS:
            raise ReplicationNotConfirmed(f"{replicas} of {LOCK_REPLICAS} replicas confirmed the lock")
        return bool(added)


class SentinelRedisCache(RedisCache):
    """Django's Redis cache, its primary found through the sentinels (LOCATION: a sentinel URL)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SentinelRedisCacheClient
