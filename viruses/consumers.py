"""The WebSocket end of the data path: one consumer per open browser tab."""

import logging
import math
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from . import admission, broadcast, messages, ratelimit, selectors
from .apps import closed_sockets
from .coalesce import Coalesced
from .fanout import fanout
from .logs import kv
from .presence import SERVER, server_presence
from .transport import SlidingWindow, Socket

MAX_MESSAGE_BYTES = 64 * 1024
FLOOD_MESSAGES = 20  # client messages allowed per FLOOD_WINDOW seconds
FLOOD_WINDOW = 10.0
# What an outage of the database or the channel layer (Redis) raises in a consumer.
UNAVAILABLE = (DatabaseError, RedisError, OSError)

logger = logging.getLogger(__name__)


class VirusConsumer(AsyncWebsocketConsumer):
    """Send one client the snapshot, then relay every group event to it.

    Under daphne the process's fastlane (fanout.py) takes over the relaying once the
    snapshot is out; the consumer still owns the socket's life. Async contract: every
    database access goes through `database_sync_to_async`. The consumer never writes
    viruses (browsers use the HTTP API, whose commits the signals push), so each change
    reaches the client by exactly one path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.socket: Socket | None = None  # set when the connection starts
        self.flood = SlidingWindow(FLOOD_MESSAGES, FLOOD_WINDOW)
        self.address = ""  # the client's address, as the cap counts it
        self.opened_at: float | None = None  # when the client joined; None if refused
        self.admitted = False  # holds one of its address's places (admission.py)
        self.joined = False  # in the group and counted online
        self.closing = False
        self.fastlane = False  # group events go straight from the layer's reader (fanout.py)

    async def __call__(self, scope, receive, send):
        self.socket = Socket(scope, send)
        try:
            await super().__call__(scope, receive, send)
        except UNAVAILABLE as exc:
            # Redis or the database went away: close with "try again later" (the client
            # reconnects and gets a snapshot) rather than die with a traceback and 1011.
            logger.warning(kv("ws.close", channel=self.channel_name, reason="unavailable", error=exc))
            await self.close_quietly(1013)
        finally:
            # However the consumer ends, crashes included, it must not stay counted or grouped.
            await self.leave()

    async def connect(self):
        address = self.address = client_address(self.scope)
        self.admitted = await admission.areserve(address, self.channel_name)
        if not self.admitted:
            # Told why (1008, policy violation) and never joined: nothing to undo on disconnect.
            await self.close_quietly(1008)
            limit = settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS
            logger.warning(kv("ws.refused", reason="connections_per_address", client=address, limit=limit))
            return
        if await ratelimit.aretry_after("snapshot", address) is not None:
            # Reconnecting in a loop costs a snapshot each time: the same bucket as GET and resync.
            await self.close_quietly(1008)
            logger.warning(kv("ws.refused", reason="snapshots_per_address", client=address))
            return
        self.opened_at = time.monotonic()
        # Join before reading the snapshot: a change committed in between is then both
        # in the snapshot and queued for us, and the client drops the duplicate by seq.
        await self.channel_layer.group_add(broadcast.GROUP, self.channel_name)
        await self.accept()
        self.joined = True
        await server_presence.join(
            self.channel_name, client_address=address, user_agent=header(self.scope, b"user-agent")
        )
        await self.send_snapshot()
        logger.info(
            kv("ws.connect", channel=self.channel_name, client=address, server=SERVER, fastlane=self.fastlane)
        )

    async def disconnect(self, code):
        if self.opened_at is None:
            return
        await self.leave()
        closed_sockets.add()
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
            await self.channel_layer.group_discard(broadcast.GROUP, self.channel_name)
        except UNAVAILABLE as exc:  # membership then expires (settings: group_expiry)
            logger.warning(kv("ws.leave_failed", channel=self.channel_name, part="channel_layer", error=exc))

    async def receive(self, text_data=None, bytes_data=None):
        data = text_data if text_data is not None else bytes_data
        if len(data) > MAX_MESSAGE_BYTES:
            logger.warning(kv("ws.close", channel=self.channel_name, reason="too_big", bytes=len(data)))
            await self.close(code=1009)
            return
        if self.flood.exceeded():
            logger.warning(kv("ws.close", channel=self.channel_name, reason="flood", limit=FLOOD_MESSAGES))
            await self.close(code=1008)
            return
        try:
            await self.handle(messages.decode(data))
        except messages.BadMessage as exc:
            logger.info(kv("ws.bad_message", channel=self.channel_name, bytes=len(data)))
            await self.send_text(messages.error(str(exc)))

    async def handle(self, message: dict) -> None:
        if message["type"] != "resync":
            raise messages.unknown_type(message)
        if (wait := await ratelimit.aretry_after("snapshot", self.address)) is not None:
            raise messages.BadMessage(f"too many snapshots, wait {math.ceil(wait)} s")
        await self.send_snapshot()

    async def send_snapshot(self) -> None:
        # Off the fastlane meanwhile: events queue behind the snapshot, as on the consumer
        # path, so the client never gets a snapshot older than an event it already has.
        fanout.pause(self.channel_name)
        await self.send_text(await read_snapshot())
        if not self.closing:
            self.fastlane = fanout.join(self.channel_layer, self.channel_name, self.socket)

    async def send_text(self, text: str) -> None:
        """Send, unless the client has stopped reading: then close it (1013) instead."""
        if self.closing:
            return
        if self.socket.outbox.stuck(len(text)):
            state = self.socket.outbox.state()
            logger.warning(kv("ws.close", channel=self.channel_name, reason="slow_reader", **state))
            await self.close_quietly(1013)
            return
        if not await self.socket.send(text):  # the client left between two sends
            self.closing = True

    async def dispatch(self, message):
        # Group events touch no database: relay them without Channels' per-message
        # `aclose_old_connections()`, a thread hop per client per change (half the cost
        # of a fan-out, docs/performance.md). Everything else goes the usual way.
        if message["type"] in messages.GROUP_EVENTS:
            await self.send_text(message["text"])
        else:
            await super().dispatch(message)


def encoded_snapshot(_) -> str:
    seq, viruses, online = selectors.snapshot()
    return messages.snapshot(seq=seq, viruses=viruses, online=online)


# Sockets asking at once (a connect storm) share one read, started after each of them asked.
read_snapshot = Coalesced(encoded_snapshot)


def header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""
