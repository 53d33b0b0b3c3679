"""Helpers for the delivery-guarantee tests: a page-like client, servers, counts that matter.

`Player` follows the contract with the page's rules (tools/gameclient.py's `Feed`): changes
in seq order, held back ahead of a gap, `resync` when a gap is not filled within
GAP_TIMEOUT, and when its socket closes it opens a new one (whose snapshot replaces
everything): at once with jitter after a 1012 "service restart", else with backoff. Its
`act` is the page's create or kill (actions.js): over the socket with an idempotency key,
asked again over HTTP with the same key when the socket closed before the answer. It
records what it saw so tests can count it.
"""

import asyncio
import contextlib
import itertools
import json
import random
import socket
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import redis
import websockets

from tools.gameclient import CHANGES, GAP_TIMEOUT, Feed, decode
from tools.servers import Api, GameServer, raise_open_files_limit, rss_mib  # noqa: F401 (re-exported)

# The page's constants (game.js, actions.js).
SERVICE_RESTART = 1012
RESTART_JITTER = 1.0  # s: a 1012 reconnects within this, at random
RETRY_STATUSES = (0, 502, 503, 504)  # an HTTP action asked again with its key after these
HTTP_RETRIES = 4
RETRY_BASE = 0.25  # s, doubled for each retry


class Player:
    """`server`: anything with `url` and `ws_url` (a daphne, nginx); `local_addr`: a loopback
    address of its own; `api`: the browser's HTTP side, whose cookies the socket sends too."""

    def __init__(
        self,
        server: GameServer,
        *,
        name: str = "player",
        lose: float = 0.0,
        seed: int = 0,
        local_addr: str | None = None,
        api: Api | None = None,
    ):
        self.server = server
        self.local_addr = local_addr
        self.api = api
        self.answers: dict[str, asyncio.Future] = {}  # ref -> the answer to an action on this socket
        self.refs = itertools.count(1)
        self.closed_at: float | None = None  # when the last socket closed, until the next snapshot
        self.reconnects: list[float] = []  # seconds from a socket's close to the next snapshot
        self.name = name
        self.lose = lose  # fraction of change messages to throw away, as a lossy link would
        self.random = random.Random(seed)
        self.feed = Feed(GAP_TIMEOUT)
        self.changes: list[dict] = []  # every change message received, in arrival order
        self.snapshots = 0
        self.resyncs = 0
        self.connects = 0
        self.refusals: list[str] = []  # handshakes that failed, and why
        self.close_codes: list[int | None] = []
        self.ws = None
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.first_snapshot = asyncio.Event()

    seq = property(lambda self: self.feed.seq)
    viruses = property(lambda self: self.feed.viruses)
    online = property(lambda self: self.feed.online)

    # Connection management -------------------------------------------------------------

    async def start(self, timeout: float = 15) -> "Player":
        self.task = asyncio.create_task(self._run(), name=self.name)
        await asyncio.wait_for(self.first_snapshot.wait(), timeout)
        return self

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def drop_connection(self) -> None:
        """Close the socket as a flaky network would; the player reconnects by itself."""
        if self.ws is not None:
            await self.ws.close()

    async def _run(self) -> None:
        delay = 0.1
        cookies = self.api.client.cookies.items() if self.api else ()
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies)} if cookies else None
        local = (self.local_addr, 0) if self.local_addr else None
        while not self.stopping:
            code = None
            try:
                async with websockets.connect(
                    self.server.ws_url,
                    origin=self.server.url,
                    max_size=None,
                    open_timeout=10,
                    additional_headers=headers,
                    local_addr=local,
                ) as ws:
                    self.ws = ws
                    self.connects += 1
                    self.feed.reset()
                    delay = 0.1
                    await self._read(ws)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                self.close_codes.append(code)
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                self.refusals.append(f"{type(exc).__name__}: {exc}")
            self.ws = None
            self._lost()
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            if self.stopping:
                return
            if code == SERVICE_RESTART:  # the server is leaving on purpose: another one is up
                await asyncio.sleep(RESTART_JITTER * self.random.random())
                continue
            await asyncio.sleep(delay * (0.5 + self.random.random()))  # backoff with jitter
            delay = min(delay * 2, 1.0)

    def _lost(self) -> None:
        """The socket closed: actions it did not answer are asked again over HTTP (`act`)."""
        for future in self.answers.values():
            if not future.done():
                future.set_result(None)

    async def _read(self, ws) -> None:
        while True:
            resync_at = self.feed.resync_at
            timeout = None if resync_at is None else max(0.0, resync_at - time.monotonic())
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                pass
            else:
                for message in decode(raw):
                    self.handle(message)
            if self.feed.resync_due(time.monotonic()):
                self.resyncs += 1
                self.feed.resync_sent(time.monotonic())
                await ws.send(json.dumps({"type": "resync"}))

    def handle(self, message: dict) -> None:
        kind = message["type"]
        if kind in ("ack", "error") and (future := self.answers.get(message.get("ref"))):
            if not future.done():
                future.set_result(message)
            return
        if kind == "snapshot" and self.closed_at is not None:
            self.reconnects.append(time.monotonic() - self.closed_at)
            self.closed_at = None
        if kind in CHANGES:
            self.changes.append(message)
            if self.lose and self.random.random() < self.lose:
                return  # lost on the way
        self.feed.receive(message, time.monotonic())
        if kind == "snapshot":
            self.snapshots += 1
            self.first_snapshot.set()

    # Actions, as the page does them ------------------------------------------------------

    async def act(self, action: dict) -> tuple[int, dict | None, str]:
        """Create or kill as actions.js does; return the final status, the virus (a create's)
        and how it was answered: "socket", or "http" after the socket closed first."""
        key = uuid.uuid4().hex[:24]
        ws = self.ws
        if ws is not None:
            ref = f"{self.name}-{next(self.refs)}"
            future = self.answers[ref] = asyncio.get_running_loop().create_future()
            try:
                await ws.send(json.dumps({**action, "ref": ref, "idempotency_key": key}))
                answer = await asyncio.wait_for(future, 30)
            except websockets.ConnectionClosed:
                answer = None
            finally:
                self.answers.pop(ref, None)
            if answer is not None:
                return answer.get("status", 0), answer.get("virus"), "socket"
        for attempt in range(HTTP_RETRIES + 1):
            status, virus = await self._act_over_http(action, key)
            if status not in RETRY_STATUSES or attempt == HTTP_RETRIES:
                return status, virus, "http"
            await asyncio.sleep(RETRY_BASE * 2**attempt * (0.5 + self.random.random()))
        raise AssertionError("unreachable")

    async def _act_over_http(self, action: dict, key: str) -> tuple[int, dict | None]:
        headers = {**self.api.headers(), "Idempotency-Key": key}
        try:
            if action["type"] == "create":
                response = await self.api.client.post("/api/viruses/", headers=headers)
            else:
                response = await self.api.client.delete(f"/api/viruses/{action['id']}/", headers=headers)
        except httpx.TransportError:
            return 0, None
        return response.status_code, response.json() if response.status_code == 201 else None

    # What tests look at ------------------------------------------------------------------

    def state(self) -> dict:
        return {"seq": self.seq, "ids": sorted(self.viruses)}

    def seqs_received(self) -> list[int]:
        return sorted(m["seq"] for m in self.changes)


