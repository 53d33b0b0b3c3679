"""Leaving on SIGTERM without anybody noticing (a rolling restart, issue 12).

On SIGTERM a daphne process stops listening (the proxy's next connect fails and goes to
another node), answers `/healthz` with 503 "draining", closes every WebSocket with 1012
"service restart" (the page reconnects at once, with jitter, to another node), lets HTTP
requests in flight finish (their connections then close, as do idle keep-alive ones),
removes its sockets' presence rows and address places, announces the new online count,
and exits; all within VIRUS_DRAIN_TIMEOUT seconds, after which daphne cancels what is left.
A second SIGTERM stops at once.
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings

from . import services, transport
from .logs import kv

RESTART_CODE = 1012  # RFC 6455 / IANA: "service restart", the client may reconnect at once
RESTART_REASON = "service restart"

logger = logging.getLogger(__name__)


class Drain:
    """This process's open sockets, and whether it is leaving."""

    def __init__(self):
        self.draining = False
        self.consumers: set = set()  # consumers whose socket is open (consumers.py)
        self.task: asyncio.Task | None = None

    def install(self) -> bool:
        """Drain on SIGTERM under daphne; elsewhere (runserver, tests) nothing changes."""
        return transport.on_sigterm(self.signalled)

    def opened(self, consumer) -> None:
        """A socket opened: it will be told to go; at once when the process is leaving already."""
        self.consumers.add(consumer)
        if self.draining:
            consumer.restart()

    def closed(self, consumer) -> None:
        self.consumers.discard(consumer)

    def signalled(self) -> None:
        if self.task is not None:
            logger.warning(kv("drain.abort", reason="second_sigterm"))
            transport.stop_reactor()
            return
        self.task = asyncio.get_event_loop().create_task(self.run())

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

        self.draining = True
        listeners = transport.Listeners()
        listeners.stop_listening()
        sockets = list(self.consumers)
        logger.info(kv("drain.start", sockets=len(sockets), server=SERVER, ports=len(listeners.ports)))
        for consumer in sockets:
            consumer.restart()
        # Each consumer leaves (its row, group and place) when its client's close arrives.
        while self.consumers or listeners.busy_requests():
            listeners.close_idle()
            await asyncio.sleep(0.05)
        listeners.close_idle()
        # Rows of sockets whose leave failed would count as online until they go stale.
        await database_sync_to_async(services.connections_close_server)(server=SERVER)
        await server_presence.announce_now()


drain = Drain()
