"""Reads of the game state."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import broadcast
from .models import ChangeCounter, Connection, Virus


def virus_state() -> tuple[int, list[dict]]:
    """Return (seq, viruses): every virus that exists as of change number `seq`.

    One SELECT reads the counter and the viruses together, and a single statement sees one
    committed state (a WAL read snapshot on SQLite, the statement's snapshot on
    PostgreSQL): no lock, so readers never wait for writers nor hold them up. Writers
    advance the counter in the transaction that changes the viruses, so the seq read is
    exactly the last change the rows include.
    """
    counter, virus = ChangeCounter._meta.db_table, Virus._meta.db_table
    ordering = ", ".join(f"v.{Virus._meta.get_field(f.lstrip('-')).column}" for f in Virus._meta.ordering)
    rows = list(
        Virus.objects.raw(
            f"SELECT c.value AS seq, v.id, v.kind, v.x, v.y, v.created_at "
            f"FROM {counter} c LEFT JOIN {virus} v ON 1 = 1 WHERE c.id = 1 ORDER BY {ordering}"
        )
    )
    if not rows:
        # `manage.py flush` removed the counter row (a migration creates it): put it back.
        ChangeCounter.objects.get_or_create(pk=1)
        return virus_state()
    # With no virus the LEFT JOIN still yields the counter, as one row of NULLs.
    return rows[0].seq, [broadcast.virus_json(v) for v in rows if v.pk is not None]


def online_count() -> int:
    """Count open sockets on servers that are still alive."""
    return Connection.objects.filter(last_seen__gte=stale_before()).count()


def connections_from(address: str) -> int:
    """Count open sockets of one client address on live servers (indexed; one query)."""
    return Connection.objects.filter(client_address=address[:64], last_seen__gte=stale_before()).count()


def stale_before():
    """Rows not refreshed since then belong to a server that died: they no longer count.

    A server refreshes its connections' `last_seen` every VIRUS_PRESENCE_HEARTBEAT seconds.
    """
    return timezone.now() - timedelta(seconds=3 * settings.VIRUS_PRESENCE_HEARTBEAT)
