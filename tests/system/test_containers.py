"""The container image and the compose stack, run for real (issue 27).

A Docker daemon of the test's own (no systemd here; set DOCKER_HOST to use another one), base,
PostgreSQL, Redis and nginx images built from Debian packages (no container registry is
reachable in CI: deploy/containers/ci/build-images.sh), the app's image built by compose with
BASE pointing at that base, and compose.yaml brought up with a .env made from
deploy/containers/env.example and a self-signed certificate. Then, through nginx: the page,
/healthz, a create over HTTP and its push on a socket, a rolling restart of one daphne service
with no lost action, and `down -v` leaving nothing behind. On a failure the test prints the
logs of the services involved and of every service that is not well. CI runs it once, in a
section of its own (.ci/run); `pytest -s` prints the timings.
"""

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.harness import ROOT, Api, Client, free_port, require
from tests.support.nodes import unit_daphne_args

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

# Debian's client (docker.io): one already on PATH may lack buildx; the classic builder is used.
DOCKER = os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker")
COMPOSE = shutil.which("docker-compose")
BUILD_IMAGES = ROOT / "deploy" / "containers" / "ci" / "build-images.sh"
PREFIX = "virusgame-ci"  # the local images: virusgame-ci/base, /postgres, /redis, /nginx, /app
SERVICES = ("postgres", "redis", "migrate", "daphne1", "daphne2", "spawner", "nginx")
LONG_RUNNING = tuple(s for s in SERVICES if s != "migrate")
# compose.yaml's variables: the test's env file sets them, the caller's environment must not.
COMPOSE_VARIABLES = (
    "BASE",
    "APP_IMAGE",
    "ENV_FILE",
    "POSTGRES_PASSWORD",
    "POSTGRES_IMAGE",
    "REDIS_IMAGE",
    "NGINX_IMAGE",
    "HTTP_PORT",
    "HTTPS_PORT",
    "TLS_DIR",
    "NOFILE_LIMIT",
    "COMPOSE_FILE",
    "COMPOSE_PROJECT_NAME",
)

timings: dict[str, float] = {}


@contextlib.contextmanager
def timed(phase: str):
    started = time.monotonic()
    try:
        yield
    finally:
        timings[phase] = time.monotonic() - started


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


