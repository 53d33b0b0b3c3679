"""viruses/live/fanout.py, the fastlane, over real daphne, Redis and WebSocket clients: order, nothing
lost across the hand-over, slow readers, and the same messages as the consumer path."""

import asyncio
import contextlib

import pytest
from channels_redis.core import RedisChannelLayer

from tests.support.harness import close_code, connect, created_event, player, push_until_slow_reader
from tools.gameclient import CHANGES, decode

pytestmark = pytest.mark.timeout(180)

LANES = {"fastlane": "1", "consumer": "0"}


@pytest.fixture(params=sorted(LANES))
def server(request, cluster):
    """One daphne, with group events on the fastlane or relayed by each consumer."""
    (server,) = cluster.start(1, VIRUS_FASTLANE=LANES[request.param])
    server.lane = request.param
    yield server
    cluster.assert_clean()


def lane_of_every_socket(server) -> set[str]:
    """The path each socket's group events took, from the `ws.connect` log lines."""
    lines = [line for line in server.read_log().splitlines() if "event=ws.connect " in line]
    return {"fastlane" if "fastlane=True" in line else "consumer" for line in lines}


def layer_of(server) -> RedisChannelLayer:
    """channels-redis's stock layer on the game's Redis: another process pushing, as the views do.

    Its capacity is what a process may fall behind before the layer drops (at most once):
    high here, so that what is measured is order, not capacity.
    """
    return RedisChannelLayer(
        hosts=[server.env["REDIS_URL"]], prefix=server.env["REDIS_PREFIX"], capacity=10_000
    )


async def read_changes(ws, last: int) -> list[int]:
    """The seqs of the change messages a socket receives, in order, until seq `last`."""
    seqs = []
    while not seqs or seqs[-1] < last:
        for message in decode(await asyncio.wait_for(ws.recv(), 20)):
            if message["type"] in CHANGES:
                seqs.append(message["seq"])
    return seqs


async def test_a_burst_reaches_each_client_in_order_even_while_it_connects(server):
    """300 events sent as fast as Redis takes them; clients connect before and during it.

    Each client gets every event from its first one on, once, in the order sent: the
    hand-over from the consumer's queue to the fastlane reorders and loses nothing.
    """
    total = 300
    layer = layer_of(server)
    async with contextlib.AsyncExitStack() as stack:
        early = await stack.enter_async_context(connect(server))
        assert decode(await early.recv())[0]["type"] == "snapshot"
        readers = [asyncio.create_task(read_changes(early, total))]
        try:
            for seq in range(1, total + 1):
                # One of them bigger than 64 KiB: the frame's 8-byte length.
                await layer.group_send("viruses", created_event(seq, pad=70_000 if seq == 150 else 0))
                if seq % 30 == 15:  # a client connecting mid-burst
                    ws = await stack.enter_async_context(connect(server))
                    readers.append(asyncio.create_task(read_changes(ws, total)))
            received = await asyncio.gather(*readers)
        finally:
            await layer.close_pools()
    assert received[0] == list(range(1, total + 1))
    for seqs in received[1:]:
        assert seqs == list(range(seqs[0], total + 1)), seqs
    assert lane_of_every_socket(server) == {server.lane}


@pytest.mark.parametrize("at_once", [1, 10], ids=["one_by_one", "ten_at_once"])
async def test_no_change_committed_while_clients_connect_is_lost(server, at_once):
    """Creates and kills go on through the API while 20 clients connect, one after another
    or ten at once (their group joins, snapshot reads and rows then share one run each).

    Each client's snapshot plus the changes it receives after it add up to every change:
    nothing committed between a client's group join, its snapshot and its hand-over to the
    fastlane is lost.
    """
    api = server.api().start()
    stop = asyncio.Event()

    def write() -> int:
        while not stop.is_set():
            virus = api.create().json()
            api.kill(virus["id"])
        return api.list()["seq"]

    writer = asyncio.create_task(asyncio.to_thread(write))
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        try:
            for _ in range(20 // at_once):
                joining = (stack.enter_async_context(player(server)) for _ in range(at_once))
                clients += await asyncio.gather(*joining)
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            last = await writer
        for client in clients:
            await client.until(lambda m: m.get("seq") == last, timeout=20)
            # The snapshot, then every later change exactly once, in order.
            snapshot_seq = client.messages[0]["seq"]
            seqs = [m["seq"] for m in client.messages if m["type"] in CHANGES and m["seq"] > snapshot_seq]
            assert seqs == list(range(snapshot_seq + 1, last + 1))
            assert (client.seq, client.viruses) == (last, {})
    api.close()
    assert lane_of_every_socket(server) == {server.lane}


async def test_a_client_that_stops_reading_is_closed(server):
    async with connect(server, max_queue=1) as ws:
        await push_until_slow_reader(server)
        assert "reason=slow_reader" in server.read_log()
        # Reading again, the client finds the 1013 close frame behind the megabytes sent
        # before it, unless it took longer than autobahn's close-handshake timeout (1 s) to
        # get there: then the server has dropped the connection (1006). The code itself is
        # checked below, without the race.
        assert await close_code(ws, timeout=30) in (1013, 1006)
    assert lane_of_every_socket(server) == {server.lane}


async def test_clients_get_the_same_messages_on_the_fastlane_and_the_consumer_path(cluster):
    fast, relayed = cluster.start(1, VIRUS_FASTLANE="1") + cluster.start(1, VIRUS_FASTLANE="0")
    api = fast.api().start()
    async with player(fast) as alice, player(relayed) as bob:
        for client in (alice, bob):
            await client.until(lambda m: m["type"] == "presence" and m["online"] == 2)
        await asyncio.sleep(1)  # presence settled (a late one still reaches both alike)
        seen = {client: len(client.messages) for client in (alice, bob)}
        ids = [api.create().json()["id"] for _ in range(10)]
        for virus_id in ids[:5]:
            api.kill(virus_id)
        await client_resync(alice)
        await client_resync(bob)
        last = api.list()["seq"]
        for client in (alice, bob):
            await client.until(lambda m: m["type"] == "snapshot" and m["seq"] == last)
        alice_got, bob_got = (client.messages[seen[client] :] for client in (alice, bob))
        assert alice_got == bob_got
        changes = [m["type"] for m in alice_got if m["type"] != "presence"]
        assert changes == ["virus.created"] * 10 + ["virus.killed"] * 5 + ["snapshot"]
    api.close()
    assert lane_of_every_socket(fast) == {"fastlane"}
    assert lane_of_every_socket(relayed) == {"consumer"}
    cluster.assert_clean()


async def client_resync(client) -> None:
    """Wait for the last change, then ask for a snapshot: its answer ends what is compared."""
    await client.until(lambda m: m["type"] == "virus.killed" and m["seq"] == 15)
    await client.send({"type": "resync"})
