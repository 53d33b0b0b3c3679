"""Helpers for the delivery-guarantee tests: a page-like client, servers, counts that matter.

`Player` follows the contract with the page's rules (tools/gameclient.py's `Feed`): changes
in seq order, held back ahead of a gap, `resync` when a gap is not filled within
GAP_TIMEOUT, and when its socket closes it opens a new one (whose snapshot replaces
everything). It records what it saw so tests can count it.
"""

import asyncio
import contextlib
import json
import random
import sqlite3
import time
from pathlib import Path

import httpx
import psycopg
import redis
import websockets

from tools.gameclient import CHANGES, GAP_TIMEOUT, Feed, decode
from tools.servers import GameServer, raise_open_files_limit, rss_mib  # noqa: F401 (re-exported)


class Player:
    def __init__(self, server: GameServer, *, name: str = "player", lose: float = 0.0, seed: int = 0):
        self.server = server
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
        while not self.stopping:
            try:
                async with websockets.connect(
                    self.server.ws_url, origin=self.server.url, max_size=None, open_timeout=10
                ) as ws:
                    self.ws = ws
                    self.connects += 1
                    self.feed.reset()
                    delay = 0.1
                    await self._read(ws)
            except websockets.ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd else None)
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                self.refusals.append(f"{type(exc).__name__}: {exc}")
            self.ws = None
            if self.stopping:
                return
            await asyncio.sleep(delay * (0.5 + self.random.random()))  # backoff with jitter
            delay = min(delay * 2, 1.0)

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
        if kind in CHANGES:
            self.changes.append(message)
            if self.lose and self.random.random() < self.lose:
                return  # lost on the way
        self.feed.receive(message, time.monotonic())
        if kind == "snapshot":
            self.snapshots += 1
            self.first_snapshot.set()

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


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `predicate` (sync or async) until it is true; return the seconds it took."""
    started = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
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
