"""The WebSocket message schema and the only place that talks to the channel layer.

Every message is encoded once, here, and carried through the group as ready-made text,
so a consumer relays it without re-encoding it per client.
"""

import json
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .logs import kv

GROUP = "viruses"

logger = logging.getLogger(__name__)


def virus_json(virus) -> dict:
    """Return the contract's JSON form of a virus."""
    return {
        "id": str(virus.id),
        "kind": virus.kind,
        "x": virus.x,
        "y": virus.y,
        "created_at": virus.created_at.isoformat(),
    }


def snapshot(*, seq: int, viruses: list[dict], online: int) -> str:
    return _encode({"type": "snapshot", "seq": seq, "viruses": viruses, "online": online})


def error(message: str) -> str:
    return _encode({"type": "error", "error": message})


def virus_created(*, seq: int, virus: dict) -> dict:
    return _event("virus.created", {"type": "virus.created", "seq": seq, "virus": virus})


def virus_killed(*, seq: int, virus_id: str) -> dict:
    return _event("virus.killed", {"type": "virus.killed", "seq": seq, "id": virus_id})


def presence(*, online: int) -> dict:
    return _event("presence", {"type": "presence", "online": online})


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


def _event(kind: str, message: dict) -> dict:
    # `seq` rides along outside the text only for the log line in `apush`.
    return {"type": kind, "seq": message.get("seq"), "text": _encode(message)}


def _encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))
