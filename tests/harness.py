"""Real components for tests and the benchmark: databases, Redis, daphne, WebSocket clients.

Everything here runs the project as its users do: `manage.py` and daphne in child
processes, sharing a database and a Redis with the test process only through their URLs.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import websockets

from tools.local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uses_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


class Databases:
    """Fresh, migrated databases for server processes, cloned from one migrated template.

    PostgreSQL when DATABASE_URL points at it (CREATE DATABASE ... TEMPLATE), else SQLite
    files copied from a migrated one.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.postgres_url = os.environ["DATABASE_URL"] if uses_postgres() else None
        self.created: list[str] = []
        self.template = self._new_name()
        self._migrate(self._url(self.template))

    def _new_name(self) -> str:
        name = f"virusgame_t_{uuid.uuid4().hex[:10]}"
        if self.postgres_url:
            self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def _url(self, name: str) -> str:
        if self.postgres_url:
            return urlunsplit(urlsplit(self.postgres_url)._replace(path=f"/{name}"))
        return f"sqlite:///{self.directory / name}.sqlite3"

    def _admin(self, sql: str) -> None:
        # The maintenance database: DATABASE_URL's own may not exist yet.
        with psycopg.connect(self._url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def _migrate(self, url: str) -> None:
        env = base_env(database_url=url, redis_url="")
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    def fresh(self) -> str:
        """Return the URL of a new database holding the migrated, empty schema."""
        name = f"virusgame_t_{uuid.uuid4().hex[:10]}"
        if self.postgres_url:
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        else:
            shutil.copy(self.directory / f"{self.template}.sqlite3", self.directory / f"{name}.sqlite3")
        self.created.append(name)
        return self._url(name)

    def drop_all(self) -> None:
        if not self.postgres_url:
            return
        for name in reversed(self.created):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like server process (DEBUG off)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VIRUS_", "REDIS_", "DATABASE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="virusgame.settings",
        DJANGO_SECRET_KEY="tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        DJANGO_DEBUG="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        VIRUS_RATE_LIMIT="0",
        VIRUS_SNAPSHOT_RATE="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return {key: value for key, value in env.items() if value != ""}


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


class ChildProcess:
    """A server run as a child of the test, logging to `log_path`, healthy when /healthz is 200."""

    process: subprocess.Popen | None = None
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/viruses/"

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{self.read_log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not healthy within {timeout} s:\n{self.read_log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class GameServer(ChildProcess):
    """One daphne process serving the project, with helpers to drive it."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> "GameServer":
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "virusgame.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        self.wait_healthy("daphne", timeout)

    def manage(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `manage.py` in another process against this server's database and Redis."""
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def api(self) -> "Api":
        return Api(self.url)


class Api:
    """A browser-like HTTP client: takes the CSRF cookie from the page, sends it back."""

    def __init__(self, base_url: str):
        self.client = httpx.Client(base_url=base_url, timeout=10)
        self.client.get("/").raise_for_status()
        self.token = self.client.cookies["csrftoken"]

    def list(self) -> dict:
        response = self.client.get("/api/viruses/")
        response.raise_for_status()
        return response.json()

    def create(self) -> httpx.Response:
        return self.client.post("/api/viruses/", headers=self.headers())

    def kill(self, virus_id: str) -> httpx.Response:
        return self.client.delete(f"/api/viruses/{virus_id}/", headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.token, "Referer": str(self.client.base_url)}


class Client:
    """A WebSocket player that keeps the state the contract lets it build."""

    def __init__(self, ws):
        self.ws = ws
        self.seq = 0
        self.viruses: dict[str, dict] = {}
        self.online = 0
        self.messages: list[dict] = []

    async def recv(self, timeout: float = 10) -> dict:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.messages.append(message)
        self.apply(message)
        return message

    def apply(self, message: dict) -> None:
        kind = message["type"]
        if kind == "snapshot":
            self.seq = message["seq"]
            self.viruses = {v["id"]: v for v in message["viruses"]}
            self.online = message["online"]
        elif kind == "presence":
            self.online = message["online"]
        elif kind in ("virus.created", "virus.killed") and message["seq"] > self.seq:
            self.seq = message["seq"]
            if kind == "virus.created":
                self.viruses[message["virus"]["id"]] = message["virus"]
            else:
                self.viruses.pop(message["id"], None)

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

    async def send(self, message) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))


@asynccontextmanager
async def player(server: GameServer, *, origin: str | None = None):
    """Connect a WebSocket player and read its snapshot."""
    async with websockets.connect(server.ws_url, origin=origin or server.url, max_size=None) as ws:
        client = Client(ws)
        first = await client.recv()
        assert first["type"] == "snapshot", first
        yield client
