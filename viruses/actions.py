"""A player's actions, create, kill and rename (in a world: `room` None is the public one), and
room creation, as the HTTP API and the WebSocket both take them.

One place decides what a player may do: the rate limit (ratelimit.py, the same buckets
whichever way the action came), then the service, which decides the alive cap and kill
races. Refusals are `errors.GameError`s carrying their HTTP status; the caller answers
them in its own protocol. `create`, `kill` and `rename` are for views (Django runs them in
a thread); `acreate`, `akill` and `arename` are the same for consumers: the token is taken on
the event loop (its own Redis client), then the service runs on the database thread
(`database_sync_to_async`), so one player's Redis round trip never holds up the other
sockets' database work.
"""

import uuid

from channels.db import database_sync_to_async

from viruses.guards import ratelimit

from . import errors, rounds, selectors, services
from .errors import RateLimited
from .models import Room, Round, Virus


def take_token(bucket: str, address: str, player: str | None = None) -> None:
    """Take one token from the client's `bucket`; raise `RateLimited` when it is empty."""
    wait = ratelimit.retry_after(bucket, address, player)
    if wait is not None:
        raise RateLimited(bucket, wait)


async def atake_token(bucket: str, address: str, player: str | None = None) -> None:
    wait = await ratelimit.aretry_after(bucket, address, player)
    if wait is not None:
        raise RateLimited(bucket, wait)


def create(*, address: str, by: services.Actor = None, room: Room | None = None) -> Virus:
    """Create one virus for player `by`; `RateLimited` (429), `AliveCapReached` (409) or
    `PlayerBanned` (403) refuse it."""
    take_token("action", address, who(by))
    return services.virus_create(by=by, room=room)


def kill(
    *, virus_id: uuid.UUID | str, address: str, by: services.Actor = None, room: Room | None = None
) -> None:
    """Kill one virus and credit player `by`; `VirusNotFound` (404) or `RateLimited` (429) refuse it.

    A malformed id is not found, and costs no token: nothing was tried.
    """
    virus_id = parse_id(virus_id)
    take_token("action", address, who(by))
    services.virus_kill(virus_id=virus_id, by=by, room=room)


async def acreate(*, address: str, by: services.Actor = None, room: Room | None = None) -> Virus:
    """`create` for consumers."""
    await atake_token("action", address, who(by))
    return await database_sync_to_async(services.virus_create)(by=by, room=room)


async def akill(
    *, virus_id: uuid.UUID | str, address: str, by: services.Actor = None, room: Room | None = None
) -> None:
    """`kill` for consumers."""
    virus_id = parse_id(virus_id)
    await atake_token("action", address, who(by))
    await database_sync_to_async(services.virus_kill)(virus_id=virus_id, by=by, room=room)


def play_round(*, room: Room, by: services.Actor, address: str, seconds=None, stop: bool = False) -> Round:
    """Start a round of `seconds` in `room` (or `stop` the running one) for its host `by`: the
    rules of `rounds.start` and `rounds.stop`, and `RateLimited` (429), since each clears a dish."""
    take_token("action", address, who(by))
    return _play_round(room, by, seconds, stop)


async def aplay_round(
    *, room: Room | None, by: services.Actor, address: str, seconds=None, stop: bool = False
) -> Round:
    """`play_round` for consumers."""
    await atake_token("action", address, who(by))
    return await database_sync_to_async(_play_round)(room, by, seconds, stop)


def _play_round(room, by, seconds, stop: bool) -> Round:
    return rounds.stop(room=room, by=by) if stop else rounds.start(room=room, by=by, seconds=seconds)


def create_room(*, host, name, address: str) -> Room:
    """Create a room hosted by player `host`; `RateLimited` (429) per player and per address,
    `BadName` (400) refuse it."""
    take_token("room", address, str(host))
    take_token("room_address", address)
    return services.room_create(host=host, name=name)


def rename(*, player, name, address: str) -> dict:
    """Rename a player; return them as they see themself. `BadName` (400), `NameTaken` (409)
    or `RateLimited` (429) refuse it and change nothing."""
    take_token("rename", address, str(player))
    return _rename(player, name)


async def arename(*, player: str | None, name, address: str) -> dict:
    """`rename` for consumers; a socket opened without the player cookie has nobody to rename."""
    if player is None:
        raise errors.BadRequest("no player: this socket was opened without the player cookie")
    await atake_token("rename", address, str(player))
    return await database_sync_to_async(_rename)(player, name)


def _rename(player: str, name) -> dict:
    services.player_rename(player=player, name=name)
    return selectors.me(player)


def who(by: services.Actor) -> str | None:
    """Whose bucket an action takes from: the player's (wherever they connect from), else the address's."""
    if by is None:
        return None
    return str(getattr(by, "pk", by))


def parse_id(virus_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(virus_id))
    except ValueError:
        raise errors.VirusNotFound("no such virus") from None
