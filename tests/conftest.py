"""Fixtures: in-process Django for unit tests, real child processes for live tests."""

import asyncio
import json
import threading

import pytest
from channels.layers import channel_layers, get_channel_layer

from tests.support import harness, nodes
from tests.support.delivery import Cluster
from tools import servers
from viruses import broadcast


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = harness.RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    dbs = harness.Databases(tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def static_root(tmp_path_factory, databases):
    root = tmp_path_factory.mktemp("static")
    servers.collectstatic(databases.fresh(), root)
    return root


@pytest.fixture
def game_env(databases, redis_server, static_root):
    """Environment for one game: a fresh database, the shared Redis under its own prefix."""
    return harness.base_env(
        database_url=databases.fresh(), redis_url=redis_server.url, DJANGO_STATIC_ROOT=str(static_root)
    )


@pytest.fixture
def game(game_env, tmp_path):
    """A daphne process serving a fresh game."""
    server = harness.GameServer(game_env, tmp_path / "daphne.log").start()
    yield server
    server.stop()


@pytest.fixture
def cluster(game_env, tmp_path):
    """Daphne processes of one game, started on demand (tests/delivery.py)."""
    cluster = Cluster(game_env, tmp_path)
    yield cluster
    cluster.stop()


@pytest.fixture
async def pushes():
    """Listen to the game's group on the configured channel layer, as a consumer does."""
    layer = get_channel_layer()
    await layer.flush()
    listener = GroupListener(layer, await layer.new_channel())
    await layer.group_add(broadcast.GROUP, listener.channel)
    yield listener
    await layer.group_discard(broadcast.GROUP, listener.channel)


@pytest.fixture
async def listen():
    """`await listen(group)`: a listener of any world's group (a room's: `Room.group`)."""
    layer = get_channel_layer()
    listeners = []

    async def start(group: str) -> GroupListener:
        listener = GroupListener(layer, await layer.new_channel())
        await layer.group_add(group, listener.channel)
        listeners.append((group, listener))
        return listener

    yield start
    for group, listener in listeners:
        await layer.group_discard(group, listener.channel)


class GroupListener:
    def __init__(self, layer, channel):
        self.layer = layer
        self.channel = channel

    async def receive(self, timeout: float = 5) -> dict:
        """Return the next push, decoded as a client would see it."""
        event = await asyncio.wait_for(self.layer.receive(self.channel), timeout)
        return json.loads(event["text"])

    async def nothing(self, timeout: float = 0.5) -> bool:
        try:
            await self.receive(timeout)
        except TimeoutError:
            return True
        return False


@pytest.fixture(autouse=True)
def board_pushes_done():
    """A board push asked for in a test reads the database 0.5 s later, in a timer thread
    (leaderboard.py): let it finish before the test's database goes, whichever test credited
    the kill (a timer left running fails a later test on a blocked or flushed database)."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, threading.Timer):
            thread.join(5)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A layer per test: each async test has an event loop of its own, and a layer's locks
    and reader belong to the loop that first used them (a server has one loop)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """In-process tests run without collectstatic, so without the hashed-name manifest."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def start_game(game_env, tmp_path):
    """Start daphne serving a fresh game with extra settings (`start_game(VIRUS_...="...")`);
    `start_game.env` is the base environment. Every server started is stopped after the test."""
    started = []

    def start(**extra: str) -> harness.GameServer:
        server = harness.GameServer({**game_env, **extra}, tmp_path / f"daphne-{len(started)}.log").start()
        started.append(server)
        return server

    start.env = game_env
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_node(game_env, tmp_path):
    """Start daphne as the systemd unit does, with extra settings."""
    started = []

    def start(daphne_args=None, **env) -> nodes.Node:
        node = nodes.Node(
            {**game_env, **env}, tmp_path / f"daphne-{len(started)}.log", daphne_args=daphne_args
        )
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.stop()
