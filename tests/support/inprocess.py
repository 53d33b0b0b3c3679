"""Clients of the in-process game (Django's test client, Channels' communicator) shared by tests."""

import uuid

from channels.testing import WebsocketCommunicator
from django.test import Client

from viruses import players
from virusgame.asgi import application


def browser() -> Client:
    """A client that enforces CSRF as a browser meets it, with its page loaded (`client.token`)."""
    # A fresh client address each: rate-limit counters live in a shared cache (Redis).
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=f"test-{uuid.uuid4().hex[:12]}")
    page = client.get("/")
    assert page.status_code == 200
    client.token = page.cookies["csrftoken"].value
    return client


async def next_of(communicator, kind: str, timeout: float = 3, skip=("presence",)) -> dict:
    """Return the next message of this type, skipping the types in `skip` (presence updates).

    A frame of several messages (a JSON array) is read one message at a time.
    """
    pending = communicator.__dict__.setdefault("pending_messages", [])
    while True:
        if not pending:
            frame = await communicator.receive_json_from(timeout)
            pending.extend(frame if isinstance(frame, list) else [frame])
        message = pending.pop(0)
        if message["type"] == kind:
            return message
        assert message["type"] in skip, message


async def socket(path: str, player=None) -> WebsocketCommunicator:
    """An accepted socket of the in-process game at `path`, with `player`'s cookie if given."""
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    if player is not None:
        headers.append((b"cookie", f"{players.COOKIE}={players.cookie_value(player.pk)}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator
