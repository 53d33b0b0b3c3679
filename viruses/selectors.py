"""Reads of the game state; `room` None is the public world, a `Room` its own."""

from datetime import UTC, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from . import messages
from .errors import RoomNotFound
from .models import ChangeCounter, Connection, Player, Room, Round, RoundScore, Score, Virus

BOARD_SIZE = 10  # players on the leaderboard
ONLINE_NAMES = 12  # names online listed; the rest are "and N more"


def virus_state(room: Room | None = None) -> tuple[int, list[dict]]:
    """Return (seq, viruses): every virus that exists as of change number `seq`.

    One SELECT reads the counter and the viruses together, and a single statement sees one
    committed state (a WAL read snapshot on SQLite, the statement's snapshot on
    PostgreSQL): no lock, so readers never wait for writers nor hold them up. Writers
    advance the counter in the transaction that changes the viruses, so the seq read is
    exactly the last change the rows include.
    """
    counter, virus = ChangeCounter._meta.db_table, Virus._meta.db_table
    ordering = ", ".join(f"v.{Virus._meta.get_field(f.lstrip('-')).column}" for f in Virus._meta.ordering)
    if room is None:
        world, params = "v.room_id IS NULL WHERE c.room_id IS NULL", []
    else:
        world, params = "v.room_id = c.room_id WHERE c.room_id = %s", [room.pk]
    rows = list(
        Virus.objects.raw(
            f"SELECT c.value AS seq, v.id, v.kind, v.x, v.y, v.created_at "
            f"FROM {counter} c LEFT JOIN {virus} v ON {world} ORDER BY {ordering}",
            params,
        )
    )
    if not rows:
        if room is not None:
            raise RoomNotFound("no such room (it may have expired)")
        # `manage.py flush` removed the counter row (a migration creates it): put it back.
        ChangeCounter.objects.get_or_create(room=None)
        return virus_state()
    # With no virus the LEFT JOIN still yields the counter, as one row of NULLs.
    return rows[0].seq, [messages.virus_json(v) for v in rows if v.pk is not None]


def online_count(room: Room | None = None) -> int:
    """Count the world's open sockets on servers that are still alive: the page's "players online"."""
    return Connection.objects.filter(_online(), room=room).count()


def online_counts(room_ids) -> dict:
    """`online_count` of several worlds at once (room ids, None for the public one): by room id."""
    counts = dict.fromkeys(room_ids, 0)
    rows = Connection.objects.filter(_online()).values("room_id").annotate(online=Count("id")).order_by()
    counts.update({row["room_id"]: row["online"] for row in rows if row["room_id"] in counts})
    return counts


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
    counter = ChangeCounter.objects.filter(room=None).first()
    return {
        "seq": counter.value if counter else 0,
        "viruses": Virus.objects.count(),
        "max_alive": settings.VIRUS_MAX_ALIVE,
        "online": sum(s["online"] for s in servers),
        "stale": sum(s["stale"] for s in servers),
        "servers": servers,
    }


def snapshot(room: Room | None = None) -> tuple[int, list[dict], int, dict]:
    """Return (seq, viruses, online, extra): what every client of the world is sent first and on resync.

    `extra` holds the additions to the first contract: the leaderboard and the names
    online, and in a room the room. Each viewer's own `me` is added per socket
    (`messages.for_viewer`).
    """
    seq, viruses = virus_state(room)
    online = online_count(room)
    extra = {"leaderboard": live_board(room), **online_players(room=room)}
    if room is not None:
        extra["room"] = room_json(room, online=online, alive=len(viruses))
        last = last_round(room)
        extra["round"] = None if last is None else messages.round_json(last)
        extra["now"] = timezone.now().isoformat()  # pages count rounds down by the server's clock
    return seq, viruses, online, extra


def room(code) -> Room:
    """The room of `code` (any case); `RoomNotFound` (404) for an unknown or expired one."""
    code = Room.normal_code(code)
    found = Room.objects.select_related("host").filter(code=code).first() if code else None
    if found is None:
        raise RoomNotFound("no such room (it may have expired)")
    return found


def rooms_online() -> list[Room]:
    """The rooms with at least one socket online, oldest first."""
    online = Connection.objects.filter(_online(), room__isnull=False).values("room_id")
    return list(Room.objects.filter(pk__in=online).order_by("created_at", "id"))


def room_json(room: Room, *, online: int | None = None, alive: int | None = None) -> dict:
    """The contract's Room: `{"code", "name", "url", "host", "online", "alive", "locked", "max_players"}`."""
    return {
        "code": room.code,
        "name": room.name,
        "url": room.url,
        "host": messages.player_json(room.host),
        "online": online_count(room) if online is None else online,
        "alive": Virus.objects.filter(room=room).count() if alive is None else alive,
        "locked": room.locked,
        "max_players": settings.VIRUS_ROOM_MAX_PLAYERS,
    }


def room_admits(room: Room, player_id) -> str | None:
    """Why a socket of `player_id` may not join `room` now ("locked"), None if it may.

    Full is not decided here: a count read then acted on overshoots under a burst (admission.seat).
    """
    if room.locked and not _is_member(room, player_id):
        return "locked"
    return None


def _is_member(room: Room, player_id) -> bool:
    if player_id is None:
        return False
    if room.host_id is not None and str(room.host_id) == str(player_id):
        return True
    return Score.objects.filter(room=room, player_id=player_id).exists()


