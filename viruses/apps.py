import gc
import logging
import sys
from pathlib import Path

from django.apps import AppConfig

from .logs import kv

GC_THRESHOLD = (50_000, 20, 100)

logger = logging.getLogger(__name__)


class VirusesConfig(AppConfig):
    name = "viruses"

    def ready(self):
        from . import checks, metrics, signals  # noqa: F401  (receivers, checks, log counting)

        if serving(sys.argv):
            tune_gc()


def serving(argv: list[str]) -> bool:
    """Whether this process is a server: `daphne ...`, `python -m daphne ...` or `runserver`."""
    program = Path(argv[0]) if argv else Path()
    return "daphne" in (program.name, program.parent.name) or argv[1:2] == ["runserver"]


def tune_gc() -> None:
    # A server holds thousands of long-lived socket objects; each full pass of the cyclic GC
    # over them stalls every client at once (fan-out p99 at 1000 sockets: 294 -> 81 ms without
    # those stalls, docs/performance.md). Keep start-up objects out of collections, collect
    # less often. Process-wide, so never in other processes (tests, commands).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    logger.info(
        kv("server.gc_tuned", frozen=gc.get_freeze_count(), threshold=",".join(map(str, GC_THRESHOLD)))
    )
