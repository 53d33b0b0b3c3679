"""The WebSocket end of the data path: one consumer per open browser tab, in the public world or a room."""

import asyncio
import contextlib
import logging
import math
import time
from functools import partial

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from viruses import actions, broadcast, errors, messages, metrics, players, selectors, services
from viruses.guards import admission, idempotency, penalty, ratelimit
from viruses.logs import kv

from .coalesce import Coalesced
from .daphne.transport import SlidingWindow, Socket
from .drain import RESTART_CODE, RESTART_REASON, drain
from .fanout import fanout
from .gc_tuning import closed_sockets
from .presence import SERVER, server_presence
from .round_clock import round_clock

MAX_MESSAGE_BYTES = 64 * 1024
FLOOD_MESSAGES = 20  # client messages allowed per FLOOD_WINDOW seconds, besides actions
FLOOD_WINDOW = 10.0
# What an outage of the database or the channel layer (Redis) raises in a consumer.
UNAVAILABLE = (DatabaseError, RedisError, OSError)
# A room's refusals (docs/architecture.md): no such room, locked for this player, full.
ROOM_CLOSES = {"unknown": 4404, "locked": 4403, "full": 4409}

logger = logging.getLogger(__name__)


class VirusConsumer(AsyncWebsocketConsumer):
    """Send one client the snapshot, then relay every group event to it.

    Under daphne the process's fastlane (fanout.py) takes over the relaying once the
    snapshot is out; the consumer still owns the socket's life. Async contract: every
    database access goes through `database_sync_to_async`. A player's create or kill goes
    through `actions`, as over HTTP, and only its answer (ack or error) is sent from here:
    the change itself reaches every client, this one included, as the push its commit
    makes (signals.py), so by exactly one path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.socket: Socket | None = None  # set when the connection starts
        self.flood = SlidingWindow(flood_limit(), FLOOD_WINDOW)
        self.address = ""  # the client's address, as the cap counts it
        self.player_id = None  # the player of the handshake's cookie (players.py), if any: set in __call__
        self.opened_at: float | None = None  # when the client joined; None if refused
        self.admitted = False  # holds one of its address's places (admission.py)
        self.joined = False  # in the group and counted online
        self.closing = False
        self.fastlane = False  # group events go straight from the layer's reader (fanout.py)
        self.room = None  # the socket's world: None is the public one (RoomConsumer sets its room)

    @property
    def group(self) -> str:
        return broadcast.group_of(self.room)

    async def __call__(self, scope, receive, send):
        # Cut for abuse, the socket boxes its player (else its address, without a cookie): not its neighbours.
        self.player_id = players.from_scope(scope)
        self.socket = Socket(scope, send, on_abuse=partial(penalty.box().strike, player=self.player_id))
        try:
            await self.serve(scope, receive, send)
        except UNAVAILABLE as exc:
            # Redis or the database went away: close with "try again later" (the client
            # reconnects and gets a snapshot) rather than die with a traceback and 1011.
            logger.warning(kv("ws.close", channel=self.channel_name, reason="unavailable", error=exc))
            await self.close_quietly(1013)
        finally:
            # However the consumer ends, crashes included, it must not stay counted or grouped.
            try:
                await self.leave()
            finally:
                drain.closed(self)  # a leaving server waits for this
                # Refused, closed by the client or cut by the server: its objects are garbage.
                closed_sockets.add()

    async def serve(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, waiting with `dispatch_each`."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await dispatch_each((receive, self.channel_receive), self.dispatch)

    async def connect(self):
        address = self.address = client_address(self.scope)
        self.admitted = await admission.areserve(address, self.channel_name)
        if not self.admitted:
            # Told why (1008, policy violation) and never joined: nothing to undo on disconnect.
            # Nobody is boxed: the page backs off, and a reconnect loop counts against the address.
            await self.close_quietly(1008)
            limit = settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS
            logger.warning(kv("ws.refused", reason="connections_per_address", client=address, limit=limit))
            penalty.box().refused(address)
            return
        if (wait := await ratelimit.aretry_after("snapshot", address, self.player_id)) is not None:
            # Reconnecting in a loop costs a snapshot each time: the same bucket as GET and resync.
            await self.close_quietly(1008)
            logger.warning(kv("ws.refused", reason="snapshots", client=address, player=self.player_id))
            penalty.box().hold(address, wait, self.player_id)
            penalty.box().refused(address)
            return
        if not await self.enter_world():
            return
        self.opened_at = time.monotonic()
        # Join before reading the snapshot: a change committed in between is then both
        # in the snapshot and queued for us, and the client drops the duplicate by seq.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.joined = True
        await server_presence.join(
            self.channel_name,
            client_address=address,
            user_agent=header(self.scope, b"user-agent"),
            player_id=self.player_id,
            room=self.room,
        )
        self.socket.forget_handshake(self.scope)  # its headers were read: above, and before the consumer
        await self.send_snapshot()
        drain.opened(self)
        logger.info(
            kv(
                "ws.connect",
                channel=self.channel_name,
                client=address,
                server=SERVER,
                fastlane=self.fastlane,
                **({} if self.room is None else {"room": self.room.code}),
            )
        )

    async def enter_world(self) -> bool:
        """Whether this socket may join its world (the public one always); closed if not."""
        return True

    async def disconnect(self, code):
        if self.opened_at is None:
            return
        await self.leave()
        seconds = time.monotonic() - self.opened_at
        logger.info(kv("ws.disconnect", channel=self.channel_name, code=code, seconds=seconds))

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        self.socket.opened()

    async def close(self, code=None, reason=None):
        await self.socket.close(code, reason)

    async def close_quietly(self, code: int) -> None:
        """Close once, accepting first so the client gets the code instead of a 403."""
        if self.closing:
            return
        self.closing = True
        if not self.socket.open:
            await self.accept()
        await self.close(code=code)

    def restart(self) -> None:
        """Tell the client this server is leaving (1012): it reconnects at once, elsewhere."""
        if self.closing or not self.socket.open or self.socket.protocol is None:
            return
        self.closing = True
        fanout.leave(self.channel_name)
        self.socket.close_now(RESTART_CODE, RESTART_REASON, hang_up=True)

    async def leave(self) -> None:
        """Leave the group, the online count and the address's place; safe to repeat, and during outages."""
        if self.admitted:
            self.admitted = False
            await admission.arelease(self.address, self.channel_name)
        if not self.joined:
            return
        self.joined = False
        fanout.leave(self.channel_name)
        try:
            # First, so that no heartbeat renews the group membership we are about to drop.
            await server_presence.leave(self.channel_name)
        except UNAVAILABLE as exc:  # the row then goes stale and is reaped (presence.py)
            logger.warning(kv("ws.leave_failed", channel=self.channel_name, part="database", error=exc))
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        except UNAVAILABLE as exc:  # membership then expires (settings: group_expiry)
            logger.warning(kv("ws.leave_failed", channel=self.channel_name, part="channel_layer", error=exc))

    async def receive(self, text_data=None, bytes_data=None):
        data = text_data if text_data is not None else bytes_data
        if len(data) > MAX_MESSAGE_BYTES:
            logger.warning(kv("ws.close", channel=self.channel_name, reason="too_big", bytes=len(data)))
            await self.close(code=1009)
            return
        if self.flood.exceeded():
            logger.warning(kv("ws.close", channel=self.channel_name, reason="flood", limit=self.flood.limit))
            await self.close(code=1008)
            penalty.box().strike(self.address, "flood", self.player_id)
            return
        try:
            await self.handle(messages.decode(data))
        except messages.BadMessage as exc:
            logger.info(kv("ws.bad_message", channel=self.channel_name, bytes=len(data)))
            await self.send_text(exc.answer())

    async def handle(self, message: dict) -> None:
        if message["type"] in messages.ACTIONS:
            await self.act(messages.action(message))
            return
        if message["type"] != "resync":
            raise messages.unknown_type(message)
        metrics.resync_requested()
        if (wait := await ratelimit.aretry_after("snapshot", self.address, self.player_id)) is not None:
            raise messages.BadMessage(f"too many snapshots, wait {math.ceil(wait)} s")
        await self.send_snapshot()

    async def act(self, action: messages.Action) -> None:
        """Do a player's action (create, kill, rename, round) and answer the sender alone, with its `ref`."""
        try:
            if action.type in ("create", "kill"):
                status, virus = await idempotency.aonce(
                    action.key,
                    action="create" if action.type == "create" else f"kill {action.virus_id}",
                    address=self.address,
                    player=self.player_id,
                    socket=self.channel_name,
                    act=partial(self.do, action),
                )
                answer = messages.ack(ref=action.ref, status=status, virus=virus)
            elif action.type == "rename":
                me = await actions.arename(player=self.player_id, name=action.name, address=self.address)
                status, answer = 200, messages.ack(ref=action.ref, status=200, player=me)
            else:
                stop = action.type == "round.stop"
                round_ = await actions.aplay_round(
                    room=self.room, by=self.player_id, address=self.address, seconds=action.seconds, stop=stop
                )
                status = 204 if stop else 201
                answer = messages.ack(
                    ref=action.ref, status=status, round=None if stop else messages.round_json(round_)
                )
        except errors.GameError as exc:
            if isinstance(exc, errors.RateLimited):
                logger.info(kv("ws.rate_limited", client=self.address, retry_after=exc.retry_after))
            status, answer = exc.status, messages.error(str(exc), ref=action.ref, status=exc.status)
        except DatabaseError as exc:
            # As the HTTP API does: the player is told, the socket stays (pushes need no database).
            logger.error(kv("ws.error", action=action.type, error="database", detail=exc))
            text = "the database is unavailable, try again shortly"
            status, answer = 503, messages.error(text, ref=action.ref, status=503)
        metrics.count_action(path="socket", action=action.type, status=status)
        await self.send_text(answer)

    async def do(self, action: messages.Action) -> idempotency.Answer:
        if action.type == "create":
            virus = await actions.acreate(address=self.address, by=self.player_id, room=self.room)
            return 201, messages.virus_json(virus)
        await actions.akill(virus_id=action.virus_id, address=self.address, by=self.player_id, room=self.room)
        return 204, None

    async def send_snapshot(self) -> None:
        # Off the fastlane meanwhile: events queue behind the snapshot, as on the consumer
        # path, so the client never gets a snapshot older than an event it already has.
        fanout.pause(self.channel_name)
        viewer = (self.room, self.player_id)
        await self.send_text((await read_snapshots(viewer))[viewer])
        if not self.closing:
            self.fastlane = fanout.join(self.channel_layer, self.channel_name, self.socket)

    async def send_text(self, text: str) -> None:
        """Send, unless the client has stopped reading: then close it (1013) instead."""
        if self.closing or self.socket.cut:
            return
        if self.socket.outbox.stuck(len(text)):
            state = self.socket.outbox.state()
            logger.warning(kv("ws.close", channel=self.channel_name, reason="slow_reader", **state))
            await self.close_quietly(1013)
            return
        if not await self.socket.send(text):  # the client left between two sends
            self.closing = True

    async def dispatch(self, message):
        # Without Channels' per-message `aclose_old_connections()`: a hop to the one database
        # thread per message, redundant here (every database call goes through
        # `database_sync_to_async`, which closes old connections before and after). For group
        # events it was half the cost of a fan-out (docs/performance.md#lever-dispatch); for handshakes it
        # queued a reconnect storm's snapshot reads behind one hop per socket (seconds for
        # 200 sockets moving in a rolling restart).
        if message["type"] in messages.GROUP_EVENTS:
            await self.send_text(message["text"])
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class RoomConsumer(VirusConsumer):
    """The socket of a room (`/ws/rooms/<code>/`): the public socket's messages, in the room's world.

    Unknown or expired code: accepted, then closed with 4404; full (VIRUS_ROOM_MAX_PLAYERS
    sockets): 4409; locked, for a player neither on its board nor its host: 4403.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seated = False  # holds one of the room's places (admission.py)

    async def connect(self):
        await super().connect()
        if self.joined:
            round_clock.start()

    async def enter_world(self) -> bool:
        code = self.scope["url_route"]["kwargs"]["code"]
        try:
            self.room = await database_sync_to_async(selectors.room)(code)
        except errors.RoomNotFound:
            return await self.refuse("unknown", code[:16])
        refusal = await database_sync_to_async(selectors.room_admits)(self.room, self.player_id)
        if refusal is not None:
            return await self.refuse(refusal, self.room.code)
        # Full is decided by taking a place, atomically on every node: counting rows let a burst in.
        self.seated = await admission.aseat(self.room.code, self.channel_name)
        if not self.seated:
            return await self.refuse("full", self.room.code)
        await database_sync_to_async(services.room_join)(room=self.room, player_id=self.player_id)
        return True

    async def leave(self) -> None:
        if self.seated:
            self.seated = False
            await admission.aunseat(self.room.code, self.channel_name)
        await super().leave()

    async def refuse(self, reason: str, code: str) -> bool:
        await self.close_quietly(ROOM_CLOSES[reason])
        logger.info(kv("ws.refused", reason=f"room_{reason}", room=code, client=self.address))
        return False


async def dispatch_each(sources, dispatch) -> None:
    """Await every source at once and dispatch each result in turn, one at a time, as
    Channels' `await_many_dispatch` does.

    Its `asyncio.wait` holds two coroutine frames, a set and a callback per task while it
    waits; one future woken by the tasks' callbacks holds about 0.9 KB less, on every idle
    socket (docs/performance.md#lever-one-wake).
    """
    loop = asyncio.get_running_loop()
    wake = loop.create_future()

    def ready(_task) -> None:
        if not wake.done():  # the current `wake`: a task done during a dispatch wakes the next round
            wake.set_result(None)

    def start(source) -> asyncio.Future:
        task = asyncio.ensure_future(source())  # granian's receive returns a future, not a coroutine
        task.add_done_callback(ready)
        return task

    tasks = [start(source) for source in sources]
    try:
        while True:
            await wake
            wake = loop.create_future()
            for i, task in enumerate(tasks):
                if task.done():
                    await dispatch(task.result())
                    # Only now: the fastlane's hand-over happens inside a receive (layers.py),
                    # which must not run ahead of the relay of what it returned before.
                    tasks[i] = start(sources[i])
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def flood_limit() -> int:
    """Client messages allowed per FLOOD_WINDOW before the socket is closed (1008).

    FLOOD_MESSAGES, plus twice the actions the rate limit lets through in a window (its
    burst, then its rate): a player clicking at the limit, or past it and told 429, is never
    cut off. With the rate limit off, as many as at its default of 180 a minute.
    """
    per_minute = settings.VIRUS_RATE_LIMIT or 180
    actions_per_window = settings.VIRUS_RATE_BURST + math.ceil(per_minute / 60 * FLOOD_WINDOW)
    return FLOOD_MESSAGES + 2 * actions_per_window


def encoded_snapshots(viewers: list[tuple]) -> dict:
    """One snapshot read per world for every socket asking at once: its text for each viewer
    `(room, player_id)` (`me`)."""
    worlds = {broadcast.group_of(room): room for room, _ in viewers}
    shared = {}
    for group, room in worlds.items():
        seq, viruses, online, extra = selectors.snapshot(room)
        shared[group] = messages.snapshot(seq=seq, viruses=viruses, online=online, **extra)
    return {
        (room, player_id): messages.for_viewer(
            shared[broadcast.group_of(room)], selectors.me(player_id, room)
        )
        for room, player_id in set(viewers)
    }


# Sockets asking at once (a connect storm) share one read, started after each of them asked.
read_snapshots = Coalesced(database_sync_to_async(encoded_snapshots))


def header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""
