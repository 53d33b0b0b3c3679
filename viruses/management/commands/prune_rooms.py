from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from viruses.services import rooms_prune


class Command(BaseCommand):
    help = (
        "Remove the rooms with no socket online and no change for VIRUS_ROOM_IDLE_HOURS, with their "
        "viruses and scores (their codes then answer 404). Cron-friendly: run it every hour."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--idle-hours", type=int, default=None, help="override VIRUS_ROOM_IDLE_HOURS (at least 1)"
        )

    def handle(self, *args, idle_hours: int | None, **options):
        hours = settings.VIRUS_ROOM_IDLE_HOURS if idle_hours is None else idle_hours
        if hours < 1:
            raise CommandError("--idle-hours must be at least 1")
        try:
            codes = rooms_prune(idle_hours=hours)
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable: {exc}") from exc
        self.stdout.write(f"Removed {len(codes)} idle room(s)" + (f": {' '.join(codes)}" if codes else ""))
