"""The live leaderboard push: coalesced for the whole deployment, built once for everyone, per world.

Every committed change of a player (a kill credited, a rename, a ban) calls `changed()` on
commit. The first such call claims the next push (a Redis key every server shares, or a flag
in this process without Redis) and schedules it DELAY later; calls while it is claimed do
nothing, since that push reads the database after their commit. The push gives up its
claim before reading, so a change committed after the read claims the following one: the
last board pushed is always the board as it stands, and pushes are at most one per DELAY
however fast people click. A board equal to the last one pushed is not pushed again (a
change that claimed a push may already be on the board the previous push read). Each world
(the public one, every room) has its own board, claim and last board pushed.
"""

import logging
import threading

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from . import broadcast, messages, selectors
from .logs import kv
from .models import Room
from .shared import redis_client, store_url

DELAY = 0.5  # seconds between two board pushes, at least
CLAIM_EXPIRY_MS = 10_000  # a claim of a server that died before pushing lapses after this
LAST_EXPIRY_S = 3600  # the last board pushed, kept to skip pushing the same board twice

logger = logging.getLogger(__name__)
_guard = threading.Lock()
_local_claims: dict[str, threading.Lock] = {}  # by world's group
_due_here: dict[
    str, threading.Event
] = {}  # this process holds the world's claim: its push is due within DELAY
_last_local: dict[str, str] = {}


def changed(room=None) -> None:
    """Make sure a board push of `room` (None: the public world) follows within DELAY (call on
    commit of a player or score change)."""
    group = broadcast.group_of(room)
    due = _state(_due_here, group, threading.Event)
    if due.is_set():  # that push reads after this commit: no need to ask Redis
        return
    if _claim(group):
        due.set()
        if room is not None:  # who it is, as of now: a room removed meanwhile loses its pk
            room = Room(pk=room.pk, code=room.code)
        timer = threading.Timer(DELAY, push_now, args=(room,))
        timer.daemon = True
        timer.start()


def push_now(room=None) -> bool:
    """Release the world's claim, read its board and push it to its clients; never raises."""
    group = broadcast.group_of(room)
    _state(_due_here, group, threading.Event).clear()
    _release(group)
    try:
        board = selectors.live_board(room)
    except DatabaseError as exc:  # clients still get the board in their next snapshot
        logger.error(kv("leaderboard.error", error=f"{type(exc).__name__}: {exc}"))
        return False
    finally:
        connection.close()  # this thread's own connection; the timer thread ends here
    event = messages.leaderboard_event(board)
    if _same_as_last(group, event["text"]):
        return False
    broadcast.push(event, group)
    return True


def _state(states: dict, group: str, make):
    with _guard:
        if group not in states:
            states[group] = make()
        return states[group]


def _key(group: str) -> str:
    world = "" if group == broadcast.GROUP else f"{group}:"  # the public world's key as it always was
    return f"{settings.REDIS_PREFIX}:leaderboard:{world}due"


def _claim(group: str) -> bool:
    if url := store_url():
        try:
            return bool(redis_client(url).set(_key(group), "1", nx=True, px=CLAIM_EXPIRY_MS))
        except redis.RedisError as exc:  # coalesce within this process only, meanwhile
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
    return _state(_local_claims, group, threading.Lock).acquire(blocking=False)


def _same_as_last(group: str, text: str) -> bool:
    """Record `text` as the world's last board pushed; whether it was already."""
    if url := store_url():
        try:
            last = redis_client(url).set(f"{_key(group)}:last", text, get=True, ex=LAST_EXPIRY_S)
            return last is not None and last.decode() == text
        except redis.RedisError as exc:  # push it: a repeated board is harmless, a lost one is not
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
            return False
    with _guard:
        last, _last_local[group] = _last_local.get(group), text
    return last == text


def _release(group: str) -> None:
    if url := store_url():
        try:
            redis_client(url).delete(_key(group))
        except redis.RedisError as exc:
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
    claim = _state(_local_claims, group, threading.Lock)
    if claim.locked():
        claim.release()
