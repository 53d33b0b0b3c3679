"""HTTP requests' sync code runs on a fixed pool of threads, each keeping its connection."""

import asyncio
import json
import threading
import time

import pytest
from channels.testing import HttpCommunicator
from django.core import signals
from django.db import connection, connections
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path

from virusgame.handler import PooledASGIHandler


def where(request):
    time.sleep(0.05)  # long enough for the requests to overlap
    return JsonResponse({"thread": threading.current_thread().name})


def connection_used(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"thread": threading.current_thread().name, "connection": id(connection.connection)})


def streamed(request):
    async def parts():
        for n in range(3):
            yield f"part {n}\n".encode()

    return StreamingHttpResponse(parts())


urlpatterns = [path("where/", where), path("connection/", connection_used), path("streamed/", streamed)]


@pytest.fixture
def handler(settings):
    settings.ROOT_URLCONF = __name__
    return PooledASGIHandler(threads=3)


async def get(app, path: str = "/where/") -> dict:
    request = HttpCommunicator(app, "GET", path, headers=[(b"host", b"testserver")])
    response = await request.get_response(timeout=10)
    await request.wait(timeout=10)  # until the request is over (its connection given back)
    assert response["status"] == 200, response
    return json.loads(response["body"])


async def test_concurrent_requests_share_a_fixed_pool_of_threads(handler):
    answers = await asyncio.gather(*(get(handler) for _ in range(12)))
    threads = {answer["thread"] for answer in answers}
    assert len(threads) == 3  # in parallel, and never a thread per request
    assert all(name.startswith("http-") for name in threads)


@pytest.mark.django_db(transaction=True)
async def test_a_thread_keeps_its_connection_between_requests(handler, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's connections come from its pool, whatever the thread")
    # As served: in-process tests run with CONN_MAX_AGE 0 (pyproject.toml), servers with
    # SQLite's default of 300 s (settings.py).
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 300)
    answers = [await get(handler, "/connection/") for _ in range(6)]
    by_thread = {}
    for answer in answers:
        by_thread.setdefault(answer["thread"], set()).add(answer["connection"])
    assert all(len(connections) == 1 for connections in by_thread.values()), by_thread


async def test_each_request_is_started_answered_and_finished_once_whole_or_streamed(handler):
    """One hop per request (`handle`): the signals that open and close its connections still fire."""
    fired = []

    def started(**kwargs):
        fired.append(("started", threading.current_thread().name))

    def finished(**kwargs):
        fired.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        whole = await get(handler)
        request = HttpCommunicator(handler, "GET", "/streamed/", headers=[(b"host", b"testserver")])
        await request.send_input({"type": "http.request", "body": b""})
        start, body, more = await request.receive_output(timeout=10), b"", True
        while more:  # HttpCommunicator.get_response wants a body in the last part, which ASGI does not
            part = await request.receive_output(timeout=10)
            body, more = body + part.get("body", b""), part.get("more_body", False)
        await request.wait(timeout=10)
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert start["status"] == 200 and body == b"part 0\npart 1\npart 2\n"
    assert [what for what, _ in fired] == ["started", "finished"] * 2
    assert {thread for _, thread in fired[:2]} == {whole["thread"]}  # the view's own thread
