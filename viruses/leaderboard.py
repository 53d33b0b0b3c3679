"""The live leaderboard push: coalesced for the whole deployment, built once for everyone.

Every committed change of a player (a kill credited, a rename, a ban) calls `changed()` on
commit. The first such call claims the next push (a Redis key every server shares, or a flag
in this process without Redis) and schedules it DELAY later; calls while it is claimed do
nothing, since that push reads the database after their commit. The push gives up its
claim before reading, so a change committed after the read claims the following one: the
last board pushed is always the board as it stands, and pushes are at most one per DELAY
however fast people click. A board equal to the last one pushed is not pushed again (a
change that claimed a push may already be on the board the previous push read).
"""

import logging
import threading

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from . import broadcast, messages, selectors
from .logs import kv
from .shared import redis_client, store_url

DELAY = 0.5  # seconds between two board pushes, at least
CLAIM_EXPIRY_MS = 10_000  # a claim of a server that died before pushing lapses after this
LAST_EXPIRY_S = 3600  # the last board pushed, kept to skip pushing the same board twice

logger = logging.getLogger(__name__)
_local_claim = threading.Lock()
_due_here = threading.Event()  # this process holds the claim: its push is due within DELAY
_last_local: str | None = None


def changed() -> None:
    """Make sure a board push follows within DELAY (call on commit of a player change)."""
    if _due_here.is_set():  # that push reads after this commit: no need to ask Redis
        return
    if _claim():
        _due_here.set()
        timer = threading.Timer(DELAY, push_now)
        timer.daemon = True
        timer.start()


def push_now() -> bool:
    """Release the claim, read the board and push it to every client; never raises."""
    _due_here.clear()
    _release()
    try:
        board = selectors.leaderboard()
    except DatabaseError as exc:  # clients still get the board in their next snapshot
        logger.error(kv("leaderboard.error", error=f"{type(exc).__name__}: {exc}"))
        return False
    finally:
        connection.close()  # this thread's own connection; the timer thread ends here
    event = messages.leaderboard_event(board)
    if _same_as_last(event["text"]):
        return False
    broadcast.push(event)
    return True


def _key() -> str:
    return f"{settings.REDIS_PREFIX}:leaderboard:due"


def _claim() -> bool:
    if url := store_url():
        try:
            return bool(redis_client(url).set(_key(), "1", nx=True, px=CLAIM_EXPIRY_MS))
        except redis.RedisError as exc:  # coalesce within this process only, meanwhile
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
    return _local_claim.acquire(blocking=False)


def _same_as_last(text: str) -> bool:
    """Record `text` as the last board pushed; whether it was already."""
    global _last_local
    if url := store_url():
        try:
            last = redis_client(url).set(f"{_key()}:last", text, get=True, ex=LAST_EXPIRY_S)
            return last is not None and last.decode() == text
        except redis.RedisError as exc:  # push it: a repeated board is harmless, a lost one is not
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
            return False
    last, _last_local = _last_local, text
    return last == text


def _release() -> None:
    if url := store_url():
        try:
            redis_client(url).delete(_key())
        except redis.RedisError as exc:
            logger.warning(kv("leaderboard.claim_unavailable", error=type(exc).__name__))
    if _local_claim.locked():
        _local_claim.release()
