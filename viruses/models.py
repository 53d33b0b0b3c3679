"""The game's state: rooms, viruses, the change counters, scores and open WebSocket connections."""

import contextlib
import secrets
import threading
import uuid

from django.db import connection, models, transaction

# SQLite admits one writer at a time and makes the others retry, sleeping up to 100 ms
# between tries; this process's changes queue on a lock instead, each woken as soon as the
# one before it commits (docs/performance.md#lever-sqlite-writer-queue). Writers in other
# processes still retry.
_sqlite_writers = threading.Lock()


class SignalBypassError(Exception):
    """A bulk write that would change viruses without anyone seeing it live."""


class VirusQuerySet(models.QuerySet):
    """Viruses; bulk writes refuse to run, since they fire no signals and so push nothing."""

    def _refuse(self, name: str):
        raise SignalBypassError(
            f"Virus.objects.{name}() fires no post_save/post_delete signal, so no browser would see "
            "the change and seq would skip it: create with save() (services.virus_create) and "
            "kill with delete() (services.virus_kill), one virus at a time"
        )

    def update(self, **kwargs):
        self._refuse("update")

    def bulk_create(self, *args, **kwargs):
        self._refuse("bulk_create")

    def bulk_update(self, *args, **kwargs):
        self._refuse("bulk_update")


class Virus(models.Model):
    """A virus on the shared playground; position and look are chosen by the server."""

    KINDS = 6

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.PositiveSmallIntegerField()
    x = models.FloatField(help_text="Percent of the playground's width.")
    y = models.FloatField(help_text="Percent of the playground's height.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # None: the public world at `/`.
    room = models.ForeignKey("Room", null=True, blank=True, on_delete=models.CASCADE, related_name="viruses")
    # The player who released it, so that they cannot score by killing it (viruses/scoring.py);
    # None for the spawner, the admin and the shell. No constraint: a removed player's id
    # may stay (it matches no killer), and SET_NULL would need a bulk update of viruses.
    creator = models.ForeignKey(
        "Player",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    objects = VirusQuerySet.as_manager()

    # Not stored: the player creating or killing this instance, set by the services for the
    # signal receivers' pushes ("by"); None for the spawner, the admin and the shell.
    by = None
    # Not stored: the kill's `scoring.Verdict`, set by services.virus_kill for the push's "scored".
    verdict = None

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "viruses"
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__gte=0, kind__lt=6), name="virus_kind_range"),
            models.CheckConstraint(
                condition=models.Q(x__gte=0, x__lte=100, y__gte=0, y__lte=100),
                name="virus_position_range",
            ),
        ]

    def __str__(self):
        return f"virus {self.id} (kind {self.kind})"

    def save(self, *args, **kwargs):
        # post_save fires after Model.save()'s own transaction handling; wrapping it keeps
        # the row, its seq number and the on_commit push in one transaction even when a
        # caller (a shell, a script) runs in autocommit mode.
        # No savepoint: a failed save fails the caller's transaction anyway, and a savepoint
        # costs two more round trips under the counter lock.
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)


