"""The WebSocket consumer, driven through the real ASGI stack with WebsocketCommunicator."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from tests.support.inprocess import next_of
from viruses import names, services
from viruses.live.consumers import MAX_MESSAGE_BYTES, dispatch_each, flood_limit
from viruses.models import Connection
from virusgame.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

create = database_sync_to_async(services.virus_create)
kill = database_sync_to_async(services.virus_kill)


async def connected(origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/viruses/", headers=[(b"host", b"localhost"), (b"origin", origin)]
    )
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator


async def test_snapshot_comes_first_with_viruses_seq_and_online():
    existing = await create()
    communicator = await connected()
    snapshot = await communicator.receive_json_from()
    assert snapshot["type"] == "snapshot"
    assert [v["id"] for v in snapshot["viruses"]] == [str(existing.id)]
    assert snapshot["seq"] == 1
    assert snapshot["online"] == 1
    await communicator.disconnect()


async def test_creates_and_kills_are_pushed_in_seq_order():
    communicator = await connected()
    snapshot = await next_of(communicator, "snapshot")
    virus = await create()
    created = await next_of(communicator, "virus.created")
    assert created["virus"]["id"] == str(virus.id)
    assert created["seq"] == snapshot["seq"] + 1
    await kill(virus_id=virus.id)
    killed = await next_of(communicator, "virus.killed")
    assert (killed["id"], killed["seq"]) == (str(virus.id), created["seq"] + 1)
    await communicator.disconnect()


async def test_resync_sends_a_fresh_snapshot():
    communicator = await connected()
    await next_of(communicator, "snapshot")
    virus = await create()
    await next_of(communicator, "virus.created")
    await communicator.send_json_to({"type": "resync"})
    snapshot = await next_of(communicator, "snapshot")
    assert [v["id"] for v in snapshot["viruses"]] == [str(virus.id)]
    assert snapshot["seq"] == 1
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"kind": "resync"}', "JSON object"),
        ('{"type": "explode", "id": "x"}', "unknown message type"),
    ],
)
async def test_bad_messages_are_answered_and_the_socket_stays_open(sent, says):
    communicator = await connected()
    await next_of(communicator, "snapshot")
    await communicator.send_to(text_data=sent)
    error = await next_of(communicator, "error")
    assert says in error["error"]
    await communicator.send_json_to({"type": "resync"})
    assert (await next_of(communicator, "snapshot"))["type"] == "snapshot"
    await communicator.disconnect()


async def test_oversize_message_closes_with_1009():
    communicator = await connected()
    await next_of(communicator, "snapshot")
    await communicator.send_to(text_data=json.dumps({"type": "resync", "pad": "x" * MAX_MESSAGE_BYTES}))
    while (output := await communicator.receive_output(3))["type"] != "websocket.close":
        pass
    assert output["code"] == 1009


async def test_flooding_closes_with_1008():
    communicator = await connected()
    await next_of(communicator, "snapshot")
    for _ in range(flood_limit() + 1):
        await communicator.send_to(text_data="{}")
    while (output := await communicator.receive_output(3))["type"] != "websocket.close":
        pass
    assert output["code"] == 1008


async def test_foreign_origin_is_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/viruses/", headers=[(b"origin", b"https://evil.example")]
    )
    accepted, _ = await communicator.connect()
    assert not accepted
    assert await Connection.objects.acount() == 0


async def test_connection_row_lives_as_long_as_the_socket():
    communicator = WebsocketCommunicator(
        application,
        "/ws/viruses/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"user-agent", b"pytest-browser/1.0"),
        ],
    )
    await communicator.connect()
    await next_of(communicator, "snapshot")
    row = await Connection.objects.aget()
    assert row.user_agent == "pytest-browser/1.0"
    await communicator.disconnect()
    assert await Connection.objects.acount() == 0


async def test_joins_and_leaves_are_announced_to_others():
    first = await connected()
    await next_of(first, "snapshot")
    second = await connected()
    assert (await next_of(second, "snapshot"))["online"] == 2
    assert (await next_of(first, "presence"))["online"] == 2
    await second.disconnect()
    assert (await next_of(first, "presence"))["online"] == 1
    await first.disconnect()


async def test_snapshots_share_the_address_bucket_resync_answers_an_error(settings):
    settings.VIRUS_SNAPSHOT_RATE, settings.VIRUS_SNAPSHOT_BURST = 0.001, 2
    communicator = await connected()  # the first snapshot takes one token
    await next_of(communicator, "snapshot")
    await communicator.send_json_to({"type": "resync"})
    await next_of(communicator, "snapshot")
    await communicator.send_json_to({"type": "resync"})
    refused = await next_of(communicator, "error")
    assert refused["error"].startswith("too many snapshots")
    second = WebsocketCommunicator(
        application, "/ws/viruses/", headers=[(b"host", b"localhost"), (b"origin", b"http://localhost")]
    )
    await second.connect()
    assert (await second.receive_output(3))["code"] == 1008
    await communicator.disconnect()


async def test_names_online_come_in_the_snapshot_and_presence_without_anonymous_or_banned_ones():
    from viruses import players
    from viruses.models import Player

    @database_sync_to_async
    def cookie_of(name: str, *, banned: bool = False) -> bytes:
        key, upper_key = names.keys(name)
        player = Player.objects.create(name=name, name_key=key, name_upper_key=upper_key, banned=banned)
        return f"{players.COOKIE}={players.cookie_value(player.pk)}".encode()

    async def join(cookie: bytes | None) -> WebsocketCommunicator:
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")] + (
            [(b"cookie", cookie)] if cookie else []
        )
        communicator = WebsocketCommunicator(application, "/ws/viruses/", headers=headers)
        assert (await communicator.connect())[0]
        return communicator

    zed = await join(await cookie_of("Zed Zebra"))
    anonymous = await join(None)
    banned = await join(await cookie_of("Bad Apple", banned=True))
    amy = await join(await cookie_of("Amy Ant"))
    snapshot = await next_of(amy, "snapshot")
    assert [p["name"] for p in snapshot["online_players"]] == ["Amy Ant", "Zed Zebra"]
    assert (snapshot["online"], snapshot["online_more"], snapshot["me"]["name"]) == (4, 0, "Amy Ant")
    await zed.disconnect()
    while (presence := await next_of(amy, "presence"))["online"] != 3:
        pass
    assert [p["name"] for p in presence["online_players"]] == ["Amy Ant"]
    for communicator in (anonymous, banned, amy):
        await communicator.disconnect()


class Source:
    """A receive callable whose messages the test hands over one by one."""

    def __init__(self):
        self.queue = asyncio.Queue()
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        return await self.queue.get()


async def test_dispatch_each_relays_both_sources_in_order_one_message_at_a_time():
    sources = {"c": Source(), "g": Source()}  # the client's receive, the channel layer's
    seen, busy = [], []

    async def dispatch(message):
        busy.append(message)
        assert len(busy) == 1, f"{busy} dispatched at once"
        await asyncio.sleep(0.01)  # a slow send: nothing else may be dispatched meanwhile
        # Its source is not awaited again before its message is relayed: the fastlane's
        # hand-over happens inside a receive and must not overtake this message.
        assert sources[message[0]].calls == int(message[1:]) + 1
        seen.append(message)
        busy.remove(message)

    loop = asyncio.create_task(dispatch_each(tuple(sources.values()), dispatch))
    for i in range(3):
        for name, source in sources.items():
            source.queue.put_nowait(f"{name}{i}")
    await asyncio.sleep(0.2)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert [m for m in seen if m[0] == "c"] == ["c0", "c1", "c2"]
    assert [m for m in seen if m[0] == "g"] == ["g0", "g1", "g2"]


async def test_dispatch_each_raises_a_source_error_and_leaves_no_task_behind():
    idle = Source()

    async def broken():
        raise ConnectionError("redis went away")

    before = asyncio.all_tasks()
    with pytest.raises(ConnectionError):
        await dispatch_each((idle, broken), lambda message: None)
    assert asyncio.all_tasks() == before


async def test_dispatch_each_takes_a_receive_that_returns_a_future_as_granians_does():
    queue = asyncio.Queue()

    def receive():  # not a coroutine function: its call returns a future
        return asyncio.ensure_future(queue.get())

    seen = []

    async def dispatch(message):
        seen.append(message)
        if len(seen) == 2:
            raise StopAsyncIteration  # ends the loop, as the consumer's StopConsumer does

    queue.put_nowait("connect")
    queue.put_nowait("receive")
    with pytest.raises(StopAsyncIteration):
        await dispatch_each((receive, Source()), dispatch)
    assert seen == ["connect", "receive"]
