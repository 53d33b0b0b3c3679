"""`/metrics` on real daphne: the counters move as players act, and outsiders read nothing."""

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests import harness
from tests.delivery import wait_for
from tests.harness import player
from tools.local_redis import LocalRedis
from tools.servers import Api

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


@pytest.fixture
def start_game(game_env, tmp_path):
    started = []

    def start(**extra: str) -> harness.GameServer:
        server = harness.GameServer({**game_env, **extra}, tmp_path / f"daphne-{len(started)}.log").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def test_counters_move_as_players_connect_act_get_refused_resync_and_leave(start_game):
    server = start_game(METRICS_TOKEN=TOKEN, VIRUS_MAX_CONNECTIONS_PER_ADDRESS="2")
    before = scrape(server)
    assert value(before, "virusgame_ws_open") == 0
    async with player(server) as first, player(server) as second:
        during = scrape(server)
        assert value(during, "virusgame_ws_open") == 2
        assert moved(before, during, "virusgame_ws_connects_total") == 2
        assert 0 <= value(during, "virusgame_presence_heartbeat_age_seconds") < 60

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
        after = scrape(server)

    assert moved(before, after, "virusgame_ws_refusals_total", reason="connections_per_address") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="create", status="201") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="kill", status="204") == 1
    assert moved(before, after, "virusgame_actions_total", path="http", action="kill", status="404") == 1
    assert moved(before, after, "virusgame_pushes_total", type="virus.created", result="ok") == 1
    assert moved(before, after, "virusgame_pushes_total", type="virus.killed", result="ok") == 1
    assert moved(before, after, "virusgame_push_seconds_count") >= 2  # presence pushes count too
    assert moved(before, after, "virusgame_push_seconds_sum") > 0
    assert moved(before, after, "virusgame_ws_resyncs_total") == 1

    # Both players left: the gauge falls back, the disconnects are counted by close code.
    await wait_for(lambda: value(scrape(server), "virusgame_ws_open") == 0, 10, "sockets closed")
    gone = scrape(server)
    assert moved(before, gone, "virusgame_ws_disconnects_total", code="1000") == 2
    assert value(gone, "virusgame_presence_heartbeat_age_seconds") == 0
    assert value(gone, "process_resident_memory_bytes") > 0  # the client's process metrics too


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
