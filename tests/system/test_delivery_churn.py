"""The README's delivery guarantees: connection churn and a server killed outright.

1000 WebSockets from one asyncio process against one daphne process, opened and closed
all at once; afterwards the database, the presence count and the Redis group hold exactly
the sockets still open. The sockets of a server killed with SIGKILL stop counting.
"""

import asyncio
import signal
import time

import pytest
import websockets

from tests.support.delivery import Cluster, Player, db_scalar, group_members, raise_open_files_limit, wait_for

pytestmark = pytest.mark.timeout(150)

SOCKETS = 1000


@pytest.fixture
def cluster(game_env, tmp_path):
    raise_open_files_limit(4 * SOCKETS)  # this process and daphne (which inherits it)
    cluster = Cluster(game_env, tmp_path)
    yield cluster
    cluster.stop()


def connections(cluster) -> int:
    return db_scalar(cluster.env, "SELECT COUNT(*) FROM viruses_connection")


async def open_socket(server, refusals: list[str]):
    try:
        ws = await websockets.connect(server.ws_url, origin=server.url, open_timeout=60, max_queue=4)
        first = await asyncio.wait_for(ws.recv(), 60)
        assert '"type":"snapshot"' in first
        return ws
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        refusals.append(f"{type(exc).__name__}: {exc}")
        return None


async def test_a_thousand_sockets_opened_and_closed_at_once_leave_nothing_behind(cluster):
    (server,) = cluster.start(1, VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0")
    observer = await Player(server, name="observer").start()
    refusals: list[str] = []

    started = time.monotonic()
    sockets = await asyncio.gather(*(open_socket(server, refusals) for _ in range(SOCKETS)))
    opened = time.monotonic() - started
    assert refusals == [] and all(sockets)
    await wait_for(lambda: observer.online == SOCKETS + 1, 15, "presence counts every socket")
    assert connections(cluster) == SOCKETS + 1
    assert group_members(cluster.env) == SOCKETS + 1

    started = time.monotonic()
    await asyncio.gather(*(ws.close() for ws in sockets))
    closed = time.monotonic() - started
    settled = await wait_for(
        lambda: connections(cluster) == 1 and group_members(cluster.env) == 1, 30, "rows and group emptied"
    )
    await wait_for(lambda: observer.online == 1, 5, "presence back to the truth")
    assert observer.close_codes == []  # the observer's own socket lived through it all
    await observer.stop()
    print(
        f"churn: {SOCKETS} sockets opened at once in {opened:.1f} s (0 refused), closed in {closed:.1f} s; "
        f"rows, presence and Redis group back to 1 within {closed + settled:.1f} s"
    )
    cluster.assert_clean()


async def test_sockets_of_a_server_killed_with_sigkill_stop_counting(cluster):
    survivor, doomed = cluster.start(2, VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0", VIRUS_PRESENCE_HEARTBEAT="1")
    observer = await Player(survivor, name="observer").start()
    victims = [await Player(doomed, name=f"victim{i}").start() for i in range(20)]
    await wait_for(lambda: observer.online == 21, 10, "presence counts both servers")

    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait()
    for victim in victims:
        victim.stopping = True  # their server is gone for good: no reconnecting
    killed_at = time.monotonic()
    await wait_for(lambda: observer.online == 1, 10, "dead server's sockets stop counting")
    gone = time.monotonic() - killed_at
    await wait_for(lambda: connections(cluster) == 1, 5, "its rows reaped")
    await wait_for(lambda: group_members(cluster.env) == 1, 5, "its channels out of the group")
    # How stale a row may be before it stops counting (3 heartbeats) is decided, and tested
    # on rows of a chosen age, in tests/unit/test_presence.py.
    print(f"sigkill: 20 sockets of the killed server stopped counting after {gone:.1f} s (heartbeat 1 s)")
    for player in (observer, *victims):
        await player.stop()
    doomed.stop()
    cluster.assert_clean()
