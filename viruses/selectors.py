"""Reads of the game state."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from . import messages
from .models import ChangeCounter, Connection, Player, Virus

BOARD_SIZE = 10  # players on the leaderboard
ONLINE_NAMES = 12  # names online listed; the rest are "and N more"


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


def snapshot() -> tuple[int, list[dict], int, dict]:
    """Return (seq, viruses, online, extra): what every client is sent first and on resync.

    `extra` holds the additions to the first contract: the leaderboard and the names
    online. Each viewer's own `me` is added per socket (`messages.for_viewer`).
    """
    seq, viruses = virus_state()
    extra = {"leaderboard": leaderboard(), **online_players()}
    return seq, viruses, online_count(), extra


def online_players(limit: int = ONLINE_NAMES) -> dict:
    """Who is online by name: `{"online_players": [{"id", "name"}, ...], "online_more": N}`.

    At most `limit` names (alphabetical); `online_more` counts the other named players.
    Anonymous sockets (scripts without the cookie) and banned players count only in `online`.
    """
    named = Player.objects.filter(
        pk__in=Connection.objects.filter(_online(), player__isnull=False).values("player_id"), banned=False
    )
    shown = list(named.order_by("name_key").values("id", "name")[:limit])
    more = named.count() - len(shown) if len(shown) == limit else 0
    return {
        "online_players": [{"id": str(p["id"]), "name": p["name"]} for p in shown],
        "online_more": more,
    }


def leaderboard() -> dict:
    """The board: the top BOARD_SIZE players by kills (ties: who got there first) and how many rank.

    A player ranks after a minimum of play (`_ranked`); banned players never do.
    """
    top = _ranked().values("id", "name", "kills")[:BOARD_SIZE]
    return {
        "top": [
            {"rank": rank, "id": str(row["id"]), "name": row["name"], "kills": row["kills"]}
            for rank, row in enumerate(top, 1)
        ],
        "players": _ranked().count(),
    }


def player(player_id) -> Player | None:
    return Player.objects.filter(pk=player_id).first()


def me(player_id) -> dict | None:
    """The player as they see themself: `{"id", "name", "kills", "rank", "banned"}`, or None."""
    player = Player.objects.filter(pk=player_id).first() if player_id else None
    if player is None:
        return None
    return {
        "id": str(player.pk),
        "name": player.name,
        "kills": player.kills,
        "rank": rank(player),
        "banned": player.banned,
    }


def rank(player: Player) -> int | None:
    """The player's place on the whole board (1 is first), None when not on it."""
    if not _ranked().filter(pk=player.pk).exists():
        return None
    kills, at = player.kills, player.scored_at
    tied = Q(kills=kills) & (Q(scored_at__lt=at) | Q(scored_at=at, id__lt=player.pk))
    ahead = Q(kills__gt=kills) | tied
    return _ranked().filter(ahead).count() + 1


def _ranked():
    """Players on the board: VIRUS_RANK_MIN_KILLS kills, VIRUS_RANK_MIN_SECONDS since their first visit.

    One address can mint dozens of players at once; a minimum of play keeps them off the board
    until they have played like anyone else, while every pupil of a class behind one address
    ranks as soon as they have (a per-address ceiling would shut the class out).
    """
    joined_before = timezone.now() - timedelta(seconds=settings.VIRUS_RANK_MIN_SECONDS)
    return Player.objects.filter(
        kills__gte=max(1, settings.VIRUS_RANK_MIN_KILLS), created_at__lte=joined_before, banned=False
    ).order_by("-kills", "scored_at", "id")


def _online() -> Q:
    return Q(last_seen__gte=stale_before())


def stale_before():
    """Rows not refreshed since then belong to a server that died: they no longer count.

    A server refreshes its connections' `last_seen` every VIRUS_PRESENCE_HEARTBEAT seconds.
    """
    return timezone.now() - timedelta(seconds=3 * settings.VIRUS_PRESENCE_HEARTBEAT)
