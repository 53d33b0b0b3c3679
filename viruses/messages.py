"""The WebSocket message schema (docs/architecture.md#contract): pure, no I/O.

Server messages are built and encoded here and nowhere else, and client messages decoded.
A group event carries its message already encoded (`text`), so a consumer relays it to each
client as it is.
"""

import contextlib
import json
import uuid
from dataclasses import dataclass

ECHO_CHARS = 64  # at most this much of what a client sent comes back in an error
REF_CHARS = 64  # the longest `ref` a client may give an action (echoed in the answer)
# A tuple: a client's "type" may be unhashable (a list).
ACTIONS = ("create", "kill", "rename", "round.start", "round.stop")


class BadMessage(ValueError):
    """A client message answered with `{"type": "error"}`; the socket stays open."""

    def answer(self) -> str:
        return error(str(self))


class BadAction(BadMessage):
    """A malformed action: answered 400, with its `ref` when that one was valid."""

    def __init__(self, message: str, ref: str | None = None):
        super().__init__(message)
        self.ref = ref

    def answer(self) -> str:
        return error(str(self), ref=self.ref, status=400)


@dataclass(frozen=True)
class Action:
    """A player's create, kill or rename, as sent over the socket."""

    type: str  # "create", "kill" or "rename"
    ref: str
    virus_id: uuid.UUID | None = None  # the kill's target
    name: object = None  # the rename's new name, as sent (services.player_rename validates it)
    key: str | None = None  # create and kill: the idempotency key of a retried action (idempotency.py)
    seconds: object = None  # round.start: the round's length, as sent (rounds.start validates it)


def decode(data: str | bytes) -> dict:
    """Return a client message: a JSON object with a "type"; raise `BadMessage` otherwise."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise BadMessage("message is not valid JSON") from None
    if not isinstance(message, dict) or "type" not in message:
        raise BadMessage('message must be a JSON object with a "type"')
    return message


def action(message: dict) -> Action:
    """Return the action a decoded client message asks for; raise `BadAction` if malformed."""
    ref = message.get("ref")
    if not isinstance(ref, str) or len(ref) > REF_CHARS:
        raise BadAction(f'an action needs a "ref": a string of at most {REF_CHARS} characters')
    if message["type"] == "rename":
        return Action("rename", ref, name=message.get("name"))
    if message["type"].startswith("round."):
        return Action(message["type"], ref, seconds=message.get("seconds"))
    key = message.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or len(key) > REF_CHARS):
        raise BadAction(f'"idempotency_key" must be a string of at most {REF_CHARS} characters', ref)
    if message["type"] == "create":
        return Action("create", ref, key=key or None)
    virus_id = message.get("id")
    if isinstance(virus_id, str):
        with contextlib.suppress(ValueError):
            return Action("kill", ref, uuid.UUID(virus_id), key=key or None)
    raise BadAction(f'"id" must be a virus id (a UUID), not {clip(virus_id)}', ref)


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


def round_json(round_) -> dict:
    """The contract's Round: `{"number", "state", "started_at", "ends_at", "seconds"}`."""
    return {
        "number": round_.number,
        "state": round_.state,
        "started_at": round_.started_at.isoformat(),
        "ends_at": round_.ends_at.isoformat(),
        "seconds": round_.seconds,
    }


def player_json(player) -> dict | None:
    """Who did something, as `"by"` shows it: `{"id", "name"}`, or None for the game itself."""
    return None if player is None else {"id": str(player.pk), "name": player.name}


# --- to one client ----------------------------------------------------------------------


def snapshot(*, seq: int, viruses: list[dict], online: int, **extra) -> str:
    """The snapshot; `extra`: the fields added since the first contract (`selectors.snapshot`)."""
    return encode({"type": "snapshot", "seq": seq, "viruses": viruses, "online": online, **extra})


def for_viewer(snapshot_text: str, me: dict | None) -> str:
    """A snapshot encoded once for many sockets, completed with one viewer's `me`."""
    return f'{snapshot_text[:-1]},"me":{encode(me)}}}'


def error(message: str, *, ref: str | None = None, status: int | None = None) -> str:
    """An error for one client; `ref` and `status` when it answers an action."""
    answer = {"type": "error"}
    if ref is not None:
        answer["ref"] = ref
    if status is not None:
        answer["status"] = status
    answer["error"] = message
    return encode(answer)


def ack(*, ref: str, status: int, **done: dict | None) -> str:
    """A done action, to its sender alone: 201 with the `virus` created or the `round` started,
    204 (killed, stopped), or 200 with the renamed `player` (`selectors.me`)."""
    answer = {"type": "ack", "ref": ref, "status": status}
    answer.update((name, value) for name, value in done.items() if value is not None)
    return encode(answer)


# --- group events, to every client ------------------------------------------------------

BATCH = "batch"  # several group events sent as one (`batch_event`)

# What a consumer or the fastlane relays to its client as it is: the event's `text`.
GROUP_EVENTS = frozenset({"virus.created", "virus.killed", "presence", "leaderboard", "room", "round", BATCH})


def created_event(*, seq: int, virus: dict, by: dict | None = None) -> dict:
    return _event("virus.created", {"type": "virus.created", "seq": seq, "virus": virus, "by": by})


def killed_event(*, seq: int, virus_id: str, by: dict | None = None, scored: bool = False) -> dict:
    """`scored`: whether the kill counted for `by` (viruses/scoring.py); false for the game's own."""
    message = {"type": "virus.killed", "seq": seq, "id": virus_id, "by": by, "scored": scored}
    return _event("virus.killed", message)


def leaderboard_event(board: dict) -> dict:
    """The board (`selectors.leaderboard()`), the same for every client: built and encoded once."""
    return _event("leaderboard", {"type": "leaderboard", **board})


def room_event(room: dict) -> dict:
    """A room's new state (`selectors.room_json`), to its clients: its host locked or unlocked it."""
    return _event("room", {"type": "room", "room": room})


def round_event(*, round: dict, board: dict, now: str) -> dict:
    """A round started or ended (`round["state"]`), with its board; `now`: the server's clock,
    from which every page counts down alike."""
    return _event("round", {"type": "round", "round": round, "board": board, "now": now})


def presence_event(*, online: int, **names) -> dict:
    """`names`: `online_players` and `online_more` (`selectors.online_players`)."""
    return _event("presence", {"type": "presence", "online": online, **names})


def batch_event(events: list[dict]) -> dict:
    """Group events as one: a single frame for every client, their messages in order (an array).

    `events` and the seq range ride along outside the text only for the push's log line.
    """
    seqs = [event["seq"] for event in events if event.get("seq") is not None]
    return {
        "type": BATCH,
        "seq": seqs[0] if seqs else None,
        "last_seq": seqs[-1] if seqs else None,
        "events": len(events),
        "text": frame_text([event["text"] for event in events]),
    }


def _event(kind: str, message: dict) -> dict:
    # `seq` rides along outside the text only for the push's log line.
    return {"type": kind, "seq": message.get("seq"), "text": encode(message)}


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


def frame_text(texts: list[str]) -> str:
    """One frame's text for encoded messages: the message itself, or a JSON array of them in order."""
    return texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"


def frame_of(events: list[dict]) -> str:
    """One frame's text for group events in order: a batch's messages spliced in, not nested."""
    if len(events) == 1:
        return events[0]["text"]
    return frame_text([event["text"][1:-1] if event["type"] == BATCH else event["text"] for event in events])