class ChangeCounter(models.Model):
    """The row whose value is the `seq` of its world's last committed change: one per room.

    The public world's row is the one without a room (id 1, from a migration). A room's row
    comes with the room, so writes in two rooms lock two rows and never wait for each other
    on PostgreSQL.
    """

    value = models.BigIntegerField(default=0)
    room = models.OneToOneField(
        "Room", null=True, blank=True, on_delete=models.CASCADE, related_name="counter"
    )

    class Meta:
        # NULLs are distinct to a unique column: this keeps the public world to one row too,
        # even when two writers put it back at once after `manage.py flush`.
        constraints = [
            models.UniqueConstraint(
                models.functions.Coalesce("room", models.Value(0)), name="one_counter_per_world"
            )
        ]

    def __str__(self):
        return f"seq {self.value}"

    @classmethod
    def lock(cls, room: "Room | None" = None) -> int:
        """Return the world's current seq, holding its counter's row lock until the transaction ends.

        Every change takes this lock before it commits, so holding it orders writers and
        gives readers a view that no change can slip into. A room whose row is gone (it
        was removed) raises `RoomGone`.
        """
        # One plain statement: it runs for every change, under the lock (the ORM's get_or_create
        # costs about ten times its query in Python, docs/performance.md#lever-counter-lock-sql).
        table = connection.ops.quote_name(cls._meta.db_table)
        for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
        where, params = cls._where(room)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT value FROM {table} WHERE {where}{for_update}", params)
            row = cursor.fetchone()
        if row is not None:
            return row[0]
        if room is not None:
            raise RoomGone(f"no room {room.code}")
        # The row comes from a migration, but `manage.py flush` removes it.
        counter, _ = cls.objects.select_for_update().get_or_create(room=None)
        return counter.value

    @classmethod
    @contextlib.contextmanager
    def locked(cls, room: "Room | None" = None):
        """A change's transaction: `transaction.atomic()`, holding the world's counter lock from its start."""
        queue = connection.vendor == "sqlite" and not connection.in_atomic_block
        with _sqlite_writers if queue else contextlib.nullcontext(), transaction.atomic():
            cls.lock(room)
            yield

    @classmethod
    def advance(cls, room_id: int | None = None) -> int | None:
        """Count one more change of the world in the current transaction and return its seq.

        One statement (the row lock comes with the UPDATE): SQLite >= 3.35 and PostgreSQL
        both have RETURNING. None for a room whose row is gone (the room is being removed).
        """
        table = connection.ops.quote_name(cls._meta.db_table)
        where, params = cls._where(room_id)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE {where} RETURNING value", params)
            row = cursor.fetchone()
        if row is None:
            if room_id is not None:
                return None
            cls.lock()  # `manage.py flush` removed the row: put it back, then count
            return cls.advance()
        return row[0]

    @staticmethod
    def _where(room) -> tuple[str, list]:
        if room is None:
            # Not "id = 1": after `manage.py flush` a room's row may take that id.
            return "room_id IS NULL", []
        return "room_id = %s", [room if isinstance(room, int) else room.pk]


class RoomGone(Exception):
    """A room removed (pruned, deleted in the admin) while someone was acting in it."""


class Connection(models.Model):
    """One open WebSocket, so that admins can see who is online and on which server."""

    channel_name = models.CharField(max_length=255, unique=True)
    server = models.CharField(max_length=255, db_index=True)
    client_address = models.CharField(max_length=64, blank=True, db_index=True)
    user_agent = models.CharField(max_length=255, blank=True)
    # The player of the handshake's cookie, for the names online; none for anonymous scripts.
    player = models.ForeignKey("Player", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The world of the socket (None: the public one), for its online list and presence.
    room = models.ForeignKey("Room", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    connected_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self):
        return f"{self.client_address or 'unknown'} on {self.server}"


class Player(models.Model):
    """An anonymous player, known by a signed cookie (viruses/players.py); no account needed."""

    NAME_MAX = 24

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=NAME_MAX)
    # The name's confusable skeletons, of its lower and of its upper case (viruses/names.py):
    # each unique, so "Brave Otter", "brave otter" and a Cyrillic look-alike cannot both
    # exist, whatever the database's collation (SQLite's LOWER() only folds ASCII).
    name_key = models.CharField(max_length=4 * NAME_MAX, unique=True, editable=False)
    name_upper_key = models.CharField(max_length=4 * NAME_MAX, unique=True, editable=False)
    kills = models.PositiveIntegerField(default=0)
    # When the player reached their current kill count: ties on the board go to who got there first.
    scored_at = models.DateTimeField(null=True, blank=True)
    banned = models.BooleanField(default=False, help_text="Banned players cannot act and leave the board.")
    created_at = models.DateTimeField(auto_now_add=True)
    # The public world's board of the day (UTC): its kills on `today_on`; an older date counts none.
    today_kills = models.PositiveIntegerField(default=0)
    today_on = models.DateField(null=True, blank=True)
    # Fair play, every world (viruses/scoring.py): what an operator judges a player by.
    kills_scored = models.PositiveIntegerField(default=0, help_text="Kills that scored, in every world.")
    kills_refused_own = models.PositiveIntegerField(default=0, help_text="Kills of viruses they created.")
    kills_refused_too_fast = models.PositiveIntegerField(
        default=0, help_text="Kills faster than VIRUS_MIN_REACTION_MS after the virus appeared."
    )
    reaction_histogram = models.JSONField(default=list, blank=True, editable=False)
    reaction_median_ms = models.PositiveIntegerField(null=True, blank=True)

    # Saved alone, these change no board: no leaderboard push (signals.push_leaderboard).
    STATS_FIELDS = frozenset(
        {
            "kills_scored",
            "kills_refused_own",
            "kills_refused_too_fast",
            "reaction_histogram",
            "reaction_median_ms",
        }
    )

    class Meta:
        ordering = ["-kills", "scored_at", "id"]
        indexes = [
            models.Index(fields=["-kills", "scored_at", "id"], name="player_board"),
            models.Index(fields=["today_on", "-today_kills", "scored_at", "id"], name="player_board_today"),
        ]

    def __str__(self):
        return self.name


