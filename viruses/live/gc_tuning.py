"""Garbage collection tuned for a server holding thousands of long-lived sockets.

Called from the ASGI entry point, and only in a server process: tests and commands keep
Python's defaults.
"""

import gc
import logging
import time
from pathlib import Path

from viruses.logs import kv

GC_THRESHOLD = (50_000, 20, 100)
# A closed socket's objects (daphne's protocol, autobahn, Twisted, the consumer) hold
# reference cycles and are old by then: only a full collection frees them, which the
# threshold above makes rare. One full collection per this many closed sockets.
CLOSED_SOCKETS_PER_COLLECTION = 1000

logger = logging.getLogger(__name__)


def serving(argv: list[str]) -> bool:
    """Whether this process is a server: `daphne ...`, `python -m daphne ...` or `runserver`."""
    program = Path(argv[0]) if argv else Path()
    return "daphne" in (program.name, program.parent.name) or argv[1:2] == ["runserver"]


class ClosedSockets:
    """Counts closed sockets in a server process; a full collection every CLOSED_SOCKETS_PER_COLLECTION."""

    def __init__(self):
        self.tuned = False  # only where tune() ran: elsewhere the default GC does it
        self.count = 0

    def add(self) -> None:
        if not self.tuned:
            return
        self.count += 1
        if self.count >= CLOSED_SOCKETS_PER_COLLECTION:
            self.count = 0
            started = time.monotonic()
            freed = gc.collect()
            ms = (time.monotonic() - started) * 1000
            logger.info(kv("server.gc_collected", objects=freed, ms=round(ms, 1)))


closed_sockets = ClosedSockets()


def tune() -> None:
    # A server holds thousands of long-lived socket objects; each full pass of the cyclic GC
    # over them stalls every client at once (fan-out p99 at 1000 sockets: 294 -> 81 ms without
    # those stalls, docs/performance.md#lever-gc-stalls). Keep start-up objects out of collections, collect
    # less often. Process-wide, so never in other processes (tests, commands).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    closed_sockets.tuned = True
    logger.info(
        kv("server.gc_tuned", frozen=gc.get_freeze_count(), threshold=",".join(map(str, GC_THRESHOLD)))
    )
