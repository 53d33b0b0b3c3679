"""Real servers for tests and the benchmark: databases, daphne processes, the HTTP API.

Everything here runs the project as its users do: `manage.py` and daphne in child
processes, sharing a database and a Redis with the caller only through their URLs.
No pytest here: tests/harness.py adds the test-only parts and re-exports these.
"""

import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAPHNE = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}"]
# The other ASGI servers the project also runs under (the benchmark's peers, tests/system/
# test_peers.py), launched as their users deploy them, in one process like DAPHNE: uvicorn
# as `uvicorn[standard]` runs it (httptools, uvloop) with its `websockets` implementation,
# without the access log daphne does not write either; granian with its own defaults (one
# worker process under its supervisor; its Rust HTTP and WebSocket stack).
PEERS = {
    "uvicorn": [
        *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"),
        *("--http", "httptools", "--loop", "uvloop", "--ws", "websockets", "--no-access-log"),
    ],
    "granian": [
        *(PYTHON, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"),
        *("--workers", "1"),
    ],
}
# What each peer's launch imports, beyond the server itself.
PEER_MODULES = {"uvicorn": ("uvicorn", "httptools", "uvloop", "websockets"), "granian": ("granian",)}
# Settings a server process must take from base_env, never from the caller's environment.
OWN_PREFIXES = ("DJANGO_", "VIRUS_", "REDIS_", "DATABASE_", "METRICS_")


def peer_missing(name: str) -> str | None:
    """Why the peer `name` cannot run here (a module not installed), or None."""
    missing = [module for module in PEER_MODULES[name] if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"{name} not installed ({', '.join(missing)}; pip install -r requirements-dev.lock)"


def peer_argv(name: str, app: str) -> list[str]:
    """The command line serving ASGI `app` under the peer `name`."""
    return [*PEERS[name], app]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uses_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def clean_environ() -> dict[str, str]:
    """This process's environment without any of the project's settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith(OWN_PREFIXES)}


def base_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like server process (DEBUG off)."""
    env = clean_environ()
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
        # Every kill ranks at once (the board's tests); tests of the minimum of play set their own.
        VIRUS_RANK_MIN_KILLS="1",
        VIRUS_RANK_MIN_SECONDS="0",
        # Scripted kills follow their push within ms; the fair-play tests set the rule's own.
        VIRUS_MIN_REACTION_MS="0",
        # Every test client comes from 127.0.0.1: a flood test must not lock the next test's
        # clients out. Tests of the penalty box turn it on (tests/system/test_abuse.py).
        VIRUS_ABUSE_PENALTY="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return {key: value for key, value in env.items() if value != ""}


def manage(env: dict[str, str], *args: str, **run) -> subprocess.CompletedProcess:
    """Run `manage.py` in a child process with exactly `env`."""
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, **run)


def collectstatic(database_url: str, static_root: Path) -> None:
    """Collect the static files (hashed names and manifest, as in production) into `static_root`."""
    env = base_env(database_url=database_url, redis_url="", DJANGO_STATIC_ROOT=str(static_root))
    manage(env, "collectstatic", "--no-input", "-v0", check=True)


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
        manage(base_env(database_url=self._url(self.template), redis_url=""), "migrate", "-v0", check=True)

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


class ChildProcess:
    """A server run as a child of the caller, logging to `log_path`, healthy when /healthz is 200."""

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
    """One server process (daphne serving the project unless `argv` says otherwise)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        argv: list[str] | None = None,
        name: str = "daphne",
    ):
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        self.argv = [arg.format(port=self.port) for arg in argv or [*DAPHNE, "virusgame.asgi:application"]]
        self.name = name
        self.process: subprocess.Popen | None = None

    def launch(self) -> "GameServer":
        """Start the process without waiting for it (start several, then `wait_ready` each)."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def start(self, timeout: float = 20) -> "GameServer":
        self.launch().wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        self.wait_healthy(self.name, timeout)

    def manage(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `manage.py` in another process against this server's database and Redis."""
        return manage(self.env, *args, capture_output=True, text=True, check=check, timeout=timeout)

    def api(self) -> "Api":
        return Api(self.url).start()


class ApiError(Exception):
    """An answer outside 2xx from an `Api(check=True)`."""


class Api:
    """The HTTP API as the page uses it: the CSRF cookie from the page, sent back as a header.

    Synchronous by default; with `asynchronous=True` every method returns a coroutine (start
    it with `await api.start()` or `async with`). `statuses` records every API answer;
    `check=True` raises ApiError for one outside 2xx.
    """

    def __init__(
        self,
        base_url: str,
        *,
        asynchronous: bool = False,
        check: bool = False,
        connections: int = 16,
        local_address: str | None = None,
    ):
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        client_class = httpx.AsyncClient if asynchronous else httpx.Client
        transport_class = httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
        # local_address: a loopback address of its own (127.0.0.N), as another player's machine.
        transport = transport_class(limits=limits, local_address=local_address)
        self.client = client_class(base_url=base_url, timeout=30, transport=transport)
        self.asynchronous = asynchronous
        self.check = check
        self.csrf_headers = {"Referer": base_url + "/"}
        self.statuses: list[int] = []

    def start(self):
        """Load the page for its CSRF cookie; return the Api."""
        return self._send("GET", "/", self._take_token, record=False)

    def list(self):
        return self._send("GET", "/api/viruses/", _json)

    def create(self):
        return self._send("POST", "/api/viruses/")

    def kill(self, virus_id: str):
        return self._send("DELETE", f"/api/viruses/{virus_id}/")

    def get(self, path: str):
        return self._send("GET", path)

    def headers(self) -> dict[str, str]:
        """What a write needs besides the cookie: the CSRF token and a same-origin Referer."""
        return dict(self.csrf_headers)

    def close(self):
        return self.client.aclose() if self.asynchronous else self.client.close()

    async def __aenter__(self) -> "Api":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _take_token(self, response: httpx.Response) -> "Api":
        response.raise_for_status()
        self.csrf_headers["X-CSRFToken"] = self.client.cookies["csrftoken"]
        return self

    def _send(self, method: str, path: str, then=None, record: bool = True):
        request = self.client.build_request(method, path, headers=self.headers())
        if self.asynchronous:
            return self._send_async(request, then, record)
        return self._answer(self.client.send(request), then, record)

    async def _send_async(self, request: httpx.Request, then, record: bool):
        return self._answer(await self.client.send(request), then, record)

    def _answer(self, response: httpx.Response, then, record: bool):
        if record:
            self.statuses.append(response.status_code)
        if record and self.check and not response.is_success:
            raise ApiError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text[:200]}"
            )
        return then(response) if then else response


def _json(response: httpx.Response):
    response.raise_for_status()
    return response.json()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def raise_open_files_limit(wanted: int = 8192) -> int:
    """Raise this process's RLIMIT_NOFILE (children such as daphne inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
