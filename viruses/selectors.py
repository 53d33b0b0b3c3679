"""Reads of the game state."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from . import messages
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
    return rows[0].seq, [messages.virus_json(v) for v in rows if v.pk is not None]


def online_count() -> int:
    """Count open sockets on servers that are still alive: the page's "players online"."""
    return Connection.objects.filter(_online()).count()


def game_status() -> dict:
    """Counts an operator wants at a glance (a handful of small queries).

    `online` counts what `online_count()` counts; each server's rows split the same way.
    """
    now = timezone.now()
    rows = (
        Connection.objects.values("server")
        .annotate(
            online=Count("id", filter=_online()),
            stale=Count("id", filter=~_online()),
            last_seen=Max("last_seen"),
            since=Min("connected_at"),
        )
        .order_by("server")
    )
    servers = [
        {
            "server": row["server"],
            "state": "alive" if row["online"] else "stale",
            "connections": row["online"] + row["stale"],
            "online": row["online"],
            "stale": row["stale"],
            "last_seen_seconds_ago": round((now - row["last_seen"]).total_seconds(), 1),
            "oldest_connection": row["since"].isoformat(),
        }
        for row in rows
    ]
    counter = ChangeCounter.objects.filter(pk=1).first()
    return {
        "seq": counter.value if counter else 0,
        "viruses": Virus.objects.count(),
        "max_alive": settings.VIRUS_MAX_ALIVE,
        "online": sum(s["online"] for s in servers),
        "stale": sum(s["stale"] for s in servers),
        "servers": servers,
    }


def snapshot() -> tuple[int, list[dict], int]:
    """Return (seq, viruses, online): what a client is sent first and on resync."""
    seq, viruses = virus_state()
    return seq, viruses, online_count()


def _online() -> Q:
    return Q(last_seen__gte=stale_before())


def stale_before():
    """Rows not refreshed since then belong to a server that died: they no longer count.

    A server refreshes its connections' `last_seen` every VIRUS_PRESENCE_HEARTBEAT seconds.
    """
    return timezone.now() - timedelta(seconds=3 * settings.VIRUS_PRESENCE_HEARTBEAT)
