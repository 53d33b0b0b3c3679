"""The game under the other ASGI servers (uvicorn, granian): the same application, settings and
clients as under daphne, on the generic consumer path (the daphne fastlane does not engage)."""

import asyncio
import signal

import pytest
import websockets

from tests.support import harness
from tests.support.harness import player
from tools.servers import PEERS, peer_argv, peer_missing

pytestmark = pytest.mark.timeout(120)
# How each peer closes the sockets when it shuts down: uvicorn with 1012 (service restart, the
# page reconnects at once); granian drops the connection without a close frame.
SHUTDOWN_CLOSE = {"uvicorn": 1012, "granian": 1006}


@pytest.fixture(params=list(PEERS))
def peer(request, game_env, tmp_path):
    """The game served by one peer server (skipped where it is not installed)."""
    missing = peer_missing(request.param)
    harness.require(missing is None, missing)
    argv = peer_argv(request.param, "virusgame.asgi:application")
    server = harness.GameServer(game_env, tmp_path / f"{request.param}.log", argv=argv, name=request.param)
    yield server.start()
    server.stop()


def connections(server) -> int:
    code = "from viruses.models import Connection; print(Connection.objects.count())"
    return int(server.manage("shell", "-v", "0", "-c", code).stdout)


async def test_a_game_is_played_over_http_and_the_socket(peer):
    api = peer.api()
    assert api.get("/healthz").json() == {"database": "ok", "channel_layer": "ok"}
    async with player(peer, api=api) as alice, player(peer) as bob:
        await alice.until(lambda m: m["type"] == "presence" and m["online"] == 2)
        virus = api.create().json()
        await bob.until(lambda m: m["type"] == "virus.created" and m["virus"]["id"] == virus["id"])
        ack = await bob.act({"type": "create", "ref": "r1"})
        assert ack["status"] == 201
        await alice.until(lambda m: m["type"] == "virus.created" and m["virus"]["id"] == ack["virus"]["id"])
        assert (await alice.act({"type": "kill", "id": virus["id"], "ref": "r2"}))["status"] == 204
        for client in (alice, bob):
            await client.seen(lambda m: m["type"] == "virus.killed" and m["id"] == virus["id"])
        assert bob.seq == alice.seq == 3
        assert bob.viruses.keys() == {v["id"] for v in api.list()["viruses"]} == {ack["virus"]["id"]}
        assert (await alice.act({"type": "kill", "id": virus["id"], "ref": "r3"}))["status"] == 404


async def test_sigterm_closes_the_sockets_and_leaves_no_presence_behind(peer):
    async with websockets.connect(peer.ws_url, origin=peer.url) as ws:
        await asyncio.wait_for(ws.recv(), 10)  # the snapshot
        assert connections(peer) == 1
        peer.process.send_signal(signal.SIGTERM)
        assert await harness.close_code(ws) == SHUTDOWN_CLOSE[peer.name]
    await asyncio.to_thread(peer.process.wait, 15)
    # The lifespan's shutdown waited for the consumer to leave (its online count and row).
    assert connections(peer) == 0
    assert "lifespan" not in peer.read_log().lower()  # no "unsupported" or "errored" at startup
