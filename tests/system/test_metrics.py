"""`/metrics` on real daphne: the counters move as players act, and outsiders read nothing."""

import asyncio
import json
import logging
import re
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import websockets
from channels_redis.core import RedisChannelLayer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.support import harness, nodes
from tests.support.delivery import TcpProxy, sqlite_path, wait_for
from tests.support.harness import player, push_until_slow_reader, uses_postgres
from tools.local_redis import LocalRedis
from tools.servers import Api
from viruses.live.consumers import flood_limit

pytestmark = pytest.mark.timeout(120)

TOKEN = "metrics-test-token-0123456789abcdef"


def scrape(server, token: str = TOKEN) -> dict[tuple, float]:
    """The process's samples as {(name, (label, value), ...): value}."""
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, *sorted(labels.items())), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_counters_move_as_players_connect_act_get_refused_resync_and_leave(start_game):
    server = start_game(METRICS_TOKEN=TOKEN, VIRUS_MAX_CONNECTIONS_PER_ADDRESS="2")
    before = scrape(server)
    assert value(before, "virusgame_ws_open") == 0
    async with player(server) as first, player(server) as second:
        during = scrape(server)
        assert value(during, "virusgame_ws_open") == 2
        assert moved(before, during, "virusgame_ws_connects_total") == 2
        assert 0 <= value(during, "virusgame_presence_heartbeat_age_seconds") < 60
        # Each open socket keeps at least its own task on the server's loop.
        assert value(during, "virusgame_asyncio_tasks") >= value(before, "virusgame_asyncio_tasks") + 2 > 2

        # A third socket from the same address is over the cap: refused, and counted by reason.
        async with websockets.connect(server.ws_url, origin=server.url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 1008

        async with Api(server.url, asynchronous=True) as api:
            virus = (await api.create()).json()
            await first.until(lambda m: m.get("seq") == 1)
            assert (await api.kill(virus["id"])).status_code == 204
            assert (await api.kill(virus["id"])).status_code == 404
            await second.until(lambda m: m.get("seq") == 2)
        await first.send({"type": "resync"})
        await first.until(lambda m: m["type"] == "snapshot")
        # The same actions over the socket are counted apart, by path.
        created = await first.act({"type": "create", "ref": "c"})
        assert created["status"] == 201
        assert (await first.act({"type": "kill", "id": created["virus"]["id"], "ref": "k"}))["status"] == 204
        assert (await second.act({"type": "kill", "id": created["virus"]["id"], "ref": "k"}))["status"] == 404
        if second.seq < 4:  # its 404 may have come after the kill's push, or before
            await second.until(lambda m: second.seq == 4)
        after = scrape(server)

    assert moved(before, after, "virusgame_ws_refusals_total", reason="connections_per_address") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="create", status="201") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="kill", status="204") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="kill", status="404") == 1
    for action, status in (("create", "201"), ("kill", "204"), ("kill", "404")):
        assert (
            moved(before, after, "virusgame_actions_total", path="socket", action=action, status=status) == 1
        )
    assert moved(before, after, "virusgame_pushes_total", type="virus.created", result="ok") == 2
    assert moved(before, after, "virusgame_pushes_total", type="virus.killed", result="ok") == 2
    assert moved(before, after, "virusgame_push_seconds_count") >= 2  # presence pushes count too
    assert moved(before, after, "virusgame_push_seconds_sum") > 0
    assert moved(before, after, "virusgame_ws_resyncs_total") == 1

    # Both players left: the gauge falls back, the disconnects are counted by close code.
    await wait_for(lambda: value(scrape(server), "virusgame_ws_open") == 0, 10, "sockets closed")
    gone = scrape(server)
    assert moved(before, gone, "virusgame_ws_disconnects_total", code="1000") == 2
    assert value(gone, "virusgame_presence_heartbeat_age_seconds") == 0
    assert value(gone, "virusgame_asyncio_tasks") < value(during, "virusgame_asyncio_tasks")
    assert value(gone, "process_resident_memory_bytes") > 0  # the client's process metrics too


async def test_sockets_the_server_closes_are_counted_by_reason(start_game):
    server = start_game(METRICS_TOKEN=TOKEN)
    before = scrape(server)
    async with websockets.connect(server.ws_url, origin=server.url) as ws:  # a flood: 1008
        for _ in range(flood_limit() + 1):
            await ws.send('{"type": "resync"}')
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    # A client that stops reading while changes keep coming: 1013.
    async with websockets.connect(server.ws_url, origin=server.url, max_size=None, max_queue=1):
        await push_until_slow_reader(server)
    after = scrape(server)
    assert moved(before, after, "virusgame_ws_server_closes_total", reason="flood") == 1
    assert moved(before, after, "virusgame_ws_server_closes_total", reason="slow_reader") == 1


