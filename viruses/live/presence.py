"""Who is online: `Connection` rows, a per-server heartbeat, and coalesced presence pushes, per world.

Each server process keeps `last_seen` fresh on the rows of its open sockets; rows of a
server that died (SIGKILL, power loss) go stale, stop counting at once and are reaped by the
next heartbeat of any live server, which also takes their channels out of the group.
"""

import asyncio
import logging
import os
import socket
import time
import uuid

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from viruses import broadcast, messages, metrics, services
from viruses.guards import admission
from viruses.logs import kv
from viruses.models import Room
from viruses.selectors import online_count, online_counts, online_players

from .coalesce import Coalesced


def online_state(room=None) -> tuple[int, dict]:
    return online_count(room), online_players(room=room)


SERVER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
ANNOUNCE_DELAY = 0.25  # joins and leaves within this window share one presence push
# How often this process checks that Redis still holds its group memberships; a Redis that
# lost its data (FLUSHALL, a failover to an empty replica) gets them back within twice this.
REDIS_WATCH_INTERVAL = 1.0

logger = logging.getLogger(__name__)


class ServerPresence:
    """This process's sockets: announces joins and leaves, runs the heartbeat."""

    def __init__(self):
        self.channels: dict[str, str] = {}  # channel name: client address
        self.worlds: dict[str, Room | None] = {}  # channel name: its room (None: the public world)
        self._announcer: asyncio.Task | None = None
        # Worlds (by group) with a join or leave not yet covered by a count.
        self._changed: dict[str, Room | None] = {}
        # The process is leaving (drain.py) and announces nothing more: its count could
        # reach clients after the count of the node they moved to, and undo it.
        self.leaving = False
        self._heartbeat: asyncio.Task | None = None
        self._watch: asyncio.Task | None = None
        self._watch_failing = False  # logged once per Redis outage
        self._last_announced: dict[str, int] = {}  # by group
        self.refreshed_at: float | None = None  # monotonic time the rows were last known fresh
        # Sockets that come or go at once share one INSERT or DELETE (a connect storm).
        self._open = Coalesced(
            database_sync_to_async(lambda sockets: services.connections_open(server=SERVER, sockets=sockets))
        )
        self._close = Coalesced(
            database_sync_to_async(
                lambda channel_names: services.connections_close(channel_names=channel_names)
            )
        )

    async def join(
        self, channel_name: str, *, client_address: str, user_agent: str, player_id=None, room=None
    ) -> None:
        await self._open(
            {
                "channel_name": channel_name,
                "client_address": client_address,
                "user_agent": user_agent,
                "player_id": player_id,
                "room_id": None if room is None else room.pk,
            }
        )
        self.channels[channel_name] = client_address
        self.worlds[channel_name] = room
        self._start_heartbeat()
        self.announce_soon(room)

    async def leave(self, channel_name: str) -> None:
        self.channels.pop(channel_name, None)  # at once: the heartbeat stops renewing it
        room = self.worlds.pop(channel_name, None)
        await self._close(channel_name)
        self.announce_soon(room)

    def heartbeat_age(self) -> float:
        """Seconds since this process's rows were last known fresh; 0 without sockets."""
        if not self.channels or self.refreshed_at is None:
            return 0.0
        return time.monotonic() - self.refreshed_at

    def announce_soon(self, room=None) -> None:
        if self.leaving:
            return
        self._changed[broadcast.group_of(room)] = room
        if not _running_here(self._announcer):
            self._announcer = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        # Again while changes came during a count: a join whose row was written after the
        # count began would otherwise never be announced (a reconnect storm after a restart).
        while self._changed:
            await asyncio.sleep(ANNOUNCE_DELAY)
            changed, self._changed = self._changed, {}
            for room in changed.values():
                await self.announce_now(room)

    async def announce_now(self, room=None) -> None:
        """Push the world's online count and names as the database has them now."""
        try:
            online, names = await database_sync_to_async(online_state)(room)
        except Exception as exc:  # the database is down: the next join, leave or beat retries
            logger.warning(kv("presence.count_failed", error=_describe(exc)))
            return
        if self.leaving:
            return
        group = broadcast.group_of(room)
        self._last_announced[group] = online
        await broadcast.apush(messages.presence_event(online=online, **names), group)

    def _start_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        if not _running_here(self._heartbeat):
            self.refreshed_at = time.monotonic()  # the joining row was just written
            self._heartbeat = loop.create_task(self._beat())
        layer = get_channel_layer()
        if hasattr(layer, "lost_data") and not _running_here(self._watch):  # Redis only
            self._watch = loop.create_task(self._watch_redis(layer))

    async def _renew(self, layer) -> None:
        """Put every local socket back in its world's group and renew its places (address, room)."""
        renewed = {channel: broadcast.group_of(room) for channel, room in self.worlds.items()}
        # At once: the layer sends the joins of a whole server in one pipeline (layers.py).
        await asyncio.gather(*(layer.group_add(group, channel) for channel, group in renewed.items()))
        # A socket that left meanwhile may have been re-added after its own discard.
        for channel_name in renewed.keys() - self.channels.keys():
            await layer.group_discard(renewed[channel_name], channel_name)
        # Places taken under the address cap and in rooms expire unless renewed (admission.py).
        rooms = {channel: room.code for channel, room in self.worlds.items() if room is not None}
        await sync_to_async(admission.renew, thread_sensitive=False)(dict(self.channels), rooms)

    async def _watch_redis(self, layer) -> None:
        """Renew at once when Redis lost its data: else no push reaches this process's
        sockets, which still look connected, until the next heartbeat."""
        while self.channels:
            try:
                if await layer.lost_data(broadcast.GROUP, SERVER):
                    logger.warning(kv("presence.redis_lost_data", channels=len(self.channels)))
                    await self._renew(layer)
                self._watch_failing = False
            except Exception as exc:  # Redis is down: the heartbeat logs it too
                if not self._watch_failing:
                    logger.warning(kv("presence.redis_watch_failed", error=_describe(exc)))
                self._watch_failing = True
            await asyncio.sleep(REDIS_WATCH_INTERVAL)

    async def _beat(self) -> None:
        layer = get_channel_layer()
        while self.channels:
            await asyncio.sleep(settings.VIRUS_PRESENCE_HEARTBEAT)
            try:
                # Renews group membership (it expires for consumers that crashed), whether
                # or not the database answers.
                await self._renew(layer)
            except Exception as exc:  # Redis is down: its restart emptied the group anyway
                logger.warning(kv("presence.renewal_failed", error=_describe(exc)))
            try:
                reaped = await database_sync_to_async(services.connections_heartbeat)(
                    server=SERVER, channel_names=list(self.channels)
                )
                self.refreshed_at = time.monotonic()
                if reaped:
                    logger.info(kv("presence.reaped", connections=len(reaped)))
                for channel_name, code in reaped.items():
                    await layer.group_discard(
                        broadcast.GROUP if code is None else Room.group_for(code), channel_name
                    )
                await self._recount()
            except Exception as exc:  # retried at the next beat
                logger.warning(kv("presence.heartbeat_failed", error=_describe(exc)))

    async def _recount(self) -> None:
        """Announce the worlds of this process's sockets whose count changed unannounced (a reaping)."""
        rooms = {broadcast.group_of(room): room for room in self.worlds.values()}
        ids = {None if room is None else room.pk: group for group, room in rooms.items()}
        counts = await database_sync_to_async(online_counts)(list(ids))
        for room_id, online in counts.items():
            if online != self._last_announced.get(ids[room_id]):
                self.announce_soon(rooms[ids[room_id]])


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _running_here(task: asyncio.Task | None) -> bool:
    # Tests run each case in a new event loop; a task of a closed loop never finishes.
    return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()


server_presence = ServerPresence()
# Read when /metrics is scraped (metrics.py defines every metric; the app never imports live/).
metrics.SOCKETS_OPEN.set_function(lambda: len(server_presence.channels))
metrics.HEARTBEAT_AGE.set_function(server_presence.heartbeat_age)
