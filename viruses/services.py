"""The only writers: rooms, viruses and players (pushing is not their job: the signals do it
on commit) and the `Connection` rows that say who is online.

Every virus writer takes a world: `room=None` is the public world, a `Room` its own.
"""

import contextlib
import logging
import math
import random
import uuid
from collections import defaultdict
from datetime import UTC, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from . import names, players, rounds, scoring
from .errors import (
    AliveCapReached,
    BadName,
    GameError,
    NameTaken,
    NotHost,
    PlayerBanned,
    RoomNotFound,
    VirusNotFound,
)
from .logs import kv
from .models import ChangeCounter, Connection, Player, Room, RoomGone, Score, Virus
from .selectors import stale_before

logger = logging.getLogger(__name__)

MARGIN = 6  # percent kept free at the playground's edges, so no virus is cut off
# A new virus keeps at least this far (percent of the dish) from every living one when it
# can; on a crowded dish it takes the emptiest of CANDIDATES random spots instead.
SPACING = 12.0
CANDIDATES = 40


Actor = Player | uuid.UUID | str | None  # who acts: a player (or its id), None for the game itself


def virus_create(
    *,
    kind: int | None = None,
    x: float | None = None,
    y: float | None = None,
    by: Actor = None,
    room: Room | None = None,
) -> Virus:
    """Create one virus in `room` (None: the public world), placed and drawn by the server unless told.

    `by` is the player who released it (None: the spawner, the admin); a banned player is refused.
    """
    explicit = (kind, x, y) != (None, None, None)
    kind = random.randrange(Virus.KINDS) if kind is None else kind
    if explicit:
        # Before the lock, which every writer waits for; validating costs a query per
        # constraint. The server's own choices are in range by construction.
        sample = Virus(kind=kind, x=_coordinate() if x is None else x, y=_coordinate() if y is None else y)
        sample.full_clean(validate_unique=False)  # the id is a fresh uuid4
    with _world_locked(room):  # count-then-insert is then atomic across processes
        player = _actor(by)
        alive = _alive_positions(room) if x is None and y is None else None  # only to place it
        if (_alive_count(room) if alive is None else len(alive)) >= settings.VIRUS_MAX_ALIVE:
            raise AliveCapReached(f"the playground is full ({settings.VIRUS_MAX_ALIVE} viruses)")
        if alive is not None:
            x, y = place(alive)
        x, y = _coordinate() if x is None else x, _coordinate() if y is None else y
        virus = Virus(kind=kind, x=x, y=y, room=room, creator=player)
        virus.by = player  # read by the post_save receiver for the push's "by"
        virus.save(force_insert=True)
    return virus


