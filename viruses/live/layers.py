"""The channel layer: channels-redis's core layer, with one Redis reader per process and prefix."""

import asyncio
import collections
import functools
import logging
import random
import time
from collections.abc import Callable

from channels_redis.core import RedisChannelLayer
from channels_redis.serializers import MsgPackSerializer
from redis.asyncio import BlockingConnectionPool

from viruses.logs import kv

from .coalesce import Coalesced

logger = logging.getLogger(__name__)
LOST_DATA_TTL = 60  # s a `lost_data` marker outlives its last check (its process gone)
channels_redis_logger = logging.getLogger("channels_redis.core")


class LocalFanoutRedisChannelLayer(RedisChannelLayer):
    """channels-redis's core layer, with one reader per Redis key for the consumers' channels.

    The stock `receive()` makes every idle consumer race for a lock with two fresh tasks per
    message and cancel the loser: O(N) task churn per group message for N sockets, the main
    cost of a fan-out (docs/performance.md#lever-one-reader). Here one task per event loop and per Redis key
    (the process-local channels of one prefix, `prefix.<client>!`) pops that key with the
    layer's own `receive_single` and hands each message to the buffer of every local channel
    it names; a consumer's `receive()` is a plain `queue.get()`. Everything else is the core
    layer's: the Redis data, capacity and expiry, the buffers (`receive_buffer`, made on
    demand, dropped when drained; here a `Buffer`), the client-prefix check. As in the core layer, a key is
    read only while a `receive()` waits on one of its channels (checked after each message).
    The reader pops with one BZPOPMIN per message, without the core layer's backup queue
    (an EVAL, a ZADD and a ZPOPMIN more per message, docs/performance.md#lever-one-pop):
    that queue gives a cancelled receive's message to the next one, but this reader is
    never cancelled while its process lives, and its keys die with the process.
    A Redis error is raised in every `receive()` waiting on that key, and the next
    `receive()` starts a new reader. `bypass` and `hand_over` let the process's fastlane
    (fanout.py) take a channel's group events from the reader itself.

    `group_add` sends the core layer's ZADD and EXPIRE in one pipeline for every channel
    joining at once (a connect storm: one command each took a fifth of a handshake's CPU).

    `group_send` takes one Redis round trip instead of the core layer's four: one script
    expires and reads the group, then expires, checks capacity and adds the message for each
    channel key, with the core layer's data, capacity and expiry (its msgpack payloads are
    put together in the script: `_one_trip`). Where the script cannot build them (several
    hosts, per-channel capacities, encryption, another serializer), or the group had more
    than ONE_TRIP_MAX_MEMBERS at its last send, it takes two: the group read, then one
    script per host.

    A host entry with `pool_wait` (seconds) gets a pool of at most `max_connections` that
    makes a caller wait that long for a free connection, instead of the core layer's pool,
    which opens one more connection for every concurrent call and keeps them all: after a
    storm of N handshakes, N idle Redis connections for the life of the process.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.receive_buffer = collections.defaultdict(functools.partial(Buffer, self.capacity))
        self._readers: dict[tuple[asyncio.AbstractEventLoop, str], _Reader] = {}
        # Called by the reader with each message and the local channels it names; returns
        # the channels still to be given the message through their `receive()` (fanout.py).
        self.bypass: Callable[[list[str], dict], list[str]] | None = None
        self._markers: frozenset[str] = frozenset()  # `lost_data` keys set at least once
        # Groups that had more than ONE_TRIP_MAX_MEMBERS at their last group_send (rooms never do).
        self._large_groups: set[str] = set()
        # Per host: the (group key, channel) pairs of every group_add waiting for its pipeline.
        self._joins = [
            Coalesced(functools.partial(self._add_to_groups, index)) for index in range(self.ring_size)
        ]

    async def lost_data(self, group: str, marker: str) -> bool:
        """Whether the Redis holding `group` lost its data since the last call (FLUSHALL, a
        restart without persistence, a failover to an empty replica): `marker`'s key, set by
        every call and kept for LOST_DATA_TTL seconds, is gone. False on the first call."""
        key = f"{self.prefix}:alive:{marker}"
        connection = self.connection(self.consistent_hash(group))
        previous = await connection.set(key, 1, ex=LOST_DATA_TTL, get=True)
        seen, self._markers = key in self._markers, self._markers | {key}
        return previous is None and seen

    def create_pool(self, index):
        host = dict(self.hosts[index])
        wait = host.pop("pool_wait", None)
        if wait is None or "address" not in host:
            return super().create_pool(index)
        return BlockingConnectionPool.from_url(host.pop("address"), timeout=wait, **host)

    async def group_add(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._joins[self.consistent_hash(group)]((self._group_key(group), channel))

    async def _add_to_groups(self, index: int, joins: list[tuple[str, str]]) -> None:
        now = time.time()
        groups = collections.defaultdict(dict)
        for key, channel in joins:
            groups[key][channel] = now
        async with self.connection(index).pipeline(transaction=False) as pipe:
            for key, members in groups.items():
                pipe.zadd(key, members)
                # As in the core layer: every member now is younger than the expiry.
                pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group, message):
        assert self.require_valid_group_name(group), "Group name not valid"
        if self._one_trip() and group not in self._large_groups:
            await self._group_send_in_one_trip(group, message)
            return
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channel_names = [x.decode("utf8") for x in members]
        if len(channel_names) <= ONE_TRIP_MAX_MEMBERS:
            self._large_groups.discard(group)
        by_connection, payloads, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            connection = self.connection(index)
            args = [payloads[k] for k in keys] + [capacities[k] for k in keys]
            args += [int(time.time()) - int(self.expiry), time.time(), self.expiry]
            over = await connection.register_script(GROUP_SEND)(keys=keys, args=args)
            _log_over_capacity(over, len(channel_names), group)

    def _one_trip(self) -> bool:
        """Whether the script can build every payload: msgpack, unencrypted, one host, one capacity."""
        serializer = self._serializer
        return (
            self.ring_size == 1
            and not self.channel_capacity
            and isinstance(serializer, MsgPackSerializer)
            and serializer.crypter is None
        )

    async def _group_send_in_one_trip(self, group: str, message: dict) -> None:
        # The core layer's payload for a key is the message with `__asgi_channel__`, the
        # list of the key's channels, added last, behind a random prefix. The script packs
        # that list and appends it to the message packed here with a nil in its place.
        packed = self._serializer.as_bytes({**message, "__asgi_channel__": None})
        length = self._serializer.random_prefix_length
        now = time.time()
        args = [
            int(now) - self.group_expiry,
            self.prefix,
            random.getrandbits(8 * length).to_bytes(length, "big") if length else b"",
            packed[: -len(NIL)],
            self.capacity,
            int(now) - int(self.expiry),
            now,
            self.expiry,
        ]
        connection = self.connection(0)
        over, members = await connection.register_script(GROUP_SEND_ONE_TRIP)(
            keys=[self._group_key(group)], args=args
        )
        if members > ONE_TRIP_MAX_MEMBERS:
            self._large_groups.add(group)
        _log_over_capacity(over, members, group)

    async def receive(self, channel):
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        real_channel = self.non_local_name(channel)
        assert real_channel.endswith(self.client_prefix + "!"), "Wrong client prefix"
        while True:
            item = await self._next(channel, real_channel)
            if isinstance(item, _HandOver):
                self._hand_over_now(channel, item)
            elif isinstance(item, _ReadFailed):
                raise item.error
            else:
                return item

    async def _next(self, channel: str, real_channel: str):
        queue = self.receive_buffer[channel]
        try:
            if queue.empty():
                waiting = self._reader(real_channel).waiting
                waiting[channel] = waiting.get(channel, 0) + 1
                try:
                    return await queue.get()
                finally:
                    if waiting[channel] == 1:
                        del waiting[channel]
                    else:
                        waiting[channel] -= 1
            return queue.get_nowait()
        finally:
            if queue.empty() and self.receive_buffer.get(channel) is queue:
                del self.receive_buffer[channel]

    def hand_over(self, channel: str, take: Callable[[list[dict]], list[dict]]) -> None:
        """Call `take(queued)` when `channel`'s `receive()` has returned everything queued so far.

        `queued` is what came for the channel since, in order; `take` returns what it leaves
        to `receive()`. The call happens in the same step as a `receive()`, so with `bypass`
        the reader can take over a channel without reordering or losing a message.
        """
        self.receive_buffer[channel].put_nowait(_HandOver(take))

    def _hand_over_now(self, channel: str, item: "_HandOver") -> None:
        queue = self.receive_buffer.get(channel)
        queued = []
        while queue is not None and not queue.empty():
            queued.append(queue.get_nowait())
        for left in item.take(queued):
            self._put(channel, left)

    def _reader(self, real_channel: str) -> "_Reader":
        """Return this loop's reader of `real_channel`, started if none is running."""
        key = (asyncio.get_running_loop(), real_channel)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = _Reader()
            reader.task = key[0].create_task(self._read(key, reader))
        return reader

    async def _read(self, key, reader: "_Reader") -> None:
        try:
            while reader.waiting:
                try:
                    channels, message = await self._pop(key[1])
                except Exception as exc:
                    for channel in reader.waiting:
                        self._put(channel, _ReadFailed(exc))
                    return
                if not isinstance(channels, list):
                    channels = [channels]
                if self.bypass is not None:
                    channels = self._bypass(channels, message)
                for channel in channels:
                    self._put(channel, message)
        finally:
            if self._readers.get(key) is reader:
                del self._readers[key]

    async def _pop(self, channel: str) -> tuple[str | list[str], dict]:
        """The next message of a process-local key, and the channel(s) it is for."""
        connection = self.connection(self.consistent_hash(channel))
        popped = None
        while popped is None:
            popped = await connection.bzpopmin(self.prefix + channel, timeout=self.brpop_timeout)
        message = self.deserialize(popped[1])
        return message.pop("__asgi_channel__", channel), message

    def _bypass(self, channels: list[str], message: dict) -> list[str]:
        try:
            return self.bypass(channels, message)
        except Exception:  # a bug there must not stop the reader: the consumers still relay
            logger.exception(kv("layer.bypass_failed", type=message.get("type")))
            self.bypass = None
            return channels

    def _put(self, channel: str, item) -> None:
        try:
            self.receive_buffer[channel].put_nowait(item)  # full: drops the oldest, as the core layer does
        except RuntimeError:  # the getter's event loop is closed (tests run one loop per case)
            self.receive_buffer.pop(channel, None)

    async def flush(self):
        """Flush Redis as the core layer does, and the messages already read into this process."""
        waited = {channel for reader in self._readers.values() for channel in reader.waiting}
        for channel in list(self.receive_buffer):
            if channel not in waited:  # a waiting receive() keeps its (empty) buffer
                del self.receive_buffer[channel]
        await super().flush()


# The core layer's clean-up pipeline and group-send script in one: for each channel key,
# drop expired messages, then add the message unless the key is at capacity.
GROUP_SEND = """
local n = #KEYS
local expired, now, expiry = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


# group_send's one round trip: the group's live members, then GROUP_SEND's work for each
# channel key (a process's channels share one: the name up to its "!"), with the payload
# `random prefix .. message head .. msgpack(channels)`. Returns {over capacity, members}.
# It writes keys it does not declare (found in the group): fine on one Redis, Sentinel's
# included; a Redis Cluster would refuse it, as channels-redis does not support one.
GROUP_SEND_ONE_TRIP = """
local group_expired, prefix, random_prefix, head = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local capacity, expired, now, expiry = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, group_expired)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local channels, keys = {}, {}
for _, channel in ipairs(members) do
    local bang = string.find(channel, '!', 1, true)
    local key = prefix .. (bang and string.sub(channel, 1, bang) or channel)
    if channels[key] == nil then
        channels[key] = {}
        keys[#keys + 1] = key
    end
    table.insert(channels[key], channel)
end
local over_capacity = 0
for _, key in ipairs(keys) do
    redis.call('ZREMRANGEBYSCORE', key, 0, expired)
    if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
        redis.call('ZADD', key, now, random_prefix .. head .. cmsgpack.pack(channels[key]))
        redis.call('EXPIRE', key, expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return {over_capacity, #members}
"""
NIL = b"\xc0"  # msgpack's nil
# Above this, two trips cost less CPU: the script spends about 1.1 us of Redis per member
# (1000 members: 1.2-1.4 ms of Redis and 0.3 of client against 0.35 and 0.85 in two trips).
ONE_TRIP_MAX_MEMBERS = 200


def _log_over_capacity(over: int, channels: int, group: str) -> None:
    if over > 0:  # the core layer's line, which logs.py turns into layer.drop
        channels_redis_logger.info("%s of %s channels over capacity in group %s", over, channels, group)


class Buffer:
    """A channel's messages read but not yet received, and its waiting `receive()` calls.

    The part of the core layer's `BoundedQueue` (an `asyncio.Queue`: four deques, about
    3 KB) that the layer uses, in three slots: every idle socket's `receive()` waits on one
    (docs/performance.md#lever-lean-buffer). Full, it drops the oldest message, as the core
    layer's does. As in `asyncio.Queue`, a put wakes the first getter, which takes the item
    itself, so a getter cancelled meanwhile loses nothing. Unbounded, it is also each
    daphne connection's input queue (`transport.lean_inputs`).
    """

    __slots__ = ("capacity", "getters", "items")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: collections.deque | None = None  # made by the first put
        self.getters: list[asyncio.Future] = []

    def empty(self) -> bool:
        return not self.items

    def full(self) -> bool:
        return self.qsize() >= self.capacity

    def qsize(self) -> int:
        return len(self.items) if self.items else 0

    def put_nowait(self, item) -> None:
        if self.items is None:
            self.items = collections.deque()
        if len(self.items) >= self.capacity:
            self.items.popleft()
        self.items.append(item)
        self._wake_next()

    def get_nowait(self):
        if not self.items:
            raise asyncio.QueueEmpty
        return self._pop()

    async def get(self):
        while not self.items:
            getter = asyncio.get_running_loop().create_future()
            self.getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if getter in self.getters:
                    self.getters.remove(getter)
                if self.items and not getter.cancelled():
                    self._wake_next()  # woken, then cancelled: the item is for the next getter
                raise
        return self._pop()

    def _pop(self):
        item = self.items.popleft()
        if not self.items:
            self.items = None  # an empty deque is 0.8 KB, kept for the life of a daphne connection
        return item

    def _wake_next(self) -> None:
        while self.getters:
            getter = self.getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class _Reader:
    """One event loop's reader of one Redis key, and the `receive()` calls waiting on it."""

    task: asyncio.Task

    def __init__(self):
        self.waiting: dict[str, int] = {}  # channel -> receive() calls waiting on it


class _HandOver:
    def __init__(self, take: Callable[[list[dict]], list[dict]]):
        self.take = take


class _ReadFailed:
    def __init__(self, error: Exception):
        self.error = error
