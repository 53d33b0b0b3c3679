"""Signal receivers: the only code that turns a committed change into a push.

Each virus receiver numbers the change and builds its message while the row (or, for
deletes, the instance) is still at hand, then hands it to `on_commit`: a rolled-back change
is never pushed, and its seq number is rolled back with it. Player changes carry no seq:
they ask for a coalesced leaderboard push on commit, and a saved room pushes its new
state (`room`) to its own group. Each change counts and is pushed in its
own world: the public one (room None) or its room, on that room's counter and group.
"""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import broadcast, leaderboard, messages, selectors
from .models import ChangeCounter, Player, Room, RoundScore, Score, Virus


@receiver(post_save, sender=Virus, dispatch_uid="push_virus_created")
def push_virus_created(sender, instance, created, raw=False, using=None, **kwargs):
    # Viruses never move or change kind once created; only creation is news.
    if raw or not created:
        return
    seq = ChangeCounter.advance(instance.room_id)
    if seq is None:  # a room removed meanwhile: its viruses go with it
        return
    by = messages.player_json(instance.by)
    event = messages.created_event(seq=seq, virus=messages.virus_json(instance), by=by)
    _push_on_commit(instance, event, using)


@receiver(post_delete, sender=Virus, dispatch_uid="push_virus_killed")
def push_virus_killed(sender, instance, using=None, **kwargs):
    seq = ChangeCounter.advance(instance.room_id)
    if seq is None:  # the room is being removed with its counter: nobody is left to tell
        return
    by, scored = messages.player_json(instance.by), instance.verdict is not None and instance.verdict.scored
    event = messages.killed_event(seq=seq, virus_id=str(instance.id), by=by, scored=scored)
    _push_on_commit(instance, event, using)


def _push_on_commit(virus: Virus, event: dict, using) -> None:
    if virus.room_id is None:
        transaction.on_commit(partial(broadcast.push, event), using=using)
    else:
        transaction.on_commit(partial(broadcast.push, event, virus.room.group), using=using)


@receiver(post_save, sender=Player, dispatch_uid="push_leaderboard_on_save")
@receiver(post_delete, sender=Player, dispatch_uid="push_leaderboard_on_delete")
def push_leaderboard(sender, instance, created=False, raw=False, using=None, **kwargs):
    # A score, a name or a ban changed, or a player left; a new player (no kill yet) is not
    # on the board. The board is read from the database and pushed coalesced (leaderboard.py).
    update_fields = kwargs.get("update_fields")
    if raw or created or (update_fields is not None and update_fields <= Player.STATS_FIELDS):
        return  # new, or only fair-play stats: on no board
    transaction.on_commit(leaderboard.changed, using=using)
    if update_fields is None or {"name", "banned"} & set(update_fields):
        # Shown on the boards of the rooms they played in too (a public kill is not).
        for room in Score.objects.filter(player=instance).select_related("room"):
            transaction.on_commit(partial(leaderboard.changed, room.room), using=using)


@receiver(post_save, sender=Score, dispatch_uid="push_room_leaderboard")
def push_room_leaderboard(sender, instance, created=False, raw=False, using=None, **kwargs):
    # A kill credited in a room; a new row is a player joining, not yet on the board.
    if raw or created:
        return
    transaction.on_commit(partial(leaderboard.changed, instance.room), using=using)


@receiver(post_save, sender=Room, dispatch_uid="push_room_changed")
def push_room_changed(sender, instance, created=False, raw=False, using=None, **kwargs):
    # Locked or unlocked by its host: the pages in it show it at once. (Its last activity is
    # kept with `update()`, which sends no signal: joins and changes are not news here.)
    if raw or created:
        return
    event = messages.room_event(selectors.room_json(instance))
    transaction.on_commit(partial(broadcast.push, event, instance.group), using=using)


@receiver(post_save, sender=RoundScore, dispatch_uid="push_round_leaderboard")
def push_round_leaderboard(sender, instance, raw=False, using=None, **kwargs):
    # A kill counted in a round: a refused one too (past the limit, its player leaves the board).
    if not raw:
        transaction.on_commit(partial(leaderboard.changed, instance.round.room), using=using)
