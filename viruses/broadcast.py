"""The only place that pushes to the channel layer: group events built by `messages`.

Each world has its group: the public world's is GROUP, a room's `Room.group` (`room.K7QM2`).
"""

import asyncio
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import messages
from .logs import kv

GROUP = "viruses"
BACKLOG = 10_000  # pushes a server process may hold for its event loop before it drops some
BATCH_MAX = 50  # queued pushes sent as one group message at most (a frame of ~15 KB)

logger = logging.getLogger(__name__)


def group_of(room) -> str:
    """The group of `room`'s sockets (None: the public world)."""
    return GROUP if room is None else room.group


async def apush(event: dict, group: str = GROUP) -> bool:
    """Send a group event to every client connected to `group`'s world; return whether the layer took it.

    A failure is logged, never raised: pushes run after commit, so they cannot undo the
    change, and clients catch up from the seq gap (resync) or their next snapshot.
    """
    fields = {"type": event["type"], "seq": event.get("seq")}
    if group != GROUP:
        fields["group"] = group
    if event["type"] == messages.BATCH:
        fields.update(last_seq=event["last_seq"], events=event["events"])
    started = time.monotonic()
    try:
        await get_channel_layer().group_send(group, event)
    except Exception as exc:
        logger.error(kv("push.error", **fields, error=f"{type(exc).__name__}: {exc}"))
        return False
    logger.info(kv("push", **fields, ms=(time.monotonic() - started) * 1000))
    return True


def push(event: dict, group: str = GROUP) -> None:
    """`apush` for sync callers (views, actions, commands, the shell: on_commit callbacks).

    In a server process the push is handed to its event loop (`Pusher`) and the writer goes
    on at once: a player's answer never waits for the fan-out of its own change. Elsewhere
    (commands, the shell) it is sent before this returns.
    """
    pusher = _pusher
    if pusher is not None and pusher.loop.is_running():
        pusher.hand_over(event, group)
    else:
        async_to_sync(apush)(event, group)


class Pusher:
    """Sends a server process's pushes from its event loop, one at a time, in the order given.

    Writers commit one at a time under the counter lock and hand their pushes over in commit
    order; one task sends them in that order, so a process's pushes leave as they did when
    each writer waited for its own (seq order within a process; clients order the rest).
    Pushes queued while one was being sent leave together as one group message (a batch,
    one frame for every client): a `group_send` costs several Redis round trips, and each
    receiving process a pop, whatever it carries. Nothing waits to make a batch. A batch
    holds the pushes of one group (one world), in the order given; worlds are independent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self.task = loop.create_task(self.run())

    def hand_over(self, event: dict, group: str = GROUP) -> None:
        """Queue `event` for sending to `group`; callable from any thread."""
        self.loop.call_soon_threadsafe(self._put, event, group)

    def _put(self, event: dict, group: str = GROUP) -> None:
        if self.queue.qsize() >= BACKLOG:  # the layer is down or far behind: clients will resync
            logger.error(kv("push.error", type=event["type"], seq=event.get("seq"), error="backlog full"))
            return
        self.queue.put_nowait((group, event))

    async def run(self) -> None:
        queue = self.queue
        while True:
            taken = [await queue.get()]
            while len(taken) < BATCH_MAX and not queue.empty():
                taken.append(queue.get_nowait())
            by_group: dict[str, list[dict]] = {}  # in order of first appearance, each in order given
            for group, event in taken:
                by_group.setdefault(group, []).append(event)
            for group, events in by_group.items():
                event = events[0] if len(events) == 1 else messages.batch_event(events)
                await apush(event, group)
            for _ in taken:
                queue.task_done()


async def flush() -> None:
    """Wait until this process has sent every push handed over so far (a server leaving)."""
    pusher = _pusher
    if pusher is not None and pusher.loop is asyncio.get_running_loop():
        await asyncio.sleep(0)  # hand-overs from other threads land on the loop first
        await pusher.queue.join()


_pusher: Pusher | None = None


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of this server process (None before its first request, and outside servers)."""
    pusher = _pusher
    return pusher.loop if pusher is not None and pusher.loop.is_running() else None


class PushFromLoop:
    """ASGI wrapper: pushes made in this process leave from the server's event loop (`Pusher`).

    Passes scope, receive and send through untouched (transport.py needs daphne's own send).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        global _pusher
        loop = asyncio.get_running_loop()
        if _pusher is None or _pusher.loop is not loop:
            _pusher = Pusher(loop)
        return await self.app(scope, receive, send)
