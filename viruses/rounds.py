"""Timed rounds in a room: the host starts and stops them; the server clears and refills the
dish, credits kills to the round and ends it at `ends_at` (docs/architecture.md#rounds).

Several triggers may notice that a round is due to end: the round clock of every daphne
process with sockets in the room (`viruses/live/round_clock.py`), `spawn_virus --all-rooms`,
the host's stop and the next start. Ending is one conditional UPDATE (`... WHERE state =
'running'`): the trigger whose UPDATE changed the row pushes the "over" message, the others
change nothing and push nothing, so every round ends exactly once. The steady refill works
the same way on `next_spawn_at`: whoever moves it on adds the virus.
"""

import contextlib
import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from . import broadcast, leaderboard, messages, selectors, services
from .errors import AliveCapReached, BadRequest, NoRound, RoomNotFound, RoundRunning, VirusNotFound
from .logs import kv
from .models import Room, Round, RoundScore, Virus

SECONDS_MIN, SECONDS_MAX = 15, 600
OPENING = 8  # viruses put on the cleared dish at once
SPAWN_EVERY = timedelta(seconds=2)  # then one more this often, for the round's length
IDLE = 1.0  # seconds `tick` lets pass at most: a round started elsewhere is noticed this soon

logger = logging.getLogger(__name__)


def start(*, room: Room | None, by: "services.Actor", seconds) -> Round:
    """Start a round of `seconds` in `room` for its host `by`: the dish is cleared, then refilled.

    `NotHost` (403), `BadRequest` (400) for `seconds` outside SECONDS_MIN..SECONDS_MAX,
    `RoundRunning` (409) while one runs.
    """
    if room is None:
        raise BadRequest("rounds are played in rooms")
    services.require_host(room, by)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not SECONDS_MIN <= seconds <= SECONDS_MAX:
        raise BadRequest(f'"seconds" must be a whole number from {SECONDS_MIN} to {SECONDS_MAX}')
    end_due([room.pk])  # a round past its end that nobody has closed yet is over, not running
    now = timezone.now()
    try:
        with transaction.atomic():
            number = (Round.objects.filter(room=room).aggregate(last=Max("number"))["last"] or 0) + 1
            round_ = Round.objects.create(
                room=room,
                number=number,
                seconds=seconds,
                started_at=now,
                ends_at=now + timedelta(seconds=seconds),
                next_spawn_at=now + SPAWN_EVERY,
            )
            transaction.on_commit(partial(_announce, round_))
    except IntegrityError:  # the constraint one_running_round_per_room: another start won
        raise RoundRunning("a round is already running in this room") from None
    logger.info(kv("round.started", room=room.code, round=number, seconds=seconds))
    _refill(room)
    return round_


def stop(*, room: Room | None, by: "services.Actor") -> Round:
    """End the running round of `room` now, for its host `by`; `NoRound` (409) if none runs."""
    if room is None:
        raise BadRequest("rounds are played in rooms")
    services.require_host(room, by)
    running = selectors.running_round(room)
    if running is None or not end(running):
        raise NoRound("no round is running in this room")
    return running


def end(round_: Round) -> bool:
    """End a running round; whether this call did (then it alone pushes the "over" message)."""
    now = timezone.now()
    with transaction.atomic():
        # On PostgreSQL a concurrent UPDATE waits for this one, then finds the row "over".
        if not Round.objects.filter(pk=round_.pk, state=Round.RUNNING).update(state=Round.OVER, ended_at=now):
            return False
        round_.state, round_.ended_at = Round.OVER, now
        transaction.on_commit(partial(_announce, round_))
    late = (now - round_.ends_at).total_seconds()  # negative: stopped early
    logger.info(kv("round.over", room=round_.room.code, round=round_.number, late_s=round(late, 3)))
    return True


def end_due(rooms=None) -> int:
    """End the running rounds past `ends_at` in `rooms` (ids; None: every room); return how many it ended."""
    return sum(end(round_) for round_ in _running(rooms).filter(ends_at__lte=timezone.now()))


def tick(rooms=None) -> float:
    """End the due rounds and add the due viruses in `rooms` (ids; None: every room); return the
    seconds until something is next due (at most IDLE)."""
    wait = IDLE
    for round_ in _running(rooms):
        now = timezone.now()
        if round_.ends_at <= now:
            end(round_)
            continue
        if round_.next_spawn_at <= now:
            claimed = Round.objects.filter(
                pk=round_.pk, state=Round.RUNNING, next_spawn_at=round_.next_spawn_at
            ).update(next_spawn_at=now + SPAWN_EVERY)
            round_.next_spawn_at = now + SPAWN_EVERY  # if not claimed, near enough: re-read next tick
            if claimed:
                with contextlib.suppress(AliveCapReached, RoomNotFound):
                    services.virus_create(room=round_.room)
        due = min(round_.ends_at, round_.next_spawn_at)
        wait = min(wait, (due - timezone.now()).total_seconds())
    return max(0.05, wait)


def record_kill(*, room: Room | None, player, scored: bool) -> None:
    """Count `player`'s kill in `room` for its running round (call in the kill's transaction):
    `scored`, or refused by the fair-play rules.

    The round's row is locked until the kill commits, so an end waits for it: the final board
    read after the end holds every kill the round counted.
    """
    if room is None or player is None:
        return
    now = timezone.now()
    running = (
        Round.objects.select_for_update().filter(room=room, state=Round.RUNNING, ends_at__gt=now).first()
    )
    if running is None:
        return
    running.room = room  # for the board push (signals.py)
    score, _ = RoundScore.objects.get_or_create(round=running, player=player)
    if scored:
        score.kills, score.scored_at = score.kills + 1, now
    else:
        score.refused += 1
    score.save(update_fields=["kills", "scored_at", "refused"])


def _running(rooms):
    running = Round.objects.filter(state=Round.RUNNING).select_related("room")
    return running if rooms is None else running.filter(room_id__in=list(rooms))


def _refill(room: Room) -> None:
    """Clear the dish by the normal kill path (pages converge by seq), then put OPENING viruses on it."""
    for virus_id in Virus.objects.filter(room=room).values_list("id", flat=True):
        with contextlib.suppress(VirusNotFound):  # a player got it first
            services.virus_kill(virus_id=virus_id, room=room)
    with contextlib.suppress(AliveCapReached):
        for _ in range(OPENING):
            services.virus_create(room=room)


def _announce(round_: Round) -> None:
    """Tell the room a round started or ended, with its board (the whole of it when over: the podium
    and everyone's place); the room's board push follows (the round's, or the all-time one again).

    Runs on commit, so it never raises: pages that miss it get the round in their next snapshot.
    """
    size = settings.VIRUS_ROOM_MAX_PLAYERS if round_.state == Round.OVER else selectors.BOARD_SIZE
    try:
        board = selectors.round_board(round_, size)
    except DatabaseError as exc:
        logger.error(kv("round.announce_failed", room=round_.room.code, round=round_.number, error=exc))
        return
    event = messages.round_event(
        round=messages.round_json(round_), board=board, now=timezone.now().isoformat()
    )
    broadcast.push(event, round_.room.group)
    leaderboard.changed(round_.room)
