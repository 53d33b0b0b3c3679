"""An action retried with the same idempotency key is done once (the page's retries across a server restart).

A client that lost an answer (its server restarted, the network dropped) cannot tell
whether the action happened, so it sends it again with the same key: the socket's
`"idempotency_key"` field or HTTP's `Idempotency-Key` header, a string of at most 64
characters, unique per player. The first attempt claims the key (SET NX) before it acts;
a success is remembered for TTL seconds and every repeat gets that same answer, wherever
it arrives. A repeat that finds the first attempt still running waits for it (up to WAIT
seconds); a refusal (4xx, 503) is forgotten, since nothing changed and trying again is
safe. A key is bound to its action and target ("create", or "kill" and the virus id): the
same key sent with another answers 422 and does nothing, never the first one's answer.
Keys belong to the player; a socket without one has its own keys; an HTTP client without
a player cookie shares its address's keys (nothing else tells two such clients apart), so
it must pick unique keys (a UUID), and the binding keeps a clash from passing as a success.
Without Redis the keys live in this process. Actions without a key are unchanged.
"""

import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from viruses import errors
from viruses.errors import InProgress, KeyReused
from viruses.logs import kv
from viruses.messages import REF_CHARS
from viruses.shared import aredis_client, redis_client, store_url

from .ratelimit import client_key

logger = logging.getLogger(__name__)

KEY_CHARS = REF_CHARS  # the socket's `idempotency_key` is checked against the same limit
TTL = 300  # s an answer is remembered: longer than any client keeps retrying
WAIT = 10.0  # s a repeat waits for the first attempt (a draining server finishes it: drain.py)
PENDING = "pending"
clock = time.monotonic  # the in-process keys' time; replaced by tests

Answer = tuple[int, dict | None]  # the status, and the virus created (None for a kill)


def valid_key(key) -> str | None:
    """The key if it is one (None: no key); `BadRequest` when malformed."""
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) > KEY_CHARS:
        raise errors.BadRequest(f"an idempotency key is a string of at most {KEY_CHARS} characters")
    return key


class RedisKeys:
    """The keys in Redis; with an asyncio client `claim`, `keep` and `forget` return awaitables."""

    def __init__(self, client):
        self.client = client

    def claim(self, name: str, value: str):
        return self.client.set(name, value, nx=True, ex=TTL)

    def get(self, name: str) -> str | None:
        value = self.client.get(name)
        return None if value is None else value.decode()

    def keep(self, name: str, value: str):
        return self.client.set(name, value, ex=TTL)

    def forget(self, name: str):
        return self.client.delete(name)


class MemoryKeys:
    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[str, tuple[str, float]] = {}

    def claim(self, name: str, value: str) -> bool:
        with self.lock:
            now = clock()
            if len(self.values) > 100_000:
                self.values = {k: v for k, v in self.values.items() if v[1] > now}
            if name in self.values and self.values[name][1] > now:
                return False
            self.values[name] = (value, now + TTL)
            return True

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value[0] if value and value[1] > clock() else None

    def keep(self, name: str, value: str) -> None:
        with self.lock:
            self.values[name] = (value, clock() + TTL)

    def forget(self, name: str) -> None:
        with self.lock:
            self.values.pop(name, None)


_memory = MemoryKeys()


def _keys(*, on_loop: bool = False):
    """Where the keys live; `on_loop`: through this event loop's asyncio client (no thread)."""
    url = store_url()
    if url is None:
        return _memory
    return RedisKeys(aredis_client(url) if on_loop else redis_client(url))


def _name(key: str, address: str, player, socket: str | None = None) -> str:
    owner = (
        f"socket:{socket}" if socket and not player else client_key(address, str(player) if player else None)
    )
    return f"{settings.REDIS_PREFIX}:idem:{owner}:{key}"


def _pending(action: str) -> str:
    return f"{PENDING} {action}"


def _claim(name: str, action: str) -> Answer | None:
    """Claim the key for `action` (None: act now), else the first attempt's answer once it has
    one; `KeyReused` when the key was claimed for another action."""
    keys = _keys()
    deadline = time.monotonic() + WAIT
    while True:
        if keys.claim(name, _pending(action)):
            return None
        value = keys.get(name)
        if value is None:
            continue  # forgotten meanwhile (the first attempt was refused): claim it again
        # Values kept before keys were bound carry no action: taken as this one's.
        if value.startswith(PENDING):
            _same_action(value.removeprefix(PENDING).strip() or action, action)
        else:
            *first, status, body = json.loads(value)
            _same_action(first[0] if first else action, action)
            return status, body
        if time.monotonic() > deadline:
            raise InProgress("the same action is still in progress, try again")
        time.sleep(0.05)


def _same_action(first: str, action: str) -> None:
    if first != action:
        raise KeyReused(f"this idempotency key was used for another action ({first}); use a new key")


def _settle(keys, name: str, action: str, answer: Answer | None):
    """Keep a success for its repeats; forget a refusal, so that a retry may act."""
    return keys.forget(name) if answer is None else keys.keep(name, json.dumps([action, *answer]))


def once(key: str | None, *, action: str, address: str, player, act: Callable[[], Answer]) -> Answer:
    """Run `act` once per key; a repeat of `action` ("create", "kill <id>") returns the first
    success, another action with the key raises `KeyReused`. Fails open without Redis."""
    if key is None:
        return act()
    name = _name(key, address, player)
    try:
        remembered = _claim(name, action)
    except redis.RedisError as exc:
        _unavailable(exc)
        return act()
    if remembered is not None:
        return remembered
    try:
        answer = act()
    except Exception:
        _settle_quietly(name, action, None)  # refused or failed: nothing changed, a retry may act
        raise
    _settle_quietly(name, action, answer)
    return answer


async def aonce(
    key: str | None, *, action: str, address: str, player, socket: str, act: Callable[[], Awaitable[Answer]]
) -> Answer:
    """`once` for consumers, `act` awaited; a socket without a player keys by `socket`. A first
    attempt (every page action carries a key) claims and settles through the loop's own Redis
    client, no thread; a repeat waits for the first attempt's answer in a thread, as `once` does."""
    if key is None:
        return await act()
    name = _name(key, address, player, socket)
    try:
        claimed = await _done(_keys(on_loop=True).claim(name, _pending(action)))
        remembered = None if claimed else await sync_to_async(_claim, thread_sensitive=False)(name, action)
    except redis.RedisError as exc:
        _unavailable(exc)
        return await act()
    if remembered is not None:
        return remembered
    # Cancelled (the server stopped mid-action), the key stays claimed: the action may have
    # committed, so a retry waits and is told to try again rather than risk doing it twice.
    try:
        answer = await act()
    except Exception:
        await _asettle_quietly(name, action, None)
        raise
    await _asettle_quietly(name, action, answer)
    return answer


async def _asettle_quietly(name: str, action: str, answer: Answer | None) -> None:
    try:
        await _done(_settle(_keys(on_loop=True), name, action, answer))
    except redis.RedisError as exc:
        _unavailable(exc)


async def _done(result):
    """The result of a key operation: awaited from Redis, or at hand from the in-process keys."""
    return await result if inspect.isawaitable(result) else result


def _settle_quietly(name: str, action: str, answer: Answer | None) -> None:
    try:
        _settle(_keys(), name, action, answer)
    except redis.RedisError as exc:
        _unavailable(exc)


def _unavailable(exc: Exception) -> None:
    logger.warning(kv("idempotency.unavailable", error=type(exc).__name__))