class DockerDaemon:
    """dockerd with data and exec roots of its own, a child of the test (there is no systemd)."""

    def __init__(self):
        # Short: containerd's socket lives under the exec root, and unix socket paths are short.
        self.root = Path(tempfile.mkdtemp(prefix="vg-docker-"))
        self.host = f"unix://{self.root}/docker.sock"
        self.log_path = self.root / "dockerd.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> str:
        argv = ["dockerd", "--data-root", f"{self.root}/data", "--exec-root", f"{self.root}/exec"]
        argv += ["--pidfile", f"{self.root}/dockerd.pid", "-H", self.host]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.process.returncode}:\n{self.log()}")
            version = subprocess.run(
                [DOCKER, "-H", self.host, "version"], capture_output=True, text=True, check=False
            )
            if version.returncode == 0:
                return self.host
            time.sleep(0.3)
        raise RuntimeError(f"dockerd did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # it stops what still runs, and its containerd
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return tail(self.log_path.read_text(errors="replace"))


def self_signed_certificate(directory: Path) -> Path:
    """Write fullchain.pem and privkey.pem for localhost (nginx's TLS_DIR); return the certificate's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory / "fullchain.pem"


def options(args: list[str]) -> dict[str, str | bool]:
    """daphne's flags as {flag: value or True}, to compare two command lines in any order."""
    found, words = {}, list(args)
    while words:
        flag = words.pop(0)
        found[flag] = words.pop(0) if words and not words[0].startswith("-") else True
    return found


class Stack:
    """compose.yaml as project `project` on the daemon at `docker_host`, with the test's env file."""

    def __init__(self, docker_host: str, directory: Path):
        self.directory = directory
        self.project = f"vgci{secrets.token_hex(3)}"
        self.https_port, self.http_port = free_port(), free_port()
        self.url = f"https://localhost:{self.https_port}"
        self.ws_url = f"wss://localhost:{self.https_port}/ws/viruses/"
        self.certificate = self_signed_certificate(directory / "tls")
        self.ssl_context = ssl.create_default_context(cafile=str(self.certificate))
        self.env_file = directory / "compose.env"
        self.env = {key: value for key, value in os.environ.items() if key not in COMPOSE_VARIABLES}
        self.env.update(DOCKER_HOST=docker_host, DOCKER=DOCKER)
        self.env.update(DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")  # the classic builder
        self.down_done = False
        self.write_env_file()

    def write_env_file(self) -> None:
        """The documented example, its blanks filled in for localhost, plus the test's images and ports."""
        text = (ROOT / "deploy" / "containers" / "env.example").read_text()
        fills = {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "DJANGO_CSRF_TRUSTED_ORIGINS": self.url,  # nginx on another port than 443
        }
        for key, value in fills.items():
            text, count = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
            assert count == 1, f"deploy/containers/env.example sets {key} once"
        text = text.replace("game.example.com", "localhost")
        # This machine's hard limit may be below compose.yaml's default (no CAP_SYS_RESOURCE here).
        nofile = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        text += (
            "\n# tests/system/test_containers.py\n"
            f"TLS_DIR={self.certificate.parent}\n"
            f"HTTP_PORT=127.0.0.1:{self.http_port}\n"
            f"HTTPS_PORT=127.0.0.1:{self.https_port}\n"
            f"BASE={PREFIX}/base\n"
            f"POSTGRES_IMAGE={PREFIX}/postgres\n"
            f"REDIS_IMAGE={PREFIX}/redis\n"
            f"NGINX_IMAGE={PREFIX}/nginx\n"
            f"APP_IMAGE={PREFIX}/app\n"
            f"ENV_FILE={self.env_file}\n"
            f"NOFILE_LIMIT={nofile}\n"
        )
        self.env_file.write_text(text)

    # --- Running docker and docker-compose ------------------------------------------------

    def compose(self, *args: str, check: bool = True, timeout: float = 600, **env: str):
        argv = [COMPOSE, "--env-file", str(self.env_file), "-p", self.project, *args]
        environment = {**self.env, **env}
        result = subprocess.run(
            argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode:
            raise AssertionError(
                f"docker-compose {' '.join(args)} exited with {result.returncode}:\n"
                f"{tail(result.stdout)}\n{tail(result.stderr)}"
            )
        return result

    def docker(self, *args: str) -> str:
        result = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result.stdout.strip()

    def containers(self) -> dict[str, str]:
        """Service -> container id (one `docker ps`: a docker-compose call costs a Python start)."""
        listing = self.docker(
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            "label=com.docker.compose.oneoff=False",
            "--format",
            '{{.Label "com.docker.compose.service"}} {{.ID}}',
        )
        return dict(line.split() for line in listing.splitlines())

    def inspect(self, service: str) -> dict:
        return json.loads(self.docker("inspect", self.containers()[service]))[0]

    def states(self) -> dict[str, str]:
        """Each service's running/healthy, running/starting, exited/0, ..., or missing."""
        ids = self.containers()
        found = (
            {c["Id"]: c["State"] for c in json.loads(self.docker("inspect", *ids.values()))} if ids else {}
        )
        states = {}
        for service in SERVICES:
            state = found.get(ids.get(service, ""))
            if state is None:
                states[service] = "missing"
            elif state["Status"] != "running":
                states[service] = f"{state['Status']}/{state['ExitCode']}"
            else:
                states[service] = f"running/{state.get('Health', {}).get('Status', 'no healthcheck')}"
        return states

    def logs(self, service: str, lines: int = 80) -> str:
        return self.compose("logs", "--no-color", "--tail", str(lines), service, check=False).stdout

    def unwell(self, states: dict[str, str]) -> list[str]:
        """Services that are not as they should be: the migration exited 0, the others running healthy."""
        expected = dict.fromkeys(LONG_RUNNING, "running/healthy") | {"migrate": "exited/0"}
        return [service for service, state in states.items() if state != expected[service]]

    @contextlib.contextmanager
    def step(self, name: str, *services: str):
        """On a failure inside, print the logs of `services` and of every service that is not well."""
        try:
            yield
        except BaseException:
            try:
                states = self.states()
                culprits = sorted(set(services) | set(self.unwell(states)))
                print(f"\n=== {name} failed; states: {', '.join(f'{s}={v}' for s, v in states.items())}")
                for service in culprits:
                    print(f"--- docker-compose logs {service}\n{self.logs(service)}")
            except Exception as exc:  # the stack itself may be what broke
                print(f"(no logs: {exc})")
            raise

    # --- The stack's life --------------------------------------------------------------------

    def build_images(self) -> None:
        """The local images, one after the other: side by side they took longer on 2 cores."""
        compose = [COMPOSE, "--env-file", str(self.env_file), "-p", self.project]
        with timed("base image (mmdebstrap | docker import)"):
            self._build("base", [str(BUILD_IMAGES), "base", PREFIX])
        with timed("postgres, redis and nginx images (apt-get on the base)"):
            self._build("services", [str(BUILD_IMAGES), "services", PREFIX])
        with timed("app image (docker-compose build, BASE: the local base)"):
            self._build("app", [*compose, "build", "migrate"])

    def _build(self, name: str, argv: list[str]) -> None:
        log_path = self.directory / f"build-{name}.log"
        with open(log_path, "wb") as log:
            build = subprocess.run(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=900
            )
        output = tail(log_path.read_text(errors="replace"))
        assert build.returncode == 0, (
            f"building the {name} image(s) exited with {build.returncode}:\n{output}"
        )

    def up(self) -> None:
        with self.step("up", *SERVICES):
            with timed("up -d (compose waits for healthy dependencies)"):
                self.compose("up", "-d", timeout=300)
            with timed("every service healthy"):
                self.wait_healthy(LONG_RUNNING, timeout=120)

    def wait_healthy(self, services: tuple[str, ...], timeout: float) -> None:
        """Poll the health checks (Debian's docker-compose is v1, without `up --wait`)."""
        deadline = time.monotonic() + timeout
        while True:
            states = {service: state for service, state in self.states().items() if service in services}
            if all(state == "running/healthy" for state in states.values()):
                return
            stopped = [s for s, state in states.items() if not state.startswith("running")]
            assert not stopped and time.monotonic() < deadline, f"not healthy within {timeout} s: {states}"
            time.sleep(0.5)

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", timeout=180)
        self.down_done = True

    # --- Clients, through nginx ------------------------------------------------------------

    def api(self, *, asynchronous: bool = False) -> Api:
        """The tests' HTTP API client (the CSRF cookie from the page), trusting nginx's certificate."""
        api = Api(self.url, asynchronous=asynchronous)
        unused, client_class = api.client, httpx.AsyncClient if asynchronous else httpx.Client
        api.client = client_class(base_url=self.url, timeout=30, verify=self.ssl_context)
        if not asynchronous:
            unused.close()
        return api

    @contextlib.asynccontextmanager
    async def player(self):
        """A socket that has read its snapshot."""
        async with websockets.connect(
            self.ws_url, origin=self.url, ssl=self.ssl_context, max_size=None, open_timeout=10
        ) as ws:
            client = Client(ws)
            first = await client.recv()
            assert first["type"] == "snapshot", first
            yield client


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """compose.yaml up and healthy on images built here; down and the daemon gone afterwards."""
    require(COMPOSE is not None, "docker-compose is not installed (apt-get install docker-compose)")
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap is missing (apt-get install mmdebstrap)")
    own_daemon = not os.environ.get("DOCKER_HOST")
    if own_daemon:
        require(shutil.which("dockerd") is not None, "dockerd is not installed (apt-get install docker.io)")
        require(os.geteuid() == 0, "a Docker daemon of the test's own needs root (or set DOCKER_HOST)")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise, with -s
    daemon = DockerDaemon() if own_daemon else None
    stack = None
    started = time.monotonic()
    try:
        with timed("dockerd ready"):
            host = daemon.start() if daemon else os.environ["DOCKER_HOST"]
        stack = Stack(host, tmp_path_factory.mktemp("containers"))
        stack.build_images()
        stack.up()
        yield stack
    finally:
        if stack and not stack.down_done:
            with timed("down -v (teardown)"):
                stack.compose("down", "-v", "--remove-orphans", check=False, timeout=180)
        if daemon:
            with timed("dockerd stopped"):
                daemon.stop()
        timings["whole cycle"] = time.monotonic() - started
        print("\ncontainer test timings (s):")
        for phase, seconds in timings.items():
            print(f"  {seconds:7.1f}  {phase}")


def test_the_page_and_healthz_answer_through_nginx(stack):
    with stack.step("page and /healthz", "nginx", "daphne1", "daphne2"):
        with httpx.Client(base_url=stack.url, verify=stack.ssl_context, timeout=30) as client:
            page = client.get("/")
            assert page.status_code == 200, page.text[:300]
            assert 'id="add-virus"' in page.text
            health = client.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"database": "ok", "channel_layer": "ok"})
        # The kit's port-80 server only redirects.
        plain = httpx.get(f"http://localhost:{stack.http_port}/", timeout=30)
        assert plain.status_code == 301, plain.text[:300]
        assert plain.headers["location"].startswith("https://localhost")


async def test_a_create_over_http_is_pushed_on_a_socket(stack):
    with stack.step("create and push", "nginx", "daphne1", "daphne2"):
        async with stack.player() as client:
            api = stack.api()
            response = await asyncio.to_thread(lambda: api.start().create())
            api.close()
            assert response.status_code == 201, response.text
            virus = response.json()
            pushed = await client.until(
                lambda m: m["type"] == "virus.created" and m["virus"]["id"] == virus["id"], timeout=10
            )
            assert pushed["virus"] == virus


def test_the_image_runs_daphne_as_a_non_root_user_with_a_working_healthcheck(stack):
    with stack.step("image", "daphne1"):
        container = stack.inspect("daphne1")
        image = json.loads(stack.docker("image", "inspect", container["Image"]))[0]["Config"]
        print(
            "\n"
            + stack.docker(
                "inspect",
                "--format",
                "{{.Name}} user={{.Config.User}} health={{.State.Health.Status}} "
                "exit codes of the last checks={{range .State.Health.Log}}{{.ExitCode}}{{end}}",
                container["Id"],
            )
        )
        print(json.dumps({k: image[k] for k in ("User", "Healthcheck", "StopSignal", "Entrypoint", "Cmd")}))
        assert image["User"] == "10001:10001"
        assert stack.compose("exec", "-T", "daphne1", "id", "-u").stdout.strip() == "10001"
        assert "healthcheck.py" in " ".join(image["Healthcheck"]["Test"])
        assert container["State"]["Health"]["Status"] == "healthy"
        assert container["State"]["Health"]["Log"][-1]["ExitCode"] == 0
        assert image["StopSignal"] == "SIGTERM"
        # The systemd unit's flags; the entrypoint adds the socket and --proxy-headers.
        command = image["Cmd"]
        assert command[0] == "daphne" and command[-1] == "virusgame.asgi:application"
        assert options(command[1:-1]) | {"--proxy-headers": True} == options(unit_daphne_args())


def test_the_production_settings_pass_check_deploy(stack):
    with stack.step("check --deploy", "daphne1"):
        check = stack.compose(
            "exec", "-T", "daphne1", "python", "manage.py", "check", "--deploy", "--fail-level", "WARNING"
        )
        assert "no issues" in check.stdout + check.stderr


def test_the_documented_backup_dumps_the_game(stack):
    with stack.step("pg_dump", "postgres"):
        # docs/production.md, "With containers": the same command, in plain SQL here to read it.
        dump = stack.compose("exec", "-T", "postgres", "pg_dump", "-U", "virusgame", "virusgame").stdout
        assert "CREATE TABLE public.viruses_virus" in dump
        assert "COPY public.viruses_virus" in dump


def test_without_a_certificate_nginx_serves_plain_http(stack):
    empty = stack.directory / "no-tls"
    empty.mkdir()
    with stack.step("plain-HTTP site", "nginx"):
        result = stack.compose("run", "--rm", "--no-deps", "nginx", "nginx", "-t", TLS_DIR=str(empty))
        output = result.stdout + result.stderr
        assert "plain HTTP on port 80 only" in output
        assert "test is successful" in output


async def read_until_closed(ws) -> int | None:
    """Read everything until the socket closes; return its close code."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass
    return ws.close_code


async def test_a_rolling_restart_of_one_daphne_service_loses_no_action(stack):
    with stack.step("rolling restart", "nginx", "daphne1", "daphne2"):
        statuses, created = [], []
        stop = asyncio.Event()

        async def create_continuously():
            # Well under the rate limit (VIRUS_RATE_LIMIT: 180 a minute, bursts of 20).
            async with stack.api(asynchronous=True) as api:
                while not stop.is_set():
                    response = await api.create()
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        created.append(response.json()["id"])
                    await asyncio.sleep(0.25)

        async with contextlib.AsyncExitStack() as sockets:
            # Four sockets: nginx's least_conn puts some on each service.
            clients = [await sockets.enter_async_context(stack.player()) for _ in range(4)]
            closes = [asyncio.create_task(read_until_closed(client.ws)) for client in clients]
            creator = asyncio.create_task(create_continuously())
            await asyncio.sleep(1)
            with timed("docker-compose restart daphne1 (drain, stop, start)"):
                await asyncio.to_thread(stack.compose, "restart", "daphne1")
            with timed("daphne1 healthy again"):
                await asyncio.to_thread(stack.wait_healthy, ("daphne1",), 60)
            await asyncio.sleep(2)
            stop.set()
            await creator
            restarted = [task.result() for task in closes if task.done()]
        await asyncio.gather(*closes)
        assert statuses and set(statuses) == {201}, Counter(statuses)
        # The drain told the restarted service's players to reconnect elsewhere at once.
        assert 1012 in restarted, restarted
        async with stack.player() as client:
            assert set(created) <= set(client.viruses)
        api = stack.api()
        listed = {virus["id"] for virus in api.start().list()["viruses"]}
        api.close()
        assert set(created) <= listed
        print(f"\nrolling restart: {len(created)} creates through nginx, all 201; socket closes {restarted}")


def test_down_v_leaves_nothing_behind(stack):
    with stack.step("down -v"):
        with timed("down -v"):
            stack.down()
        label = f"label=com.docker.compose.project={stack.project}"
        assert stack.docker("ps", "-aq", "--filter", label) == ""
        assert stack.docker("volume", "ls", "-q", "--filter", label) == ""
        assert stack.docker("network", "ls", "-q", "--filter", label) == ""