class Room(models.Model):
    """A world of its own, joined by a short code: viruses, seq, board and online list apart."""

    ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no look-alikes: 0/O, 1/I/L
    CODE_LENGTH = 5
    NAME_MAX = 40

    code = models.CharField(max_length=CODE_LENGTH, unique=True, editable=False)
    name = models.CharField(max_length=NAME_MAX)
    host = models.ForeignKey(Player, null=True, on_delete=models.SET_NULL, related_name="rooms_hosted")
    locked = models.BooleanField(default=False, help_text="A locked room takes no new players.")
    created_at = models.DateTimeField(auto_now_add=True)
    # The last change, join or leave: `prune_rooms` removes rooms idle for VIRUS_ROOM_IDLE_HOURS.
    last_activity = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.code} ({self.name})"

    @property
    def group(self) -> str:
        """The room's group on the channel layer (the public world's is `broadcast.GROUP`)."""
        return self.group_for(self.code)

    @staticmethod
    def group_for(code: str) -> str:
        return f"room.{code}"

    @property
    def url(self) -> str:
        return f"/r/{self.code}/"

    @classmethod
    def new_code(cls) -> str:
        return "".join(secrets.choice(cls.ALPHABET) for _ in range(cls.CODE_LENGTH))

    @classmethod
    def normal_code(cls, code: str) -> str | None:
        """`code` as stored (upper case), None if it cannot be a room's code."""
        code = code.upper() if isinstance(code, str) else ""
        if len(code) != cls.CODE_LENGTH or any(c not in cls.ALPHABET for c in code):
            return None
        return code


class Score(models.Model):
    """A player's kills in one room: each room has its own board (the public one is `Player.kills`).

    A row with no kill yet says the player has joined the room (a locked room lets them back).
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="scores")
    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="scores")
    kills = models.PositiveIntegerField(default=0)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-kills", "scored_at", "id"]
        constraints = [models.UniqueConstraint(fields=["room", "player"], name="score_room_player")]
        indexes = [models.Index(fields=["room", "-kills", "scored_at", "id"], name="score_board")]

    def __str__(self):
        return f"{self.player_id} in {self.room_id}: {self.kills}"


class Round(models.Model):
    """A timed round of a room (viruses/rounds.py): numbered from 1 per room, at most one running."""

    RUNNING, OVER = "running", "over"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=8, choices=[(RUNNING, "running"), (OVER, "over")], default=RUNNING)
    seconds = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When the server next adds a virus to the dish; whoever moves it on spawns (rounds.tick).
    next_spawn_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["room", "number"], name="round_room_number"),
            # The database, not a check-then-insert, keeps two hosts' tabs from starting two rounds.
            models.UniqueConstraint(
                fields=["room"], condition=models.Q(state="running"), name="one_running_round_per_room"
            ),
        ]

    def __str__(self):
        return f"round {self.number} of {self.room_id} ({self.state})"


class RoundScore(models.Model):
    """A player's kills in one round, and their kills that scored nothing (the fair-play rules)."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="scores")
    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="round_scores")
    kills = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-kills", "scored_at", "id"]
        constraints = [models.UniqueConstraint(fields=["round", "player"], name="round_score_player")]

    def __str__(self):
        return f"{self.player_id} in {self.round_id}: {self.kills}"
