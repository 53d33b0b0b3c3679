"""The WebSocket message schema (docs/architecture.md#contract): pure, no I/O.

Server messages are built and encoded here and nowhere else, and client messages decoded.
A group event carries its message already encoded (`text`), so a consumer relays it to each
client as it is.
"""

import json

ECHO_CHARS = 64  # at most this much of what a client sent comes back in an error


class BadMessage(ValueError):
    """A client message answered with `{"type": "error"}`; the socket stays open."""


def decode(data: str | bytes) -> dict:
    """Return a client message: a JSON object with a "type"; raise `BadMessage` otherwise."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise BadMessage("message is not valid JSON") from None
    if not isinstance(message, dict) or "type" not in message:
        raise BadMessage('message must be a JSON object with a "type"')
    return message


def unknown_type(message: dict) -> BadMessage:
    return BadMessage(f"unknown message type {clip(message['type'])}")


def clip(value) -> str:
    """`repr(value)`, cut to ECHO_CHARS: what a client sent never comes back unbounded."""
    text = repr(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def virus_json(virus) -> dict:
    """Return the contract's JSON form of a virus."""
    return {
        "id": str(virus.id),
        "kind": virus.kind,
        "x": virus.x,
        "y": virus.y,
        "created_at": virus.created_at.isoformat(),
    }


def player_json(player) -> dict | None:
    """Who did something, as `"by"` shows it: `{"id", "name"}`, or None for the game itself."""
    return None if player is None else {"id": str(player.pk), "name": player.name}


# --- to one client ----------------------------------------------------------------------


def snapshot(*, seq: int, viruses: list[dict], online: int, **extra) -> str:
    """The snapshot; `extra`: the fields added since the first contract (`selectors.snapshot`)."""
    return encode({"type": "snapshot", "seq": seq, "viruses": viruses, "online": online, **extra})


def error(message: str) -> str:
    return encode({"type": "error", "error": message})


# --- group events, to every client ------------------------------------------------------


def created_event(*, seq: int, virus: dict, by: dict | None = None) -> dict:
    return _event("virus.created", {"type": "virus.created", "seq": seq, "virus": virus, "by": by})


def killed_event(*, seq: int, virus_id: str, by: dict | None = None) -> dict:
    return _event("virus.killed", {"type": "virus.killed", "seq": seq, "id": virus_id, "by": by})


def leaderboard_event(board: dict) -> dict:
    """The board (`selectors.leaderboard()`), the same for every client: built and encoded once."""
    return _event("leaderboard", {"type": "leaderboard", **board})


def presence_event(*, online: int, **names) -> dict:
    """`names`: `online_players` and `online_more` (`selectors.online_players`)."""
    return _event("presence", {"type": "presence", "online": online, **names})


def _event(kind: str, message: dict) -> dict:
    # `seq` rides along outside the text only for the push's log line.
    return {"type": kind, "seq": message.get("seq"), "text": encode(message)}


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))
