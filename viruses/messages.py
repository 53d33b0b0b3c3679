"""The WebSocket message schema (docs/architecture.md#contract): pure, no I/O.

Server messages are built and encoded here and nowhere else. A group event carries its
message already encoded (`text`), so a consumer relays it to each client as it is.
"""

import json


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
