"""Reads of the game state."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import broadcast
from .models import ChangeCounter, Connection, Virus


def virus_state() -> tuple[int, list[dict]]:
    """Return (seq, viruses): every virus that exists as of change number `seq`."""
    with transaction.atomic():
        # The lock waits for writers mid-commit and keeps new ones out until we have read.
        seq = ChangeCounter.lock()
        viruses = [broadcast.virus_json(v) for v in Virus.objects.all()]
    return seq, viruses


def online_count() -> int:
    """Count open sockets on servers that are still alive."""
    return Connection.objects.filter(last_seen__gte=stale_before()).count()


def snapshot() -> tuple[int, list[dict], int]:
    """Return (seq, viruses, online): what a client is sent first and on resync."""
    seq, viruses = virus_state()
    return seq, viruses, online_count()


def address_over_cap(address: str) -> bool:
    """Whether one client address already has its VIRUS_MAX_CONNECTIONS_PER_ADDRESS sockets open."""
    limit = settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS
    if limit <= 0 or not address:
        return False
    # Indexed; one query, counting sockets on live servers only.
    return (
        Connection.objects.filter(client_address=address[:64], last_seen__gte=stale_before()).count() >= limit
    )


def stale_before():
    """Rows not refreshed since then belong to a server that died: they no longer count.

    A server refreshes its connections' `last_seen` every VIRUS_PRESENCE_HEARTBEAT seconds.
    """
    return timezone.now() - timedelta(seconds=3 * settings.VIRUS_PRESENCE_HEARTBEAT)
