"""The WebSocket message schema and the only place that talks to the channel layer.

Every message is encoded once, here, and carried through the group as ready-made text,
so a consumer relays it without re-encoding it per client.
"""

import asyncio
import json
import logging
import re
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import BoundedQueue, RedisChannelLayer

from .logs import kv

GROUP = "viruses"
_SEQ = re.compile(r'"seq":(\d+)')

logger = logging.getLogger(__name__)


def virus_json(virus) -> dict:
    """Return the contract's JSON form of a virus."""
    return {
        "id": str(virus.id),
        "kind": virus.kind,
        "x": virus.x,
        "y": virus.y,
        "created_at": virus.created_at.isoformat(),
    }


def snapshot(*, seq: int, viruses: list[dict], online: int) -> str:
    return _encode({"type": "snapshot", "seq": seq, "viruses": viruses, "online": online})


def error(message: str) -> str:
    return _encode({"type": "error", "error": message})


def virus_created(*, seq: int, virus: dict) -> dict:
    return _event("virus.created", {"type": "virus.created", "seq": seq, "virus": virus})


def virus_killed(*, seq: int, virus_id: str) -> dict:
    return _event("virus.killed", {"type": "virus.killed", "seq": seq, "id": virus_id})


def presence(*, online: int) -> dict:
    return _event("presence", {"type": "presence", "online": online})


async def apush(event: dict) -> bool:
    """Send a group event to every connected client; return whether the layer took it.

    A failure is logged, never raised: pushes run after commit, so they cannot undo the
    change, and clients catch up from the seq gap (resync) or their next snapshot.
    """
    seq = _SEQ.search(event["text"])
    seq = seq.group(1) if seq else None
    started = time.monotonic()
    try:
        await get_channel_layer().group_send(GROUP, event)
    except Exception as exc:
        logger.error(kv("push.error", type=event["type"], seq=seq, error=f"{type(exc).__name__}: {exc}"))
        return False
    logger.info(kv("push", type=event["type"], seq=seq, ms=(time.monotonic() - started) * 1000))
    return True


def push(event: dict) -> bool:
    """`apush` for sync callers (views, commands, the shell, on_commit callbacks)."""
    return async_to_sync(apush)(event)


def _event(kind: str, message: dict) -> dict:
    return {"type": kind, "text": _encode(message)}


def _encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


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
