"""The only place that pushes to the channel layer: group events built by `messages`."""

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .logs import kv

GROUP = "viruses"

logger = logging.getLogger(__name__)


async def apush(event: dict) -> bool:
    """Send a group event to every connected client; return whether the layer took it.

    A failure is logged, never raised: pushes run after commit, so they cannot undo the
    change, and clients catch up from the seq gap (resync) or their next snapshot.
    """
    seq = event.get("seq")
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
