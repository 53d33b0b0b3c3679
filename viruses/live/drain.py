"""Leaving on SIGTERM without anybody noticing (a rolling restart: docs/production.md, section 4).

On SIGTERM a daphne process stops listening (the proxy's next connect fails and goes to
another node), answers `/healthz` with 503 "draining", closes every WebSocket with 1012
"service restart" (the page reconnects at once, with jitter, to another node), lets HTTP
requests in flight finish (their connections then close, as do idle keep-alive ones),
removes its sockets' presence rows and address places, announces the new online count,
and exits; all within VIRUS_DRAIN_TIMEOUT seconds, after which daphne cancels what is left.
A second SIGTERM stops at once.

Under the servers that speak the ASGI lifespan protocol instead (uvicorn, granian: they stop
listening and close the sockets themselves), its shutdown waits, as long, for every consumer
to leave (group, online count, presence row, address place) and for the last pushes.
"""

import asyncio
import contextvars
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings

from viruses import broadcast, services, serving
from viruses.logs import kv

from .daphne import transport

RESTART_CODE = 1012  # RFC 6455 / IANA: "service restart", the client may reconnect at once
RESTART_REASON = "service restart"

logger = logging.getLogger(__name__)


class Drain:
    """This process's open sockets, and whether it is leaving (`serving.draining`)."""

    def __init__(self):
        self.consumers: set = set()  # consumers whose socket is open (consumers.py)
        self.all_left = asyncio.Event()  # set while `consumers` is empty
        self.all_left.set()
        self.task: asyncio.Task | None = None

    def install(self) -> bool:
        """Drain on SIGTERM under daphne; elsewhere (runserver, tests) nothing changes."""
        return transport.on_sigterm(self.signalled)

    def opened(self, consumer) -> None:
        """A socket opened: it will be told to go; at once when the process is leaving already."""
        self.consumers.add(consumer)
        self.all_left.clear()
        if serving.draining:
            consumer.restart()

    def closed(self, consumer) -> None:
        self.consumers.discard(consumer)
        if not self.consumers:
            self.all_left.set()

    def signalled(self) -> None:
        if self.task is not None:
            logger.warning(kv("drain.abort", reason="second_sigterm"))
            transport.stop_reactor()
            return
        # A context of its own: the signal's callback runs in whatever context the interrupted
        # code had, and asgiref's thread-sensitive executor found there may be long gone.
        self.task = asyncio.get_event_loop().create_task(self.run(), context=contextvars.Context())

    async def run(self) -> None:
        started = time.monotonic()
        timeout = settings.VIRUS_DRAIN_TIMEOUT
        try:
            await asyncio.wait_for(self.leave(), timeout)
        except TimeoutError:
            logger.warning(kv("drain.timeout", sockets=len(self.consumers), seconds=timeout))
        except Exception as exc:  # whatever failed, the process still exits
            logger.error(kv("drain.error", error=f"{type(exc).__name__}: {exc}"))
        logger.info(kv("drain.done", seconds=round(time.monotonic() - started, 3)))
        transport.stop_reactor()

    async def leave(self) -> None:
        from .presence import SERVER, server_presence

        serving.draining = True
        listeners = transport.Listeners()
        listeners.stop_listening()
        sockets = list(self.consumers)
        logger.info(kv("drain.start", sockets=len(sockets), server=SERVER, ports=len(listeners.ports)))
        # Its players no longer count here, in one DELETE rather than one per socket as each
        # consumer leaves (seconds, for hundreds), and before they are told to go: every
        # count the node they move to makes then includes them once. This process announces
        # nothing more; the other nodes' joins do (their heartbeat, if nobody comes back).
        server_presence.leaving = True
        try:
            await database_sync_to_async(services.connections_close_server)(server=SERVER)
        except Exception as exc:  # the database is down: the rows go stale; still let requests finish
            logger.warning(kv("drain.presence_failed", error=f"{type(exc).__name__}: {exc}"))
        for consumer in sockets:
            consumer.restart()
        # Each consumer leaves (its group and place) when its client's close arrives.
        while self.consumers or listeners.busy_requests():
            listeners.close_idle()
            await asyncio.sleep(0.05)
        listeners.close_idle()
        await self.finish()

    async def shutdown(self) -> None:
        """The ASGI lifespan's shutdown (servers other than daphne): the server has closed the
        sockets; wait until their consumers have left, then finish as a drain does."""
        serving.draining = True
        timeout = settings.VIRUS_DRAIN_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                await self.all_left.wait()
                await self.finish()
        except TimeoutError:
            logger.warning(kv("drain.timeout", sockets=len(self.consumers), seconds=timeout))

    async def finish(self) -> None:
        from .presence import SERVER

        # Changes committed here reach everyone before the process goes: a lost push would
        # leave a gap that clients only fill by a resync, seconds later.
        await broadcast.flush()
        # Sockets whose handshake was under way at the start; the other node's next count,
        # or its heartbeat, announces them.
        await database_sync_to_async(services.connections_close_server)(server=SERVER)


drain = Drain()