def online_players(limit: int = ONLINE_NAMES, *, room: Room | None = None) -> dict:
    """Who is online by name: `{"online_players": [{"id", "name"}, ...], "online_more": N}`.

    At most `limit` names (alphabetical); `online_more` counts the other named players.
    Anonymous sockets (scripts without the cookie) and banned players count only in `online`.
    """
    sockets = Connection.objects.filter(_online(), player__isnull=False, room=room)
    named = Player.objects.filter(pk__in=sockets.values("player_id"), banned=False)
    shown = list(named.order_by("name_key").values("id", "name")[:limit])
    more = named.count() - len(shown) if len(shown) == limit else 0
    return {
        "online_players": [{"id": str(p["id"]), "name": p["name"]} for p in shown],
        "online_more": more,
    }


SCOPES = ("all", "today")  # the public world's boards: all-time, and kills scored since 00:00 UTC


def live_board(room: Room | None = None) -> dict:
    """The board a world's clients are sent (snapshot, `leaderboard` push): the public world's
    carries today's too, as `"today"`, so the page switches between them without asking."""
    board = leaderboard(room)
    if room is None:
        board["today"] = leaderboard(scope="today")
    return board


def leaderboard(room: Room | None = None, scope: str = "all") -> dict:
    """The world's board: the top BOARD_SIZE players by kills (ties: who got there first) and how many rank.

    On the public board a player ranks after a minimum of play (`_ranked`); scope "today"
    counts the kills scored since 00:00 UTC. A room's board counts its own kills, from the
    first (its host decides who plays), or while a round runs that round's (`round_board`).
    Banned players never rank.
    """
    if room is not None and (running := running_round(room)) is not None:
        return round_board(running)
    if room is None and scope == "today":
        today = (
            _ranked()
            .filter(today_on=timezone.now().astimezone(UTC).date())
            .order_by("-today_kills", "scored_at", "id")
        )
        top = [
            {**row, "kills": row["today_kills"]}
            for row in today.values("id", "name", "today_kills")[:BOARD_SIZE]
        ]
        ranked = today.count()
    elif room is None:
        top = _ranked().values("id", "name", "kills")[:BOARD_SIZE]
        ranked = _ranked().count()
    else:
        scores = _room_ranked(room)
        top = [
            {"id": row["player_id"], "name": row["player__name"], "kills": row["kills"]}
            for row in scores.values("player_id", "player__name", "kills")[:BOARD_SIZE]
        ]
        ranked = scores.count()
    return {
        "top": [
            {"rank": rank, "id": str(row["id"]), "name": row["name"], "kills": row["kills"]}
            for rank, row in enumerate(top, 1)
        ],
        "players": ranked,
    }


def last_round(room: Room) -> Round | None:
    """The room's running round, else its last one."""
    return Round.objects.filter(room=room).order_by("-number").first()


def running_round(room: Room) -> Round | None:
    return Round.objects.filter(room=room, state=Round.RUNNING).first()


def round_board(round_: Round, size: int = BOARD_SIZE) -> dict:
    """The round's board, `"scope": "round"`: its top `size` players by kills (ties: who got there
    first). Players with more than VIRUS_ROUND_REFUSED_LIMIT refused kills in it never rank."""
    scores = RoundScore.objects.filter(
        round=round_, kills__gt=0, refused__lte=settings.VIRUS_ROUND_REFUSED_LIMIT, player__banned=False
    ).order_by("-kills", "scored_at", "id")
    top = scores.values("player_id", "player__name", "kills")[:size]
    return {
        "top": [
            {"rank": rank, "id": str(row["player_id"]), "name": row["player__name"], "kills": row["kills"]}
            for rank, row in enumerate(top, 1)
        ],
        "players": scores.count(),
        "scope": "round",
        "round": round_.number,
    }


def player(player_id) -> Player | None:
    return Player.objects.filter(pk=player_id).first()


def me(player_id, room: Room | None = None) -> dict | None:
    """The player as they see themself in the world: `{"id", "name", "kills", "rank", "banned"}`, or None."""
    player = Player.objects.filter(pk=player_id).first() if player_id else None
    if player is None:
        return None
    score = player if room is None else Score.objects.filter(room=room, player=player).first()
    return {
        "id": str(player.pk),
        "name": player.name,
        "kills": score.kills if score else 0,
        "rank": rank(player, room) if score else None,
        "banned": player.banned,
    }


def rank(player: Player, room: Room | None = None) -> int | None:
    """The player's place on the world's whole board (1 is first), None when not on it."""
    if room is None:
        score = player if _ranked().filter(pk=player.pk).exists() else None
    else:
        score = Score.objects.filter(room=room, player=player).first()
    if player.banned or score is None or not score.kills:
        return None
    kills, at, key = score.kills, score.scored_at, score.pk
    tied = Q(kills=kills) & (Q(scored_at__lt=at) | Q(scored_at=at, id__lt=key))
    ahead = Q(kills__gt=kills) | tied
    ranked = _ranked() if room is None else _room_ranked(room)
    return ranked.filter(ahead).count() + 1


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


def _room_ranked(room: Room):
    return Score.objects.filter(room=room, kills__gt=0, player__banned=False).order_by(
        "-kills", "scored_at", "id"
    )


def _online() -> Q:
    return Q(last_seen__gte=stale_before())


def stale_before():
    """Rows not refreshed since then belong to a server that died: they no longer count.

    A server refreshes its connections' `last_seen` every VIRUS_PRESENCE_HEARTBEAT seconds.
    """
    return timezone.now() - timedelta(seconds=3 * settings.VIRUS_PRESENCE_HEARTBEAT)
