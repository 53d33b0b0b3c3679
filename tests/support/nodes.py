"""Production-shaped components for the production and scale-out tests.

- `Node`: daphne run with the flags of the deploy kit's systemd unit (on a loopback TCP
  port instead of the unit's unix socket), so the tests exercise what operators run.
- `Nginx`: a real nginx, a child process of the test on a loopback port, whose site is
  generated from `deploy/nginx/virusgame.conf` (upstream pointed at the nodes' ports, TLS
  left out).
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import harness

DEPLOY = harness.ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "virusgame@.service"
SITE = DEPLOY / "nginx" / "virusgame.conf"


def unit_daphne_args() -> list[str]:
    """The daphne flags of the systemd unit, without its unix socket and application."""
    text = UNIT.read_text()
    command = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", text, re.MULTILINE).group(1)
    words = shlex.split(command.replace("\\\n", " "))
    args, skip = [], False
    for word in words[1:]:
        if skip:
            skip = False
        elif word == "--unix-socket":
            skip = True
        elif word != "virusgame.asgi:application":
            args.append(word)
    return args


class Node(harness.GameServer):
    """A daphne process started with the given flags (default: the systemd unit's)."""

    def __init__(self, env, log_path, port=None, daphne_args=None, application="virusgame.asgi:application"):
        args = unit_daphne_args() if daphne_args is None else list(daphne_args)
        argv = [harness.PYTHON, "-m", "daphne", *args, "-b", "127.0.0.1", "-p", "{port}"]
        super().__init__(env, log_path, port, argv=[*argv, application])

    def api(self, client_address: str | None = None) -> harness.Api:
        """A browser-like client; with `client_address`, as if behind a proxy that says so."""
        api = harness.Api(self.url).start()
        if client_address:
            api.client.headers["X-Forwarded-For"] = client_address
        return api


def require_postgres() -> None:
    # Not harness.require: CI runs the SQLite configuration with REQUIRE_ALL=1 too, and there
    # the absence of PostgreSQL is the configuration, not a missing tool. CI's PostgreSQL
    # run has DATABASE_URL set, so these tests run there.
    if not harness.uses_postgres():
        pytest.skip("several nodes share one database: set DATABASE_URL to PostgreSQL")


def start_nodes(count: int, env: dict[str, str], directory: Path, **kwargs) -> list[Node]:
    """Start `count` nodes sharing `env` (one database, one Redis) in parallel."""
    nodes = [Node(env, directory / f"daphne-{i}.log", **kwargs).launch() for i in range(count)]
    try:
        for node in nodes:
            node.wait_ready()
    except Exception:
        for node in nodes:
            node.stop()
        raise
    return nodes


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def site_for_test(ports: list[int], listen_port: int) -> str:
    """deploy/nginx/virusgame.conf with the upstream on TCP ports and plain HTTP on loopback.

    Kept: the WebSocket upgrade map, the limit zones, the upstream's balancing, every proxy_*
    directive and every location. Dropped: the port-80 redirect server and the ssl_* lines.
    A change to the file's shape that breaks this breaks the test, which is the point.
    """
    text = "\n".join(line for line in SITE.read_text().splitlines() if not line.strip().startswith("#"))
    blocks = _top_level_blocks(text)
    out = []
    for head, body in blocks:
        if head.startswith("map "):
            out.append(f"{head} {{{body}}}")
        elif head.startswith("upstream "):
            servers = "".join(f"\n    server 127.0.0.1:{port} max_fails=3 fail_timeout=5s;" for port in ports)
            unix = list(re.finditer(r"\n\s*server unix:[^;]*;", body))
            assert unix, "the site's upstream lists daphne's unix sockets"
            body = (
                body[: unix[0].start()]
                + servers
                + re.sub(r"\n\s*server unix:[^;]*;", "", body[unix[0].start() :])
            )
            out.append(f"{head} {{{body}}}")
        elif head == "server" and re.search(r"listen\s+443", body):
            body = re.sub(r"\n\s*listen [^;]*;", "", body)
            body = re.sub(r"\n\s*ssl_[a-z_]+ [^;]*;", "", body)
            out.append(f"server {{\n    listen 127.0.0.1:{listen_port};{body}}}")
    assert [b.split()[0] for b in out] == ["map", "upstream", "server"], out
    zones = re.findall(r"^\s*(limit_(?:req|conn)_zone\s[^;]*;)", text, re.MULTILINE)
    return "\n\n".join([*zones, *out]) + "\n"


def _top_level_blocks(text: str) -> list[tuple[str, str]]:
    blocks, depth, start, head = [], 0, 0, ""
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                head = text[start:i].strip().split(";")[-1].strip()
                body_start = i + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                blocks.append((head, text[body_start:i]))
                start = i + 1
    return blocks


class Nginx(harness.ChildProcess):
    """nginx in the foreground, as a child of the test, never the system service."""

    def __init__(
        self,
        directory: Path,
        upstream_ports: list[int],
        port: int | None = None,
        worker_connections: int = 256,
    ):
        self.directory = directory
        self.worker_connections = worker_connections  # each player holds two: client side, daphne side
        self.port = port or harness.free_port()
        self.upstream_ports = upstream_ports
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "nginx.log"

    def write_config(self) -> Path:
        d = self.directory
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(exist_ok=True)
        (d / "site.conf").write_text(site_for_test(self.upstream_ports, self.port))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(
            f"""{user}worker_processes 1;
events {{ worker_connections {self.worker_connections}; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
"""
        )
        return conf

    def start(self, timeout: float = 10) -> "Nginx":
        conf = self.write_config()
        command = [nginx_binary(), "-p", str(self.directory), "-e", "stderr", "-c", str(conf)]
        directives = f"daemon off; pid {self.directory}/nginx.pid; error_log stderr;"
        check = subprocess.run([*command, "-t", "-g", directives], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [*command, "-g", directives], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_healthy("nginx", timeout)
        return self

    def stop(self) -> None:
        super().stop(signal.SIGTERM, timeout=5)  # fast shutdown: open sockets would delay SIGQUIT