def place(alive: list[tuple[float, float]]) -> tuple[float, float]:
    """Pick a spot at least SPACING from every living virus, else the emptiest of CANDIDATES tried."""
    # Viruses by square cells of side SPACING: any virus outside a spot's 3 x 3 cells is
    # farther than SPACING, so a nearer one is in those cells, and so is the nearest.
    cells = defaultdict(list)
    for ax, ay in alive:
        cells[ax // SPACING, ay // SPACING].append((ax, ay))
    best, best_gap = None, -1.0  # squared distances: no square roots in the loop
    for _ in range(CANDIDATES):
        x, y = _coordinate(), _coordinate()
        cx, cy = x // SPACING, y // SPACING
        gap = math.inf
        for i in (cx - 1, cx, cx + 1):
            for j in (cy - 1, cy, cy + 1):
                for ax, ay in cells.get((i, j), ()):
                    distance = (x - ax) ** 2 + (y - ay) ** 2
                    if distance < gap:
                        gap = distance
        if gap >= SPACING**2:
            return x, y
        if gap > best_gap:
            best, best_gap = (x, y), gap
    return best


def _coordinate() -> float:
    return round(random.uniform(MARGIN, 100 - MARGIN), 2)


def virus_kill(*, virus_id: uuid.UUID | str, by: Actor = None, room: Room | None = None) -> None:
    """Kill one virus of `room` and credit `by` with it on that world's board; a second kill of
    the same virus, or a virus of another world, raises `VirusNotFound`.

    The delete and the credit commit together, so of two players racing for one virus
    exactly one scores; a kill the fair-play rules refuse (scoring.py) still kills.
    """
    # Under the counter lock a racing kill waits, then finds nothing: exactly one
    # post_delete, so exactly one `virus.killed` push and one credit.
    with _world_locked(room):
        player = _actor(by)
        virus = _get(Virus, virus_id)
        if virus is None or virus.room_id != (None if room is None else room.pk):
            raise VirusNotFound("no such virus (already killed?)")
        virus.room = room  # the instance at hand: the receiver needs the room's group, not a query
        virus.by = player  # read by the post_delete receiver for the push's "by"
        now = timezone.now()
        verdict = virus.verdict = scoring.judge(virus, player, now)  # the push's "scored"
        virus.delete()
        if player is not None:
            _credit(player, room, verdict, now)
            rounds.record_kill(room=room, player=player, scored=verdict.scored)
    if verdict.reason is not None:
        logger.info(kv("kill.unscored", reason=verdict.reason, player=player.pk, ms=verdict.reaction_ms))


def _credit(player: Player, room: Room | None, verdict: scoring.Verdict, now) -> None:
    """Credit one kill on the world's board as `verdict` says, and count it in the player's stats."""
    fields = scoring.record(player, verdict)
    if verdict.scored and room is not None:
        score = Score.objects.get_or_create(room=room, player=player)[0]
        score.kills, score.scored_at = score.kills + 1, now
        score.save(update_fields=["kills", "scored_at"])
    elif verdict.scored:
        today = now.astimezone(UTC).date()
        player.today_kills = player.today_kills + 1 if player.today_on == today else 1
        player.kills, player.scored_at, player.today_on = player.kills + 1, now, today
        fields += ["kills", "scored_at", "today_kills", "today_on"]
    player.save(update_fields=fields)


@contextlib.contextmanager
def _world_locked(room: Room | None):
    """`ChangeCounter.locked(room)`; a room removed meanwhile is not found (404)."""
    try:
        with ChangeCounter.locked(room):
            if room is not None:
                Room.objects.filter(pk=room.pk).update(last_activity=timezone.now())
            yield
    except RoomGone:
        raise RoomNotFound("no such room (it may have expired)") from None


def _actor(by: Actor) -> Player | None:
    """Return the acting player as it is now (call under the counter lock); refuse a banned one.

    An id whose player no longer exists (a database reset) acts as nobody, like the spawner.
    """
    if by is None:
        return None
    player = _get(Player, by.pk if isinstance(by, Player) else by)
    if player is not None and player.banned:
        raise PlayerBanned("this player is banned")
    return player


# Plain SQL for the reads under the counter lock: every write waits for them, and the ORM's
# query compiler cost more CPU than the database did (docs/performance.md#lever-plain-sql).


def _get(model, pk):
    """Return the `model` row whose primary key is `pk` as an instance, or None.

    An invalid `pk` raises ValidationError, as `filter(pk=...)` does.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the `connection` proxy costs a lookup
    meta, quote = model._meta, db.ops.quote_name
    fields = meta.concrete_fields
    columns = ", ".join(quote(field.column) for field in fields)
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s",
            [meta.pk.get_db_prep_value(pk, db)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(fields, row, strict=True):
        # The database's converters then the field's, as the ORM applies them (SQLite
        # returns UUIDs, datetimes and booleans as text and integers).
        column = field.get_col(meta.db_table)
        for convert in db.ops.get_db_converters(column) + field.get_db_converters(db):
            value = convert(value, column, db)
        values.append(value)
    return model.from_db(db.alias, [field.attname for field in fields], values)


def _alive_positions(room: Room | None) -> list[tuple[float, float]]:
    quote, meta = connection.ops.quote_name, Virus._meta
    x, y = (quote(meta.get_field(name).column) for name in ("x", "y"))
    where, params = _in_world(room)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {x}, {y} FROM {quote(meta.db_table)} WHERE {where}", params)
        return cursor.fetchall()


def _alive_count(room: Room | None) -> int:
    where, params = _in_world(room)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {connection.ops.quote_name(Virus._meta.db_table)} WHERE {where}", params
        )
        return cursor.fetchone()[0]


def _in_world(room: Room | None) -> tuple[str, list]:
    column = connection.ops.quote_name(Virus._meta.get_field("room").column)
    return (f"{column} IS NULL", []) if room is None else (f"{column} = %s", [room.pk])


def room_create(*, host: Actor, name=None) -> Room:
    """Create a room hosted by player `host`; an empty or missing `name` gets a generated one.

    `BadName` (400) for an invalid name, `PlayerBanned` (403) for a banned host.
    """
    name = (
        players.generated_room_name()
        if name is None or (isinstance(name, str) and not name.strip())
        else name
    )
    try:
        name = names.clean(name, max_length=Room.NAME_MAX)
    except names.InvalidName as exc:
        raise BadName(str(exc)) from None
    player = _actor(host)
    if player is None:
        raise GameError("a room needs a host: open the game page first")
    for _ in range(20):
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    code=Room.new_code(), name=name, host=player, last_activity=timezone.now()
                )
                ChangeCounter.objects.create(room=room)
                return room
        except IntegrityError:  # the code was taken (31**5 codes: rare until there are many rooms)
            continue
    raise GameError("could not find a free room code, try again")


def room_set_locked(*, room: Room, by: Actor, locked: bool) -> Room:
    """Lock or unlock `room` (no new players while locked); only its host may."""
    require_host(room, by)
    room.locked = locked
    room.save(update_fields=["locked"])
    return room


def require_host(room: Room, by: Actor) -> None:
    """Raise `NotHost` (403) unless `by` is the host of `room`."""
    if (
        by is None
        or room.host_id is None
        or str(room.host_id) != str(by.pk if isinstance(by, Player) else by)
    ):
        raise NotHost("only the room's host may do that")


def rooms_prune(*, idle_hours: int) -> list[str]:
    """Remove rooms with no socket online and no change, join or leave for `idle_hours`; return the codes."""
    idle = Room.objects.filter(last_activity__lt=timezone.now() - timedelta(hours=idle_hours)).exclude(
        pk__in=Connection.objects.filter(last_seen__gte=stale_before(), room__isnull=False).values("room_id")
    )
    codes = []
    for room in idle:
        with transaction.atomic():
            room.delete()  # its viruses, counter, scores and stale connection rows go with it
        codes.append(room.code)
    return codes


def room_join(*, room: Room, player_id) -> None:
    """Record that a player joined `room`: a locked room lets them back in (a row with no kill yet)."""
    if player_id is not None and Player.objects.filter(pk=player_id).exists():
        Score.objects.get_or_create(room=room, player_id=player_id)


def player_create() -> Player:
    """Create an anonymous player with a friendly generated name nobody else has."""
    for attempt in range(20):
        name = players.generated_name(attempt)
        key, upper_key = names.keys(name)
        try:
            with transaction.atomic():
                return Player.objects.create(name=name, name_key=key, name_upper_key=upper_key)
        except IntegrityError:  # the name was taken (maybe just now, by another process)
            continue
    raise GameError("could not find a free name, try again")


def player_rename(*, player: Actor, name) -> Player:
    """Rename a player; an invalid, reserved or taken (look-alike) name raises and changes nothing."""
    try:
        name = names.normal(name)
    except names.InvalidName as exc:
        raise BadName(str(exc)) from None
    key, upper_key = names.keys(name)
    try:
        with transaction.atomic():
            current = _actor(player)
            if current is None:
                raise GameError("no such player")
            # Before the rules: a look-alike of someone's name is "taken", whatever else is wrong with it.
            alike = Player.objects.filter(Q(name_key=key) | Q(name_upper_key=upper_key))
            if alike.exclude(pk=current.pk).exists():
                raise NameTaken(f"the name {name!r} is taken (or one that looks like it)")
            try:
                names.check(name)
            except names.InvalidName as exc:
                raise BadName(str(exc)) from None
            current.name, current.name_key, current.name_upper_key = name, key, upper_key
            current.save(update_fields=["name", "name_key", "name_upper_key"])
    except IntegrityError:  # taken between the check and the save
        raise NameTaken(f"the name {name!r} is taken (or one that looks like it)") from None
    return current


def players_set_banned(*, player_ids, banned: bool) -> int:
    """Ban or unban players (one save each, so the board is pushed); return how many changed."""
    changed = 0
    with ChangeCounter.locked():  # so that no kill in flight credits a player banned meanwhile
        for player in Player.objects.filter(pk__in=list(player_ids)).exclude(banned=banned):
            player.banned = banned
            player.save(update_fields=["banned"])
            changed += 1
    return changed


def connections_open(*, server: str, sockets: list[dict]) -> None:
    """Record open WebSockets of `server` (admin: who is online, on which server, as whom), in one INSERT.

    `sockets`: dicts of `channel_name`, `client_address`, `user_agent` and maybe `player_id`
    and `room_id` (None: the public world).
    """
    now = timezone.now()
    wanted = {socket.get("player_id") for socket in sockets} - {None}
    # A cookie of a player who is gone (a database reset) connects as nobody.
    known = {str(pk) for pk in Player.objects.filter(pk__in=wanted).values_list("pk", flat=True)}
    Connection.objects.bulk_create(
        Connection(
            channel_name=socket["channel_name"],
            server=server,
            client_address=socket["client_address"][:64],
            user_agent=socket["user_agent"][:255],
            player_id=socket.get("player_id") if str(socket.get("player_id")) in known else None,
            room_id=socket.get("room_id"),
            last_seen=now,
        )
        for socket in sockets
    )
    _rooms_active({socket.get("room_id") for socket in sockets})


def _rooms_active(room_ids: set) -> None:
    """A join or leave keeps a room from being pruned as idle."""
    if room_ids := room_ids - {None}:
        Room.objects.filter(pk__in=room_ids).update(last_activity=timezone.now())


def connections_close(*, channel_names: list[str]) -> None:
    closing = Connection.objects.filter(channel_name__in=channel_names)
    _rooms_active(set(closing.exclude(room=None).values_list("room_id", flat=True)))
    closing.delete()


def connections_close_server(*, server: str) -> None:
    """Remove every row of `server` (the process is leaving: drain.py)."""
    Connection.objects.filter(server=server).delete()


def connections_heartbeat(*, server: str, channel_names: list[str]) -> dict[str, str | None]:
    """Refresh the rows of `server`'s open sockets, reap stale rows; return the reaped channels
    and the code of each one's room (None: the public world).

    Only open sockets are refreshed: a row whose delete failed (database briefly down) goes
    stale like a dead server's.
    """
    Connection.objects.filter(server=server, channel_name__in=channel_names).update(last_seen=timezone.now())
    stale = Connection.objects.filter(last_seen__lt=stale_before())
    reaped = dict(stale.values_list("channel_name", "room__code"))
    stale.filter(channel_name__in=list(reaped)).delete()
    return reaped
