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


# --- to one client ----------------------------------------------------------------------


def snapshot(*, seq: int, viruses: list[dict], online: int) -> str:
    return encode({"type": "snapshot", "seq": seq, "viruses": viruses, "online": online})


def error(message: str) -> str:
    return encode({"type": "error", "error": message})


# --- group events, to every client ------------------------------------------------------

# What a consumer or the fastlane relays to its client as it is: the event's `text`.
GROUP_EVENTS = frozenset({"virus.created", "virus.killed", "presence"})


def created_event(*, seq: int, virus: dict) -> dict:
    return _event("virus.created", {"type": "virus.created", "seq": seq, "virus": virus})


def killed_event(*, seq: int, virus_id: str) -> dict:
    return _event("virus.killed", {"type": "virus.killed", "seq": seq, "id": virus_id})


def presence_event(*, online: int) -> dict:
    return _event("presence", {"type": "presence", "online": online})


def _event(kind: str, message: dict) -> dict:
    # `seq` rides along outside the text only for the push's log line.
    return {"type": kind, "seq": message.get("seq"), "text": encode(message)}


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


def frame_text(texts: list[str]) -> str:
    """One frame's text for encoded messages: the message itself, or a JSON array of them in order."""
    return texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"
