"""Production mode and hardening, on real processes: check --deploy, `make serve`, daphne
run with the deploy kit's flags, security headers, WebSocket limits, logs, game_status."""

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import websockets
import websockets.sync.client

from tests.support import harness, nodes
from tests.support.harness import close_code, player
from tools import servers
from tools.gameclient import decode
from viruses import broadcast, logs, messages

pytestmark = pytest.mark.timeout(120)

ENV_EXAMPLE = harness.ROOT / "deploy" / "env.example"


def documented_env() -> dict[str, str]:
    """deploy/env.example as docs/production.md installs it (a real secret key)."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("'")
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`manage.py` with `env` alone as the project's settings (none leak in from ours)."""
    env = {**servers.clean_environ(), **env}
    return servers.manage(env, *args, capture_output=True, text=True, timeout=60)


def test_check_deploy_is_clean_for_the_documented_production_environment():
    env = documented_env()
    assert env["DJANGO_DEBUG"] == "false"
    result = run_manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

    # The check has teeth: the same environment with debug on fails it.
    result = run_manage({**env, "DJANGO_DEBUG": "true"}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W018" in result.stderr


def test_check_warns_when_secure_cookies_have_no_https_setting():
    env = documented_env()
    https = ("DJANGO_BEHIND_TLS_PROXY", "DJANGO_SECURE_SSL_REDIRECT")
    plain = {k: v for k, v in env.items() if k not in https}
    result = run_manage(plain, "check")
    assert result.returncode == 0  # a warning: the server may still start
    assert "viruses.W002" in result.stderr and "DJANGO_BEHIND_TLS_PROXY=true" in result.stderr
    for fixed in [
        {"DJANGO_BEHIND_TLS_PROXY": "true"},
        {"DJANGO_SECURE_SSL_REDIRECT": "true"},
        {"DJANGO_SECURE_COOKIES": "false"},
    ]:
        assert "viruses.W002" not in run_manage({**plain, **fixed}, "check").stderr, fixed


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = documented_env()
    del env["DJANGO_SECRET_KEY"]
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_make_serve_migrates_collects_static_and_serves_with_debug_off(game_env, tmp_path):
    port = harness.free_port()
    static_root = tmp_path / "static"
    env = {**game_env, "DJANGO_STATIC_ROOT": str(static_root)}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    # -o: never rebuild the virtualenv from here; `make test` has just made sure of it.
    process = subprocess.Popen(
        # Two processes, not one per core: a CI runner may have many.
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/.installed",
            "serve",
            f"SERVE_PORT={port}",
            "SERVE_PROCESSES=2",
        ],
        cwd=harness.ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        page = httpx.get(base + "/")
        assert page.status_code == 200
        hashed = re.search(r'href="(/static/viruses/game\.[0-9a-f]{12}\.css)"', page.text)
        assert hashed, "collectstatic ran and the page links the hashed file"
        asset = httpx.get(base + hashed.group(1))
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        missing = httpx.get(base + "/no-such-page")
        assert missing.status_code == 404
        assert "Traceback" not in missing.text and "URLconf" not in missing.text  # DEBUG is off
        assert (static_root / "staticfiles.json").exists()
        # No message-size flag: it would cap the snapshots daphne sends (docs/production.md, section 3).
        assert "--websocket-max-message-size" not in (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
        log.close()


def daphne_children(pid: int) -> list[int]:
    """The daphne processes the supervisor `pid` runs (its children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"daphne" in Path(f"/proc/{c}/cmdline").read_bytes()]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return result


def healthy(base: str, timeout: float = 2) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_runs_one_daphne_per_process_on_one_port_and_restarts_one_that_dies(game_env, tmp_path):
    port = harness.free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    supervisor = subprocess.Popen(
        [
            servers.PYTHON,
            "-m",
            "virusgame.serve",
            "--processes",
            "2",
            "-p",
            str(port),
            "virusgame.asgi:application",
        ],
        cwd=harness.ROOT,
        env=game_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(base), 60, (tmp_path / "serve.log").read_text())
        first = wait_for(
            lambda: len(daphne_children(supervisor.pid)) == 2 and daphne_children(supervisor.pid), 30, "2"
        )
        # Players on the one port land on both processes (each records its sockets as its own);
        # 16 sockets (under the per-address cap) all on one process would be a 1 in 32,768 chance.
        with contextlib.ExitStack() as stack:
            for _ in range(16):
                url = f"ws://127.0.0.1:{port}/ws/viruses/"
                ws = stack.enter_context(websockets.sync.client.connect(url, origin=base))
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            code = (
                "from viruses.models import Connection\n"
                "print(Connection.objects.values('server').distinct().count())"
            )
            answer = servers.manage(game_env, "shell", "-c", code, capture_output=True, text=True, check=True)
            assert answer.stdout.split()[-1] == "2"
        # One process dies: the port keeps answering (a connection meant for the dead one
        # waits in its socket's queue for the restart: no refusal, no reset), and the
        # supervisor starts another.
        os.kill(first[0], signal.SIGKILL)
        for _ in range(10):
            assert healthy(base, timeout=20)
        wait_for(lambda: set(daphne_children(supervisor.pid)) - set(first), 30, "no new daphne process")
        wait_for(lambda: len(daphne_children(supervisor.pid)) == 2, 30, "not back to 2 processes")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        log.close()


def test_deploy_kit_runs_daphne_with_the_flags_that_matter():
    unit = nodes.unit_daphne_args()
    assert "--proxy-headers" in unit
    ping = int(unit[unit.index("--ping-interval") + 1])
    site = nodes.SITE.read_text()
    assert int(re.search(r"proxy_read_timeout (\d+)s;", site).group(1)) > ping
    assert "X-Forwarded-For   $remote_addr;" in site  # overwritten, never appended
    # daphne's message-size limit caps what it sends too: a full playground's snapshot
    # must never meet a lowered one (docs/production.md, section 3; check viruses.E001).
    for launcher in [" ".join(unit), (harness.ROOT / "Procfile").read_text(), harness.ROOT / "Makefile"]:
        text = launcher.read_text() if isinstance(launcher, Path) else launcher
        assert "--websocket-max-message-size" not in text


def test_deploy_kit_spawns_three_per_minute_once_per_window_everywhere():
    flags = "spawn_virus --count 3 --spread 55 --once-per 60"
    for path in [
        "deploy/cron/virusgame",
        "deploy/systemd/virusgame-spawner.service",
        "Procfile",
        "docs/production.md",
        "README.md",
    ]:
        assert flags in (harness.ROOT / path).read_text(), path


# --- Security headers -----------------------------------------------------------------


def test_security_headers_on_the_page_and_the_api(game):
    api = game.api()
    page = api.client.get("/")
    for response in (page, api.client.get("/api/viruses/"), api.create()):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # Nothing inline for the policy to block: no <script> or <style> bodies, no handlers.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert "<style" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)


BROWSE_UNDER_CSP = """
import json, sys
from playwright.sync_api import sync_playwright

url, chromium, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=chromium, args=args)
    page = browser.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(url)
    page.wait_for_selector('#connection-status[data-state="open"]', timeout=15000)
    page.click("#add-virus")
    page.wait_for_selector("#playground button[data-virus-id]", timeout=10000)
    print(json.dumps({"csp": response.headers.get("content-security-policy"), "console": console}))
    browser.close()
"""


@pytest.mark.e2e
def test_the_page_works_under_its_content_security_policy(game):
    harness.require(Path(harness.CHROMIUM).exists(), "Chromium is not installed")
    # A process of its own: Playwright's sync API cannot share this one's event loops.
    result = subprocess.run(
        [
            harness.PYTHON,
            "-c",
            BROWSE_UNDER_CSP,
            game.url + "/",
            harness.CHROMIUM,
            json.dumps(harness.CHROMIUM_ARGS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert "default-src 'self'" in seen["csp"]
    assert not [text for text in seen["console"] if "Content Security Policy" in text], seen["console"]


# --- WebSocket hardening --------------------------------------------------------------


async def test_websocket_origin_allow_list_comes_from_settings(start_node):
    node = start_node(DJANGO_WS_ALLOWED_ORIGINS="https://game.example.com")
    async with websockets.connect(node.ws_url, origin="https://game.example.com") as ws:
        assert decode(await ws.recv())[0]["type"] == "snapshot"
    async with websockets.connect(node.ws_url, origin="https://game.example.com:443") as ws:
        assert decode(await ws.recv())[0]["type"] == "snapshot"
    # Host names in DJANGO_ALLOWED_HOSTS no longer suffice, nor another scheme, port or no Origin.
    for origin in [
        "http://game.example.com",
        "https://game.example.com:8443",
        node.url,
        "https://evil.example",
        None,
    ]:
        assert await handshake_status(node.ws_url, origin) == 403, origin


async def test_by_default_a_websocket_must_come_from_the_page_s_own_origin(game):
    async with websockets.connect(game.ws_url, origin=game.url) as ws:  # http://127.0.0.1:<port>
        assert decode(await ws.recv())[0]["type"] == "snapshot"
    # Another port, scheme or host of the same machine is another site.
    for origin in [
        "http://127.0.0.1:1",
        "http://localhost:1",
        f"https://127.0.0.1:{game.port}",
        f"http://localhost:{game.port}",
        "https://localhost:8443",
        "https://localhost.evil.example",
        None,
    ]:
        assert await handshake_status(game.ws_url, origin) == 403, origin


async def test_behind_the_tls_proxy_the_page_s_origin_is_https(start_node):
    node = start_node(DJANGO_BEHIND_TLS_PROXY="true")
    https = {"X-Forwarded-Proto": "https"}
    page = f"https://127.0.0.1:{node.port}"  # the Host the handshake is sent with
    async with websockets.connect(node.ws_url, origin=page, additional_headers=https) as ws:
        assert decode(await ws.recv())[0]["type"] == "snapshot"
    for origin, headers in [(node.url, https), (page, {"X-Forwarded-Proto": "http"}), (page, None)]:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(node.ws_url, origin=origin, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403, (origin, headers)


async def test_a_full_playground_of_2000_viruses_reaches_a_new_socket_in_one_snapshot(start_node):
    node = start_node(VIRUS_MAX_ALIVE="2000")  # the systemd unit's flags
    fill = "from viruses import services\nfor _ in range(2000): services.virus_create()"
    await asyncio.to_thread(node.manage, "shell", "-c", fill, timeout=120)
    async with player(node) as alice:
        assert len(alice.viruses) == 2000  # ~250 KB, far over the old 64 KiB flag
        await alice.send({"type": "resync"})
        again = await alice.recv()
        assert again["type"] == "snapshot" and len(again["viruses"]) == 2000


def test_check_refuses_a_playground_whose_snapshot_cannot_be_sent():
    env = documented_env()
    assert run_manage({**env, "VIRUS_MAX_ALIVE": "6000"}, "check").returncode == 0
    result = run_manage({**env, "VIRUS_MAX_ALIVE": "9000"}, "check")
    assert result.returncode != 0
    assert "viruses.E001" in result.stderr and "VIRUS_MAX_ALIVE=9000" in result.stderr
    # The hint's way out works: the limit daphne is told to use, in the setting too.
    raised = {**env, "VIRUS_MAX_ALIVE": "9000", "VIRUS_WS_MAX_MESSAGE_SIZE": "2000000"}
    assert run_manage(raised, "check").returncode == 0
    fewer = {**env, "VIRUS_MAX_ALIVE": "3000", "VIRUS_WS_MAX_MESSAGE_SIZE": "65536"}
    assert "viruses.E001" in run_manage(fewer, "check").stderr


async def test_connections_per_client_address_are_capped(start_node):
    node = start_node(VIRUS_MAX_CONNECTIONS_PER_ADDRESS="2")

    def connect(address):
        return websockets.connect(
            node.ws_url, origin=node.url, additional_headers={"X-Forwarded-For": address}
        )

    async with connect("203.0.113.7") as first, connect("203.0.113.7") as second:
        for ws in (first, second):
            assert decode(await ws.recv())[0]["type"] == "snapshot"
        async with connect("203.0.113.7") as third:
            assert await close_code(third) == 1008
        async with connect("203.0.113.8") as other:  # another player is not affected
            assert decode(await other.recv())[0]["type"] == "snapshot"
        await first.close()
        for _ in range(50):  # the closed socket's row goes within moments
            async with connect("203.0.113.7") as again:
                try:
                    assert decode(await asyncio.wait_for(again.recv(), 10))[0]["type"] == "snapshot"
                    break
                except websockets.ConnectionClosed:
                    pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("a freed slot was not reusable")
    refused = [logs.parse(line) for line in node.read_log().splitlines() if "event=ws.refused" in line]
    assert refused and refused[0]["client"] == "203.0.113.7" and refused[0]["limit"] == "2"


# --- Logs --------------------------------------------------------------------------------


async def test_no_message_bodies_in_logs(start_node):
    marker = f"SECRET-{secrets.token_hex(8)}"
    node = start_node(LOG_LEVEL="DEBUG")
    async with player(node) as alice:
        await alice.send({"type": marker})
        assert marker in (await alice.recv())["error"]  # told to the client, never logged
        await alice.send(f"not json {marker}")
        await alice.recv()
        await alice.send({"type": "resync", "note": marker})
        await alice.recv()
    api = node.api()
    api.client.post("/api/viruses/", content=marker, headers=api.headers())
    api.client.post("/api/viruses/", content=marker)  # refused by CSRF, and logged as such
    await asyncio.sleep(0.5)
    log = node.read_log()
    assert "event=ws.connect" in log and "event=http.csrf_refused" in log
    assert marker not in log


async def test_structured_lines_for_connects_pushes_and_disconnects(start_node):
    node = start_node(DJANGO_ALLOWED_HOSTS="127.0.0.1")
    async with player(node) as alice:
        node.api().create()
        await alice.until(lambda m: m["type"] == "virus.created")
    await asyncio.sleep(0.5)
    events = {}
    for line in node.read_log().splitlines():
        fields = logs.parse(line)
        if "event" in fields:
            assert fields["ts"] and fields["level"] and fields["logger"], line
            events.setdefault(fields["event"], []).append(fields)
    connect = events["ws.connect"][0]
    assert connect["client"] == "127.0.0.1" and connect["channel"] and connect["server"]
    assert any(p["type"] == "virus.created" and p["seq"] == "1" for p in events["push"])
    assert events["ws.disconnect"][0]["channel"] == connect["channel"]
    assert "code" in events["ws.disconnect"][0] and "seconds" in events["ws.disconnect"][0]


def test_log_fields_quote_what_needs_quoting():
    line = logs.kv("x", a="plain", b="two words", c='say "hi"', d=None, e=1.23456)
    assert line == 'event=x a=plain b="two words" c="say \\"hi\\"" d=- e=1.235'
    assert logs.parse(line) == {
        "event": "x",
        "a": "plain",
        "b": "two words",
        "c": 'say "hi"',
        "d": "-",
        "e": "1.235",
    }


async def test_channel_layer_drops_are_logged_as_structured_lines(redis_server, caplog):
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=f"drop{secrets.token_hex(4)}", capacity=1)
    stuck = await layer.new_channel()  # a consumer that never reads (a frozen client)
    await layer.group_add("viruses", stuck)
    with caplog.at_level(logging.INFO, logger="channels_redis.core"):
        for _ in range(3):
            await layer.group_send("viruses", {"type": "presence", "text": "{}"})
    drops = [logs.parse(r.getMessage()) for r in caplog.records if "layer.drop" in r.getMessage()]
    assert drops and drops[0] == {"event": "layer.drop", "dropped": "1", "channels": "1", "group": "viruses"}
    await layer.flush()
    await layer.close_pools()


async def test_failed_pushes_are_logged_as_errors(monkeypatch, caplog):
    class DownLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(broadcast, "get_channel_layer", DownLayer)
    with caplog.at_level(logging.INFO, logger="viruses.broadcast"):
        assert not await broadcast.apush(messages.killed_event(seq=7, virus_id="x"))
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert logs.parse(record.getMessage()) == {
        "event": "push.error",
        "type": "virus.killed",
        "seq": "7",
        "error": "ConnectionError: redis is down",
    }


# --- game_status -------------------------------------------------------------------------


async def test_game_status_shows_live_counts(game):
    async with player(game), player(game) as bob:
        for _ in range(2):
            game.api().create()
        await bob.until(lambda m: m.get("seq") == 2)
        # A row left by a server that died long ago (its heartbeat stopped).
        code = (
            "from datetime import timedelta; from django.utils import timezone; "
            "from viruses.models import Connection; "
            "Connection.objects.create(channel_name='dead.1', server='gone:1:abc', "
            "last_seen=timezone.now() - timedelta(minutes=5))"
        )
        await asyncio.to_thread(game.manage, "shell", "-c", code)
        result = await asyncio.to_thread(game.manage, "game_status", "--json")
        text = (await asyncio.to_thread(game.manage, "game_status")).stdout
    status = json.loads(result.stdout)
    assert status["seq"] == 2 and status["viruses"] == 2 and status["max_alive"] == 100
    assert status["online"] == 2 and status["stale"] == 1
    states = {s["server"]: (s["state"], s["connections"]) for s in status["servers"]}
    assert states.pop("gone:1:abc") == ("stale", 1)
    assert list(states.values()) == [("alive", 2)]
    assert text.splitlines()[0] == "seq=2 viruses=2 max_alive=100 online=2 stale=1"
    assert "server=gone:1:abc state=stale connections=1" in text


def backends(database_url: str) -> set[int]:
    """The PostgreSQL server processes connected to the game's database now."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    return {pid for (pid,) in rows}


@pytest.mark.skipif(not servers.uses_postgres(), reason="needs PostgreSQL (DATABASE_URL)")
@pytest.mark.parametrize("pool_size", ["3", "0"])
def test_postgres_connections_are_pooled_across_requests(start_node, pool_size):
    node = start_node(DATABASE_POOL_SIZE=pool_size)
    api = node.api()
    seen = []
    for _ in range(20):
        virus = api.create().json()
        assert api.kill(virus["id"]).status_code == 204
        seen.append(backends(node.env["DATABASE_URL"]))
    if pool_size == "0":  # a connection per request, closed after it
        assert not set.intersection(*seen)
        return
    # The same few connections serve every request, and stay open between them.
    assert len(set.union(*seen)) <= 3
    assert set.intersection(*seen)


async def handshake_status(ws_url: str, origin: str | None) -> int:
    """The HTTP status a WebSocket handshake from `origin` is refused with (101: accepted)."""
    try:
        async with websockets.connect(ws_url, origin=origin):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
