"""The only writers: viruses (pushing is not their job: the signals do it on commit) and
the `Connection` rows that say who is online."""

import random
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import ChangeCounter, Connection, Virus
from .selectors import stale_before

MARGIN = 6  # percent kept free at the playground's edges, so no virus is cut off


class GameError(Exception):
    """A request the game refuses; `status` is the HTTP answer."""

    status = 400


class AliveCapReached(GameError):
    status = 409


class VirusNotFound(GameError):
    status = 404


def virus_create(*, kind: int | None = None, x: float | None = None, y: float | None = None) -> Virus:
    """Create one virus, placed and drawn by the server unless told otherwise."""
    with transaction.atomic():
        # Holding the counter lock makes count-then-insert atomic across processes.
        ChangeCounter.lock()
        if Virus.objects.count() >= settings.VIRUS_MAX_ALIVE:
            raise AliveCapReached(f"the playground is full ({settings.VIRUS_MAX_ALIVE} viruses)")
        virus = Virus(
            kind=random.randrange(Virus.KINDS) if kind is None else kind,
            x=round(random.uniform(MARGIN, 100 - MARGIN), 2) if x is None else x,
            y=round(random.uniform(MARGIN, 100 - MARGIN), 2) if y is None else y,
        )
        virus.full_clean()
        virus.save()
    return virus


def virus_kill(*, virus_id: uuid.UUID | str) -> None:
    """Kill one virus; a second kill of the same virus raises `VirusNotFound`."""
    with transaction.atomic():
        # Under the counter lock a racing kill waits, then finds nothing: exactly one
        # post_delete, so exactly one `virus.killed` push.
        ChangeCounter.lock()
        virus = Virus.objects.filter(pk=virus_id).first()
        if virus is None:
            raise VirusNotFound("no such virus (already killed?)")
        virus.delete()


def connections_open(*, server: str, sockets: list[dict]) -> None:
    """Record open WebSockets of `server` (admin: who is online, on which server), in one INSERT.

    `sockets`: dicts of `channel_name`, `client_address`, `user_agent`.
    """
    now = timezone.now()
    Connection.objects.bulk_create(
        Connection(
            channel_name=socket["channel_name"],
            server=server,
            client_address=socket["client_address"][:64],
            user_agent=socket["user_agent"][:255],
            last_seen=now,
        )
        for socket in sockets
    )


def connections_close(*, channel_names: list[str]) -> None:
    Connection.objects.filter(channel_name__in=channel_names).delete()


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
