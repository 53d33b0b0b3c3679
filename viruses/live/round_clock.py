"""Keeps the rounds of the rooms with sockets on this process on time: one task per process.

It ends each round at its `ends_at` and paces the dish's refill (`rounds.tick`), so a round
ends on time even after its host has left. Every process with sockets in the room runs
one, and `spawn_virus --all-rooms` does the same work: `rounds` makes sure exactly one of
them ends each round and adds each virus.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.db import DatabaseError

from viruses import rounds
from viruses.logs import kv

from .presence import server_presence

logger = logging.getLogger(__name__)


class RoundClock:
    def __init__(self):
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """Run the clock while this process has sockets in rooms (call when a room socket joins)."""
        loop = asyncio.get_running_loop()
        # Tests run each case in a new event loop; a task of a closed loop never finishes.
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self.run())

    async def run(self) -> None:
        while rooms := {room.pk for room in server_presence.worlds.values() if room is not None}:
            try:
                wait = await database_sync_to_async(rounds.tick)(rooms)
            except (
                DatabaseError
            ) as exc:  # retried shortly; the spawner or another process may end it meanwhile
                logger.warning(kv("round_clock.failed", error=f"{type(exc).__name__}: {exc}"))
                wait = rounds.IDLE
            await asyncio.sleep(wait)


round_clock = RoundClock()
