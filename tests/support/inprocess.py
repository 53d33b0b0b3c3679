"""Clients of the in-process game (Django's test client, Channels' communicator) shared by tests."""

import uuid

from django.test import Client


def browser() -> Client:
    """A client that enforces CSRF as a browser meets it, with its page loaded (`client.token`)."""
    # A fresh client address each: rate-limit counters live in a shared cache (Redis).
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=f"test-{uuid.uuid4().hex[:12]}")
    page = client.get("/")
    assert page.status_code == 200
    client.token = page.cookies["csrftoken"].value
    return client


async def next_of(communicator, kind: str, timeout: float = 3, skip=("presence",)) -> dict:
    """Return the next message of this type, skipping the types in `skip` (presence updates)."""
    while True:
        message = await communicator.receive_json_from(timeout)
        if message["type"] == kind:
            return message
        assert message["type"] in skip, message
