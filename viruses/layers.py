"""The channel layer: channels-redis's core layer, with one Redis reader per process."""

import asyncio

from channels_redis.core import BoundedQueue, RedisChannelLayer


class LocalFanoutRedisChannelLayer(RedisChannelLayer):
    """channels-redis's core layer, with one reader per process for the consumers' channels.

    The stock `receive()` makes every idle consumer race for a lock with two fresh tasks per
    message and cancel the loser: O(N) task churn per group message for N sockets, the main
    cost of a fan-out (docs/performance.md). Here one task per event loop pops this
    process's Redis queue with the layer's own `receive_single` (same capacity, expiry and
    backup semantics, same Redis data, so other processes and tools see no difference) and
    hands each message to the bounded buffer of every local channel it names; a consumer's
    `receive()` is a plain `queue.get()`. Buffers come and go as in the core layer (made on
    demand, dropped when drained). A Redis error is raised in every waiting consumer, as
    before, and the next `receive()` starts a new reader.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._readers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._local: dict[str, BoundedQueue] = {}

    def _buffer(self, channel: str) -> BoundedQueue:
        queue = self._local.get(channel)
        if queue is None:
            queue = self._local[channel] = BoundedQueue(self.get_capacity(channel))
        return queue

    async def receive(self, channel):
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        queue = self._buffer(channel)
        loop = asyncio.get_running_loop()
        reader = self._readers.get(loop)
        if reader is None or reader.done():
            self._readers[loop] = loop.create_task(self._read(self.non_local_name(channel)))
        try:
            item = await queue.get()
        finally:
            if queue.empty() and self._local.get(channel) is queue:
                del self._local[channel]
        if isinstance(item, _ReadFailed):
            raise item.error
        return item

    async def _read(self, real_channel: str) -> None:
        while self._local:
            try:
                channels, message = await self.receive_single(real_channel)
            except Exception as exc:
                for channel in list(self._local):
                    self._put(channel, _ReadFailed(exc))
                return
            for channel in channels if isinstance(channels, list) else (channels,):
                self._put(channel, message)

    def _put(self, channel: str, item) -> None:
        try:
            self._buffer(channel).put_nowait(item)  # full: drops the oldest, as the core layer does
        except RuntimeError:  # its event loop is closed (tests run one loop per case)
            self._local.pop(channel, None)

    async def flush(self):
        self._local.clear()
        await super().flush()


class _ReadFailed:
    def __init__(self, error: Exception):
        self.error = error