def api_state(server: GameServer) -> dict:
    body = httpx.get(f"{server.url}/api/viruses/", timeout=10).json()
    return {"seq": body["seq"], "ids": sorted(v["id"] for v in body["viruses"])}


async def converge(players: list[Player], server: GameServer, timeout: float = 15) -> tuple[dict, float]:
    """Wait until every player's state equals GET /api/viruses/; return it and the seconds taken."""
    started = time.monotonic()
    while True:
        truth = await asyncio.to_thread(api_state, server)
        if all(p.state() == truth for p in players):
            return truth, time.monotonic() - started
        if time.monotonic() - started > timeout:
            behind = {p.name: (p.seq, len(p.viruses), p.resyncs, p.connects) for p in players}
            raise AssertionError(f"not converged in {timeout} s to seq {truth['seq']}: {behind}")
        await asyncio.sleep(0.2)


async def wait_for(
    predicate, timeout: float, what: str, interval: float = 0.1, started: float | None = None, detail=None
) -> float:
    """Poll `predicate` (sync or async) until it is true; return the seconds it took.

    `started`: a monotonic time to count from (default: now); `detail()`: for the failure.
    """
    started = time.monotonic() if started is None else started
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s" + (f" ({detail()})" if detail else ""))
        await asyncio.sleep(interval)


def tracebacks(*servers: GameServer) -> list[str]:
    """Log excerpts of every traceback the servers wrote (each one a 500 or a crashed consumer)."""
    found = []
    for server in servers:
        log = server.read_log()
        start = 0
        while (at := log.find("Traceback", start)) != -1:
            found.append(log[max(0, at - 300) : at + 1500])
            start = at + 1
    return found


def server_errors(*servers: GameServer) -> list[str]:
    """Access-log lines of HTTP 5xx answers that were not the contract's 503."""
    lines = []
    for server in servers:
        for line in server.read_log().splitlines():
            parts = line.split('" ')
            if len(parts) > 1 and parts[1][:1] == "5" and not parts[1].startswith("503"):
                lines.append(line)
    return lines


def group_members(env: dict[str, str]) -> int:
    """Channels in the game's Redis group (channels-redis keeps `<prefix>:group:<name>` zsets)."""
    client = redis.Redis.from_url(env["REDIS_URL"].split(",")[0])
    try:
        return client.zcard(f"{env['REDIS_PREFIX']}:group:viruses")
    finally:
        client.close()


def db_scalar(env: dict[str, str], sql: str):
    """Run one query against the game's database, from outside the server (as an operator)."""
    url = env["DATABASE_URL"]
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(env), timeout=10)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def sqlite_path(env: dict[str, str]) -> str:
    return env["DATABASE_URL"].removeprefix("sqlite:///")


class Cluster:
    """daphne processes serving one game (one database, one Redis prefix), stopped at the end."""

    def __init__(self, env: dict[str, str], directory: Path):
        self.env = dict(env)
        self.directory = directory
        self.servers: list[GameServer] = []

    def start(self, count: int = 1, **extra: str) -> list[GameServer]:
        self.env.update(extra)
        started = []
        for _ in range(count):
            log = self.directory / f"daphne-{len(self.servers)}.log"
            server = GameServer(dict(self.env), log)
            self.servers.append(server)
            started.append(server.start())
        return started

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def assert_clean(self) -> None:
        """No traceback and no 5xx other than the contract's 503 in any server's log."""
        assert tracebacks(*self.servers) == []
        assert server_errors(*self.servers) == []


class TcpProxy:
    """A loopback TCP proxy we can cut and restore: a database that goes away and comes back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> "TcpProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Refuse new connections and cut every open one, as a crashed server would."""
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                sink.transport.abort()
                self.writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def stalled_socket(server, source: str = "127.0.0.1") -> socket.socket:
    """Open a WebSocket by hand and never read from it (a frozen tab, a dead mobile link)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))  # a loopback address of its own: limits are per client address
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        (
            f"GET /ws/viruses/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock
