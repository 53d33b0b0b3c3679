"""The refusals the game answers with: each carries its HTTP status.

Views answer them as JSON (`http.json_errors`), the socket as `{"type": "error", "status"}`.
"""

import math


class GameError(Exception):
    """A request the game refuses; `status` is the HTTP answer."""

    status = 400


class BadRequest(GameError):
    status = 400


class BadName(BadRequest):
    pass


class PlayerBanned(GameError):
    status = 403


class NoPlayer(GameError):
    """A request that needs the player cookie came without one."""

    status = 403


class NotHost(GameError):
    """Only a room's host may do that."""

    status = 403


class VirusNotFound(GameError):
    status = 404


class RoomNotFound(GameError):
    """An unknown or expired room code."""

    status = 404


class RoomFull(GameError):
    status = 409


class AliveCapReached(GameError):
    status = 409


class NameTaken(GameError):
    status = 409


class RoundRunning(GameError):
    """A round is already running in the room."""

    status = 409


class NoRound(GameError):
    """No round is running in the room to stop."""

    status = 409


class InProgress(GameError):
    """The same idempotency key's first action has not finished yet."""

    status = 409


class KeyReused(GameError):
    """An idempotency key sent again with another action or target: done once means that one."""

    status = 422


class RateLimited(GameError):
    status = 429

    def __init__(self, bucket: str, wait: float):
        self.bucket = bucket
        self.retry_after = math.ceil(wait)  # whole seconds, as the Retry-After header says
        super().__init__(f"too many requests, wait {self.retry_after} s")


class TooManyPlayers(GameError):
    status = 429
