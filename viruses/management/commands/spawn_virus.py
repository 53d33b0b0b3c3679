import random
import time

from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from viruses import errors, rounds, selectors, services


class Command(BaseCommand):
    help = (
        "Spawn viruses, for cron. With no options: one virus now. --spread S spreads the "
        "--count creations over S seconds, one at a random moment of each equal slice; "
        "--every S repeats forever. --room CODE spawns in that room; --all-rooms in the public room "
        "and every room with someone online, each on its own random schedule, and keeps the rooms' "
        "rounds on time (their end and refill) meanwhile."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=1, help="viruses per round (default 1)")
        parser.add_argument(
            "--spread",
            type=float,
            default=0,
            help="spread the round's creations over this many seconds, one at a random moment of each "
            "equal slice",
        )
        parser.add_argument(
            "--every", type=float, default=0, help="repeat a round every this many seconds, forever"
        )
        parser.add_argument(
            "--once-per",
            type=int,
            default=0,
            metavar="SECONDS",
            help="with the same crontab on several nodes: only the first node to start in each "
            "window of this many seconds spawns (a lock in the shared cache)",
        )
        worlds = parser.add_mutually_exclusive_group()
        worlds.add_argument("--room", metavar="CODE", help="spawn in this room instead of the public one")
        worlds.add_argument(
            "--all-rooms",
            action="store_true",
            help="spawn in the public room and in every room with someone online (each its --count)",
        )

    def handle(self, *args, count, spread, every, once_per, room, all_rooms, **options):
        if count < 1:
            raise CommandError("--count must be at least 1")
        if spread < 0 or every < 0:
            raise CommandError("--spread and --every cannot be negative")
        if every and spread > every:
            raise CommandError("--spread cannot be longer than --every")
        self.verbosity = options["verbosity"]
        self.room_code, self.all_rooms = room, all_rooms
        try:
            self.loop(count, spread, every, once_per)
        except KeyboardInterrupt:
            self.stdout.write("Spawner stopped.")

    def loop(self, count: int, spread: float, every: float, once_per: int) -> None:
        while True:
            started = time.monotonic()
            try:
                self.run_round(count, spread, once_per)
            except CommandError as exc:
                if not every:
                    raise
                # A loop outlives outages: say so and try again next round.
                self.stderr.write(f"Round skipped: {exc}")
            if not every:
                return
            self.pause(every - (time.monotonic() - started))

    def run_round(self, count: int, spread: float, once_per: int) -> None:
        if not self.take_turn(once_per):
            return
        try:
            self.spawn_round(count, spread)
        except DatabaseError as exc:
            raise CommandError(f"database unavailable: {exc}") from exc

    def pause(self, seconds: float) -> None:
        """Sleep `seconds`; with --all-rooms, keep the rooms' rounds on time meanwhile (`rounds.tick`)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self.all_rooms:
                try:
                    left = min(left, rounds.tick())
                except DatabaseError as exc:  # the servers' round clocks keep them on time meanwhile
                    self.stderr.write(f"Rounds not ticked: {exc}")
                    left = min(left, rounds.IDLE)
            time.sleep(left)

    def take_turn(self, once_per: int) -> bool:
        if not once_per:
            return True
        window = int(time.time() // once_per)
        try:
            taken = cache.add(f"spawn-virus:{once_per}:{window}", 1, timeout=once_per * 2)
        except Exception as exc:
            # Without the shared lock every node would spawn: skip this round instead.
            raise CommandError(f"cannot take the spawn lock, cache (Redis) unavailable: {exc}") from exc
        if taken:
            if self.verbosity >= 2:  # which window each spawn belongs to (tests, operators)
                self.stdout.write(f"Spawn turn: window {window} of {once_per} s.")
            return True
        self.stdout.write("Another node spawns in this window; skipping.")
        return False

    def worlds(self) -> list:
        """This round's worlds: the public one (None), one room, or the public one and every room in use."""
        if self.room_code is not None:
            try:
                return [selectors.room(self.room_code)]
            except errors.RoomNotFound as exc:
                raise CommandError(f"{exc}: {self.room_code[:16]!r}") from None
        return [None, *selectors.rooms_online()] if self.all_rooms else [None]

    def spawn_round(self, count: int, spread: float) -> None:
        started = time.monotonic()
        schedule = sorted(
            (
                (moment, index, world)
                for index, world in enumerate(self.worlds())
                for moment in moments(count, spread)
            ),
            key=lambda entry: entry[:2],
        )
        full = set()
        for moment, index, world in schedule:
            if index in full:
                continue
            self.pause(moment - (time.monotonic() - started))
            where = "" if world is None else f" in room {world.code}"
            try:
                virus = services.virus_create(room=world)
            except (errors.AliveCapReached, errors.RoomNotFound) as exc:
                self.stdout.write(f"Not spawned{where}: {exc}.")
                full.add(index)
                continue
            self.stdout.write(f"Spawned {virus.id} (kind {virus.kind}) at ({virus.x}, {virus.y}){where}.")


def moments(count: int, spread: float) -> list[float]:
    """When to spawn, in seconds from the start: one random moment in each of `count` equal slices.

    Purely random moments bunch up ("three a minute" came as three within 8 s, then a 55 s
    lull); one per slice keeps the pace even and still unpredictable.
    """
    slice_ = spread / count
    return [(i + random.random()) * slice_ for i in range(count)]
