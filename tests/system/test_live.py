"""Across processes, over real sockets: daphne, Redis, manage.py, HTTP and WebSocket clients."""

import asyncio

import pytest
import redis.asyncio
import websockets

from tests.support.harness import player

pytestmark = pytest.mark.timeout(120)


def is_created(message):
    return message["type"] == "virus.created"


def is_killed(message):
    return message["type"] == "virus.killed"


async def test_cron_command_in_another_process_reaches_every_client(game):
    async with player(game) as alice, player(game) as bob:
        result = await asyncio.to_thread(game.manage, "spawn_virus", "--count", "2")
        assert result.stdout.count("Spawned") == 2
        for client in (alice, bob):
            await client.until(lambda m: is_created(m) and m["seq"] == 2)
            assert client.viruses.keys() == {v["id"] for v in game.api().list()["viruses"]}


async def test_http_kill_reaches_every_client(game):
    api = game.api()
    async with player(game) as alice, player(game) as bob:
        virus = api.create().json()
        for client in (alice, bob):
            await client.until(is_created)
        assert api.kill(virus["id"]).status_code == 204
        for client in (alice, bob):
            killed = await client.until(is_killed)
            assert killed["id"] == virus["id"]
            assert client.viruses == {}


async def test_delete_in_a_django_shell_reaches_clients(game):
    virus = game.api().create().json()
    async with player(game) as alice:
        assert virus["id"] in alice.viruses
        code = f"from viruses.models import Virus; Virus.objects.get(pk='{virus['id']}').delete()"
        await asyncio.to_thread(game.manage, "shell", "-c", code)
        killed = await alice.until(is_killed)
        assert killed["id"] == virus["id"]
        assert game.api().list()["viruses"] == []


async def idle_read_done(server) -> None:
    """Return once the server's channel-layer reader has finished a blocking read that got
    nothing and gone back to waiting (Redis's MONITOR: two BZPOPMIN on one key, no ZADD to it
    in between): the idle stretch that a client-side read timeout would not survive."""
    client = redis.asyncio.Redis.from_url(server.env["REDIS_URL"], socket_timeout=None)
    waiting = None  # the key of the last blocking read, while nothing was added to it
    try:
        async with client.monitor() as monitor:
            while True:
                command = (await monitor.next_command())["command"].split()
                if len(command) < 2 or not command[1].startswith(server.env["REDIS_PREFIX"]):
                    continue
                if command[0].upper() == "BZPOPMIN":
                    if command[1] == waiting:
                        return
                    waiting = command[1]
                elif command[1] == waiting:
                    waiting = None  # a message for it: that read was not idle
    finally:
        await client.aclose()


async def test_idle_client_still_gets_pushes_after_a_blocking_read_that_got_nothing(game):
    async with player(game) as alice:
        await asyncio.wait_for(idle_read_done(game), 30)
        await asyncio.to_thread(game.manage, "spawn_virus")
        created = await alice.until(is_created)
        assert created["virus"]["id"] in alice.viruses


async def test_presence_counts_sockets_across_clients(game):
    async with player(game) as alice:
        assert alice.online == 1
        async with player(game) as bob:
            assert bob.online == 2
            await alice.until(lambda m: m["type"] == "presence" and m["online"] == 2)
        await alice.until(lambda m: m["type"] == "presence" and m["online"] == 1)


async def test_foreign_origin_is_refused_over_a_real_socket(game):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(game.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403


def test_page_and_static_files_are_served_in_production_mode(game):
    api = game.api()
    page = api.client.get("/")
    assert page.status_code == 200
    css = [part.split('"')[0] for part in page.text.split('href="')[1:] if ".css" in part.split('"')[0]]
    assert css, "the page links a stylesheet"
    asset = api.client.get(css[0])
    assert asset.status_code == 200
    assert "max-age" in asset.headers.get("cache-control", "")
