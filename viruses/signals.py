"""Signal receivers: the only code that turns a committed change into a push.

Each virus receiver numbers the change and builds its message while the row (or, for
deletes, the instance) is still at hand, then hands it to `on_commit`: a rolled-back change
is never pushed, and its seq number is rolled back with it. Player changes carry no seq:
they ask for a coalesced leaderboard push on commit.
"""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import broadcast, leaderboard, messages
from .models import ChangeCounter, Player, Virus


@receiver(post_save, sender=Virus, dispatch_uid="push_virus_created")
def push_virus_created(sender, instance, created, raw=False, using=None, **kwargs):
    # Viruses never move or change kind once created; only creation is news.
    if raw or not created:
        return
    seq = ChangeCounter.advance()
    by = messages.player_json(instance.by)
    event = messages.created_event(seq=seq, virus=messages.virus_json(instance), by=by)
    transaction.on_commit(partial(broadcast.push, event), using=using)


@receiver(post_delete, sender=Virus, dispatch_uid="push_virus_killed")
def push_virus_killed(sender, instance, using=None, **kwargs):
    seq = ChangeCounter.advance()
    event = messages.killed_event(seq=seq, virus_id=str(instance.id), by=messages.player_json(instance.by))
    transaction.on_commit(partial(broadcast.push, event), using=using)


@receiver(post_save, sender=Player, dispatch_uid="push_leaderboard_on_save")
@receiver(post_delete, sender=Player, dispatch_uid="push_leaderboard_on_delete")
def push_leaderboard(sender, instance, created=False, raw=False, using=None, **kwargs):
    # A score, a name or a ban changed, or a player left; a new player (no kill yet) is not
    # on the board. The board is read from the database and pushed coalesced (leaderboard.py).
    if raw or created:
        return
    transaction.on_commit(leaderboard.changed, using=using)