async def test_redis_errors_and_failed_pushes_are_counted(start_game, tmp_path):
    redis = LocalRedis(tmp_path / "private-redis").start()
    try:
        server = start_game(METRICS_TOKEN=TOKEN, REDIS_URL=redis.url, VIRUS_RATE_LIMIT="1000")
        async with Api(server.url, asynchronous=True) as api:
            before = scrape(server)
            redis.stop()
            assert (await api.create()).status_code == 201  # the database still takes it
            after = scrape(server)
            redis.start()
    finally:
        redis.stop()
    assert moved(before, after, "virusgame_pushes_total", type="virus.created", result="error") == 1
    assert moved(before, after, "virusgame_backend_errors_total", backend="redis", event="push.error") == 1
    assert (
        moved(before, after, "virusgame_backend_errors_total", backend="redis", event="ratelimit.unavailable")
        == 1
    )
    assert moved(before, after, "virusgame_actions_total", path="http", action="create", status="201") == 1


async def test_database_errors_are_counted(start_game):
    """The database goes away (PostgreSQL: its proxy is cut; SQLite: another writer holds the lock)."""
    env = {"METRICS_TOKEN": TOKEN}
    proxy = lock = None
    if uses_postgres():
        url = urlsplit(start_game.env["DATABASE_URL"])
        proxy = await TcpProxy(url.hostname, url.port or 5432).start()
        env["DATABASE_URL"] = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    server = await asyncio.to_thread(start_game, **env)
    async with Api(server.url, asynchronous=True) as api:
        before = await asyncio.to_thread(scrape, server)
        if proxy:
            await proxy.stop()
        else:
            lock = sqlite3.connect(sqlite_path(server.env), isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
        try:
            assert (await api.create()).status_code == 503
        finally:
            if lock:
                lock.rollback()
                lock.close()
        after = await asyncio.to_thread(scrape, server)
    assert moved(before, after, "virusgame_backend_errors_total", backend="database", event="http.error") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="create", status="503") == 1


async def test_messages_the_layer_drops_for_a_full_channel_are_counted(redis_server, caplog):
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=f"drop{uuid.uuid4().hex[:8]}", capacity=1)
    stuck = await layer.new_channel()  # a consumer that never reads (a frozen client)
    await layer.group_add("viruses", stuck)
    before = REGISTRY.get_sample_value("virusgame_layer_dropped_messages_total")
    with caplog.at_level(logging.INFO, logger="channels_redis.core"):
        for _ in range(3):
            await layer.group_send("viruses", {"type": "presence", "text": "{}"})
    assert REGISTRY.get_sample_value("virusgame_layer_dropped_messages_total") - before == 2
    await layer.flush()
    await layer.close_pools()


