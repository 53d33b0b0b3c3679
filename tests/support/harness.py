"""Real components for tests: Redis, daphne, WebSocket players, skips that CI turns into failures.

The servers, databases and the HTTP API helper live in tools/servers.py (the benchmark uses
them too) and are re-exported here; the page's seq rules live in tools/gameclient.py.
"""

import asyncio
import json
import os
import shutil
import subprocess  # noqa: F401 (tests run manage.py through harness.subprocess)
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import websockets

from tools.gameclient import Feed, decode
from tools.local_redis import LocalRedis
from tools.servers import (  # noqa: F401 (re-exported for the tests)
    PYTHON,
    ROOT,
    Api,
    ChildProcess,
    Databases,
    GameServer,
    base_env,
    free_port,
    uses_postgres,
)

REQUIRE_ALL = os.environ.get("REQUIRE_ALL", "") not in ("", "0")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Chromium's own phoning home is refused on machines without internet; keep it quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require(condition: bool, reason: str) -> None:
    """Skip when something optional is missing here; fail instead when REQUIRE_ALL is set (CI)."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"REQUIRE_ALL is set but {reason}")
    pytest.skip(reason)


class RedisServer:
    """The Redis for cross-process tests: REDIS_URL's if set, else a local child process."""

    def __init__(self, directory: Path):
        self.local = None if os.environ.get("REDIS_URL") else LocalRedis(directory).start()
        self.url = self.local.url if self.local else os.environ["REDIS_URL"]

    def stop(self) -> None:
        if self.local:
            self.local.stop()

    def restart(self) -> None:
        """Stop and start the local Redis (only possible for the one we own)."""
        require(self.local is not None, "restarting Redis needs the test suite's own Redis")
        self.local.stop()
        self.local.start()


class Client:
    """A WebSocket player that keeps the state the contract lets it build (a `Feed`).

    It reads only when asked (`recv`, `until`) and never resyncs by itself: tests drive it.
    """

    def __init__(self, ws):
        self.ws = ws
        self.feed = Feed()
        self.messages: list[dict] = []  # every message received, in order
        self.unread: list[dict] = []  # messages of frames already read, not yet returned

    seq = property(lambda self: self.feed.seq)
    viruses = property(lambda self: self.feed.viruses)
    online = property(lambda self: self.feed.online)

    async def recv(self, timeout: float = 10) -> dict:
        if not self.unread:
            self.unread = decode(await asyncio.wait_for(self.ws.recv(), timeout))
        message = self.unread.pop(0)
        self.messages.append(message)
        self.feed.receive(message, time.monotonic())
        return message

    async def until(self, predicate, timeout: float = 10) -> dict:
        """Read messages until one satisfies `predicate`; return it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout} s; got {self.messages[-5:]}")
            message = await self.recv(remaining)
            if predicate(message):
                return message

    async def seen(self, predicate, timeout: float = 10) -> dict:
        """The first message received so far that satisfies `predicate`, else the next one that does.

        For a sender's own push, which may come before or after the answer `act` waits for.
        """
        for message in self.messages:
            if predicate(message):
                return message
        return await self.until(predicate, timeout)

    async def send(self, message) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def act(self, message: dict, timeout: float = 10) -> dict:
        """Send an action (create or kill, with its `ref`); return its answer: ack or error."""
        await self.send(message)
        ref = message["ref"]
        return await self.until(lambda m: m["type"] in ("ack", "error") and m.get("ref") == ref, timeout)


@asynccontextmanager
async def player(
    server: GameServer, *, origin: str | None = None, api: Api | None = None, path: str | None = None
):
    """Connect a WebSocket player and read its snapshot; with `api`, as that browser (its cookies);
    `path`: another socket than the public world's (a room's, `/ws/rooms/<code>/`)."""
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in api.client.cookies.items())} if api else None
    url = server.ws_url if path is None else "ws" + server.url.removeprefix("http") + path
    async with websockets.connect(
        url, origin=origin or server.url, max_size=None, additional_headers=headers
    ) as ws:
        client = Client(ws)
        first = await client.recv()
        assert first["type"] == "snapshot", first
        yield client


async def push_until_slow_reader(server) -> None:
    """Push ~20 MB of padded presence events to the game's group until the server logs that
    it closed a socket as a slow reader (the caller holds a socket that stopped reading)."""
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[server.env["REDIS_URL"]], prefix=server.env["REDIS_PREFIX"])
    padded = json.dumps({"type": "presence", "online": 1, "pad": "x" * 64 * 1024})
    try:
        for _ in range(300):
            await layer.group_send("viruses", {"type": "presence", "text": padded})
            if "reason=slow_reader" in server.read_log():
                break
            await asyncio.sleep(0.005)
    finally:
        await layer.close_pools()


async def close_code(ws, timeout: float = 10) -> int | None:
    """Read until the server closes the socket; return its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006  # no close frame: abnormal closure


def connect(server, **kwargs):
    """Open a WebSocket to `server` as its page would (its Origin), with no size limit."""
    return websockets.connect(server.ws_url, origin=server.url, max_size=None, **kwargs)


def created_event(seq: int, pad: int = 0) -> dict:
    """A `virus.created` group event as the channel layer carries it; `pad` bytes of padding."""
    virus = {"id": f"00000000-0000-0000-0000-{seq:012d}", "kind": 0, "x": 1, "y": 1, "created_at": "x"}
    message = {"type": "virus.created", "seq": seq, "virus": virus}
    if pad:
        message["pad"] = "x" * pad
    return {"type": "virus.created", "text": json.dumps(message)}
