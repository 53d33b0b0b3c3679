"""viruses/live/daphne/transport.py: close codes and backpressure over real daphne sockets, with and
without middleware that wraps `send`; SendBuffer and Socket against fakes."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import harness, nodes
from tests.support.harness import close_code, connect, player, push_until_slow_reader
from viruses.live.consumers import MAX_MESSAGE_BYTES, flood_limit
from viruses.live.daphne.transport import LISTEN_BACKLOG

pytestmark = pytest.mark.timeout(120)

APPLICATIONS = {
    "plain": "virusgame.asgi:application",
    "auth_middleware": "tests.support.auth_asgi:application",
}


@pytest.fixture(params=sorted(APPLICATIONS))
def server(request, game_env, tmp_path):
    """daphne with its default flags, serving the game bare or behind AuthMiddlewareStack."""
    node = nodes.Node(
        game_env, tmp_path / "daphne.log", daphne_args=[], application=APPLICATIONS[request.param]
    )
    yield node.start()
    node.stop()


async def test_flooding_closes_with_1008(server):
    async with connect(server) as ws:
        for _ in range(flood_limit() + 1):
            await ws.send('{"type": "resync"}')
        assert await close_code(ws) == 1008
    async with player(server) as bob:  # the server is fine, and so are other clients
        assert bob.online >= 1


async def test_oversize_message_closes_with_1009(server):
    async with connect(server) as ws:
        await ws.send(json.dumps({"type": "resync", "pad": "x" * MAX_MESSAGE_BYTES}))
        assert await close_code(ws) == 1009
    # Closed by the game (the line is written before the close frame), not by daphne's own limit.
    assert "event=ws.close" in server.read_log() and "reason=too_big" in server.read_log()


async def test_a_client_that_stops_reading_is_closed_as_a_slow_reader(server):
    # The client reads nothing past a few queued frames, so its kernel buffers fill up.
    async with connect(server, max_queue=1) as ws:
        await push_until_slow_reader(server)
        assert "reason=slow_reader" in server.read_log()
        await ws.close()
    assert "Traceback" not in server.read_log()


def listen_queue(kind: str, where: str) -> int:
    """The backlog the kernel gives a listening socket: `ss`'s Send-Q for it."""
    lines = subprocess.run(
        ["ss", f"-l{kind}H", *where.split()], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(lines) == 1, lines
    return int(lines[0].split()[2 if kind == "t" else 3])


def test_daphne_queues_a_connect_storm_on_tcp_and_unix_sockets(game_env, tmp_path):
    # With Twisted's 50, the 51st client connecting at once waits a second for a SYN retry.
    harness.require(shutil.which("ss") is not None, "ss (iproute2) is not installed")
    path = Path(tempfile.mkdtemp(prefix="vg-")) / "daphne.sock"  # unix socket paths must stay short
    node = nodes.Node(game_env, tmp_path / "daphne.log", daphne_args=["-u", str(path)]).start()
    try:
        assert listen_queue("t", f"sport = :{node.port}") == LISTEN_BACKLOG
        assert listen_queue("x", f"src {path}") == LISTEN_BACKLOG
    finally:
        node.stop()