def test_the_dashboard_and_the_documented_queries_name_only_exported_metrics(start_game):
    server = start_game(METRICS_TOKEN=TOKEN)
    text = get_metrics(server, Authorization=f"Bearer {TOKEN}").text
    exported = set()
    suffixes_of = {"counter": ["_total"], "histogram": ["", "_bucket", "_sum", "_count"]}
    for family in text_string_to_metric_families(text):
        suffixes = suffixes_of.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    dashboard = json.loads((harness.ROOT / "deploy" / "grafana" / "virusgame.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    docs = (harness.ROOT / "docs" / "production.md").read_text()
    named = set(re.findall(r"\b(?:virusgame|process)_[a-z_]+", " ".join(queries) + docs))
    assert named and named <= exported, named - exported


def get_metrics(server, **headers: str) -> httpx.Response:
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)


def test_the_endpoint_is_off_unless_configured(game):
    response = get_metrics(game, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 404
    assert "virusgame_" not in response.text


def test_without_the_token_or_with_a_wrong_one_nothing_is_served(start_game):
    server = start_game(METRICS_TOKEN=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": TOKEN}):
        response = get_metrics(server, **headers)
        assert response.status_code == 403, headers
        assert "virusgame_" not in response.text and "process_" not in response.text
    assert get_metrics(server, Authorization=f"Bearer {TOKEN}").status_code == 200
    lines = [line for line in server.read_log().splitlines() if "event=metrics.refused" in line]
    assert len(lines) == 3 and all("reason=token" in line for line in lines)
    assert TOKEN not in server.read_log() and "wrong-token" not in server.read_log()


def test_only_allowed_addresses_are_served(start_game):
    outside = start_game(METRICS_ALLOW_FROM="10.0.0.0/8,192.0.2.7")
    response = get_metrics(outside, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 403 and "virusgame_" not in response.text
    assert "event=metrics.refused reason=address client=127.0.0.1" in outside.read_log()

    inside = start_game(METRICS_ALLOW_FROM="127.0.0.0/8")
    assert get_metrics(inside).status_code == 200
    # Both set: both must match.
    both = start_game(METRICS_ALLOW_FROM="127.0.0.1", METRICS_TOKEN=TOKEN)
    assert get_metrics(both).status_code == 403
    assert get_metrics(both, Authorization=f"Bearer {TOKEN}").status_code == 200


async def test_each_process_counts_its_own(start_game):
    first, second = start_game(METRICS_TOKEN=TOKEN), start_game(METRICS_TOKEN=TOKEN)
    async with player(first):
        assert (value(scrape(first), "virusgame_ws_open"), value(scrape(second), "virusgame_ws_open")) == (
            1,
            0,
        )


def metrics_site_for_test(port: int, socket_dir: Path) -> str:
    """deploy/nginx/virusgame-metrics.conf on a loopback port, daphne's sockets in `socket_dir`."""
    text = (nodes.DEPLOY / "nginx" / "virusgame-metrics.conf").read_text()
    text = re.sub(r"listen [^;]*;", f"listen 127.0.0.1:{port};", text)
    text = text.replace("allow 10.0.0.0/8;", "allow 127.0.0.1;").replace("game.example.com", "localhost")
    return text.replace("/run/virusgame/", f"{socket_dir}/")


class NginxWithMetricsSite(nodes.Nginx):
    """nginx with the public site (tests/nodes.py) and the metrics site side by side."""

    def __init__(self, directory: Path, upstream_ports: list[int], metrics_site: str):
        super().__init__(directory, upstream_ports)
        self.metrics_site = metrics_site

    def write_config(self) -> Path:
        conf = super().write_config()
        site = self.directory / "site.conf"
        site.write_text(site.read_text() + "\n" + self.metrics_site)
        return conf


async def test_the_scraper_reaches_each_process_through_the_metrics_site_and_the_public_site_hides_it(
    game_env, tmp_path
):
    harness.require(nodes.nginx_binary() is not None, "nginx is not installed")
    env = {**game_env, "METRICS_TOKEN": TOKEN, "METRICS_ALLOW_FROM": "127.0.0.1"}
    socket_dir = Path(tempfile.mkdtemp(prefix="vg-"))  # unix socket paths must stay short
    (tmp_path / "nginx").mkdir()
    # Two processes with the unit's flags (--proxy-headers), each on a unix socket as the unit's.
    daphnes = [
        nodes.Node(
            env,
            tmp_path / f"daphne-{i}.log",
            daphne_args=[*nodes.unit_daphne_args(), "-u", str(socket_dir / f"daphne-{i}.sock")],
        )
        for i in (1, 2)
    ]
    metrics_port = harness.free_port()
    proxy = NginxWithMetricsSite(
        tmp_path / "nginx", [daphnes[0].port], metrics_site_for_test(metrics_port, socket_dir)
    )
    try:
        for node in daphnes:
            node.start()
        proxy.start()
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(timeout=10) as http:
            public = await http.get(f"{proxy.url}/metrics", headers=bearer)
            assert public.status_code == 404 and "virusgame_" not in public.text

            async with player(daphnes[0]):
                for i, open_sockets in ((1, 1), (2, 0)):
                    url = f"http://127.0.0.1:{metrics_port}/daphne-{i}/metrics"
                    assert (await http.get(url)).status_code == 403  # no token
                    scraped = await http.get(url, headers=bearer)
                    assert scraped.status_code == 200
                    assert f"virusgame_ws_open {open_sockets}.0" in scraped.text
        for node in daphnes:  # the address daphne saw was the scraper's, not nginx's socket
            assert "event=metrics.refused reason=token client=127.0.0.1" in node.read_log()
    finally:
        proxy.stop()
        for node in daphnes:
            node.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
