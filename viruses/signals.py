"""Signal receivers: the only code that turns a committed virus change into a push.

Each receiver numbers the change and builds its message while the row (or, for deletes,
the instance) is still at hand, then hands it to `on_commit`: a rolled-back change is
never pushed, and its seq number is rolled back with it.
"""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import broadcast, messages
from .models import ChangeCounter, Virus


@receiver(post_save, sender=Virus, dispatch_uid="push_virus_created")
def push_virus_created(sender, instance, created, raw=False, using=None, **kwargs):
    # Viruses never move or change kind once created; only creation is news.
    if raw or not created:
        return
    seq = ChangeCounter.advance()
    event = messages.created_event(seq=seq, virus=messages.virus_json(instance))
    transaction.on_commit(partial(broadcast.push, event), using=using)


@receiver(post_delete, sender=Virus, dispatch_uid="push_virus_killed")
def push_virus_killed(sender, instance, using=None, **kwargs):
    seq = ChangeCounter.advance()
    event = messages.killed_event(seq=seq, virus_id=str(instance.id))
    transaction.on_commit(partial(broadcast.push, event), using=using)
