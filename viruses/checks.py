"""System checks for configurations that silently break live updates."""

import uuid

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import broadcast


@register()
def channel_layer_reaches_other_processes(app_configs, **kwargs):
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only reaches sockets of the same process: "
                "viruses spawned by cron or changed in a shell or another server are not "
                "pushed to browsers.",
                hint="Set REDIS_URL (make run starts a local Redis for you).",
                id="viruses.W001",
            )
        ]
    return []


# The widest value of each field: the longest repr of a float in 0..100, a full timestamp.
WIDEST_VIRUS = {
    "id": str(uuid.UUID(int=0)),
    "kind": 5,
    "x": 1.2345678901234567e-05,
    "y": 1.2345678901234567e-05,
    "created_at": "2000-01-01T00:00:00.000000+00:00",
}


def largest_snapshot_bytes(alive: int) -> int:
    """Return the size of the largest snapshot `alive` viruses can make."""
    text = broadcast.snapshot(seq=2**63 - 1, viruses=[WIDEST_VIRUS] * alive, online=2**31)
    return len(text.encode())


@register()
def snapshot_fits_in_a_message(app_configs, **kwargs):
    limit = settings.VIRUS_WS_MAX_MESSAGE_SIZE
    size = largest_snapshot_bytes(settings.VIRUS_MAX_ALIVE)
    if 0 < limit < size:
        fits = (limit - largest_snapshot_bytes(0)) // (largest_snapshot_bytes(1) - largest_snapshot_bytes(0))
        return [
            Error(
                f"A snapshot of VIRUS_MAX_ALIVE={settings.VIRUS_MAX_ALIVE} viruses takes up to {size} "
                f"bytes, over the WebSocket message size limit of {limit} bytes: once the "
                "playground fills up, every connect and resync would fail with 1011.",
                hint=f"Lower VIRUS_MAX_ALIVE to {fits} or less, or run daphne with "
                f"--websocket-max-message-size {size} (or more) and set VIRUS_WS_MAX_MESSAGE_SIZE "
                "to the same value.",
                id="viruses.E001",
            )
        ]
    return []
