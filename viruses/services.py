"""The only writers: viruses and players (pushing is not their job: the signals do it on
commit) and the `Connection` rows that say who is online."""

import math
import random
import uuid
from collections import defaultdict

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from . import names, players
from .errors import AliveCapReached, BadName, GameError, NameTaken, PlayerBanned, VirusNotFound
from .models import ChangeCounter, Connection, Player, Virus
from .selectors import stale_before

MARGIN = 6  # percent kept free at the playground's edges, so no virus is cut off
# A new virus keeps at least this far (percent of the dish) from every living one when it
# can; on a crowded dish it takes the emptiest of CANDIDATES random spots instead.
SPACING = 12.0
CANDIDATES = 40


Actor = Player | uuid.UUID | str | None  # who acts: a player (or its id), None for the game itself


def virus_create(
    *, kind: int | None = None, x: float | None = None, y: float | None = None, by: Actor = None
) -> Virus:
    """Create one virus, placed and drawn by the server unless told otherwise.

    `by` is the player who released it (None: the spawner, the admin); a banned player is refused.
    """
    explicit = (kind, x, y) != (None, None, None)
    kind = random.randrange(Virus.KINDS) if kind is None else kind
    if explicit:
        # Before the lock, which every writer waits for; validating costs a query per
        # constraint. The server's own choices are in range by construction.
        sample = Virus(kind=kind, x=_coordinate() if x is None else x, y=_coordinate() if y is None else y)
        sample.full_clean(validate_unique=False)  # the id is a fresh uuid4
    with ChangeCounter.locked():  # count-then-insert is then atomic across processes
        player = _actor(by)
        alive = _alive_positions() if x is None and y is None else None  # only to place it
        if (_alive_count() if alive is None else len(alive)) >= settings.VIRUS_MAX_ALIVE:
            raise AliveCapReached(f"the playground is full ({settings.VIRUS_MAX_ALIVE} viruses)")
        if alive is not None:
            x, y = place(alive)
        virus = Virus(kind=kind, x=_coordinate() if x is None else x, y=_coordinate() if y is None else y)
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


def virus_kill(*, virus_id: uuid.UUID | str, by: Actor = None) -> None:
    """Kill one virus and credit `by` with it; a second kill of the same virus raises `VirusNotFound`.

    The delete and the credit commit together, so of two players racing for one virus
    exactly one scores.
    """
    # Under the counter lock a racing kill waits, then finds nothing: exactly one
    # post_delete, so exactly one `virus.killed` push and one credit.
    with ChangeCounter.locked():
        player = _actor(by)
        virus = _get(Virus, virus_id)
        if virus is None:
            raise VirusNotFound("no such virus (already killed?)")
        virus.by = player  # read by the post_delete receiver for the push's "by"
        virus.delete()
        if player is not None:
            player.kills += 1
            player.scored_at = timezone.now()
            player.save(update_fields=["kills", "scored_at"])


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


def _alive_positions() -> list[tuple[float, float]]:
    quote, meta = connection.ops.quote_name, Virus._meta
    x, y = (quote(meta.get_field(name).column) for name in ("x", "y"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {x}, {y} FROM {quote(meta.db_table)}")
        return cursor.fetchall()


def _alive_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(Virus._meta.db_table)}")
        return cursor.fetchone()[0]


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

    `sockets`: dicts of `channel_name`, `client_address`, `user_agent` and maybe `player_id`.
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
            last_seen=now,
        )
        for socket in sockets
    )


def connections_close(*, channel_names: list[str]) -> None:
    Connection.objects.filter(channel_name__in=channel_names).delete()


def connections_close_server(*, server: str) -> None:
    """Remove every row of `server` (the process is leaving: drain.py)."""
    Connection.objects.filter(server=server).delete()


def connections_heartbeat(*, server: str, channel_names: list[str]) -> list[str]:
    """Refresh the rows of `server`'s open sockets, reap stale rows; return the reaped channels.

    Only open sockets are refreshed: a row whose delete failed (database briefly down) goes
    stale like a dead server's.
    """
    Connection.objects.filter(server=server, channel_name__in=channel_names).update(last_seen=timezone.now())
    stale = Connection.objects.filter(last_seen__lt=stale_before())
    reaped = list(stale.values_list("channel_name", flat=True))
    stale.filter(channel_name__in=reaped).delete()
    return reaped
