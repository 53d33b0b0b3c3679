"""LocalFanoutRedisChannelLayer's own parts, on the tests' real Redis.

channels-redis's contract (any prefix, several hosts, capacity, expiry) is checked by its
own suite in tests/third_party/channels_redis/; these cover what the layer adds: one reader
per event loop and Redis key, errors, buffers and flush.
"""

import asyncio
import contextvars
import uuid

import pytest
import redis.asyncio

from viruses.live import layers
from viruses.live.layers import LocalFanoutRedisChannelLayer

GROUP = "layer-tests"


@pytest.fixture
async def layer(redis_server):
    layer = LocalFanoutRedisChannelLayer(
        hosts=[{"address": redis_server.url, "socket_timeout": None}], prefix=f"layer-{uuid.uuid4().hex[:8]}"
    )
    yield layer
    await layer.flush()


@pytest.fixture
async def raw_redis(redis_server):
    client = redis.asyncio.from_url(redis_server.url)
    yield client
    await client.aclose()


async def channels_in_group(layer, *prefixes: str) -> list[str]:
    channels = [await layer.new_channel(prefix=prefix) for prefix in prefixes]
    for channel in channels:
        await layer.group_add(GROUP, channel)
    return channels


async def waiting(layer, channels: list[str]) -> list[asyncio.Task]:
    """Start a receive() per channel and let each reach its wait."""
    tasks = [asyncio.create_task(layer.receive(channel)) for channel in channels]
    await asyncio.sleep(0)
    return tasks


def redis_key(layer, channel: str) -> str:
    return layer.prefix + layer.non_local_name(channel)


async def test_channels_of_several_prefixes_are_read_by_one_reader_per_prefix(layer):
    channels = await channels_in_group(layer, "a", "a", "a", "b", "b")
    tasks = await waiting(layer, channels)
    assert sorted(real for _, real in layer._readers) == sorted(
        {layer.non_local_name(channels[0]), layer.non_local_name(channels[3])}
    )

    await layer.group_send(GROUP, {"type": "hello"})

    received = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert received == [{"type": "hello"}] * 5


async def test_a_redis_error_is_raised_in_every_receive_waiting_on_that_key_and_the_next_receive_reads_again(
    layer, raw_redis
):
    a1, a2, b = await channels_in_group(layer, "a", "a", "b")
    # A key of the wrong type makes Redis answer BZPOPMIN with an error, as a lost server would.
    await raw_redis.set(redis_key(layer, a1), "not a sorted set")

    task_a1, task_a2, task_b = await waiting(layer, [a1, a2, b])

    for task in (task_a1, task_a2):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await asyncio.wait_for(task, 5)
    assert not task_b.done()

    await raw_redis.delete(redis_key(layer, a1))
    await layer.group_send(GROUP, {"type": "after"})
    assert await asyncio.wait_for(layer.receive(a1), 5) == {"type": "after"}
    assert await asyncio.wait_for(layer.receive(a2), 5) == {"type": "after"}
    assert await asyncio.wait_for(task_b, 5) == {"type": "after"}


async def test_buffers_are_dropped_once_drained_or_abandoned(layer):
    first, second, abandoned = await channels_in_group(layer, "a", "a", "a")
    (abandon,) = await waiting(layer, [abandoned])
    abandon.cancel()
    await asyncio.gather(abandon, return_exceptions=True)
    assert abandoned not in layer.receive_buffer

    await layer.group_discard(GROUP, abandoned)
    receiving = await waiting(layer, [first])
    await layer.group_send(GROUP, {"type": "hello"})
    await asyncio.wait_for(receiving[0], 5)
    assert list(layer.receive_buffer) == [second]  # read along with first's, held for second

    assert await layer.receive(second) == {"type": "hello"}
    assert not layer.receive_buffer


async def test_the_reader_stops_when_no_receive_waits_and_leaves_later_messages_in_redis(layer, raw_redis):
    (channel,) = await channels_in_group(layer, "a")
    (receive,) = await waiting(layer, [channel])
    (reader,) = layer._readers.values()
    receive.cancel()
    await asyncio.gather(receive, return_exceptions=True)

    # The read in flight when the last receive() left still delivers its message, then stops.
    await layer.send(channel, {"type": "in flight"})
    await asyncio.wait_for(reader.task, 5)
    assert not layer._readers

    await layer.send(channel, {"type": "later"})
    assert await raw_redis.zcard(redis_key(layer, channel)) == 1  # in Redis, under its expiry
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "in flight"}
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "later"}


async def test_flush_drops_messages_already_read_into_the_process_and_strands_no_receive(layer):
    first, second = await channels_in_group(layer, "a", "a")
    receiving = await waiting(layer, [first])
    await layer.group_send(GROUP, {"type": "before"})
    await asyncio.wait_for(receiving[0], 5)
    assert second in layer.receive_buffer
    (still_waiting,) = await waiting(layer, [first])

    await layer.flush()

    for channel in (first, second):
        await layer.send(channel, {"type": "after"})
    assert await asyncio.wait_for(layer.receive(second), 5) == {"type": "after"}
    # flush() closes the connection pools, as in the core layer: the read under the waiting
    # receive() fails (or, reconnected, goes on); either way that receive() ends.
    (outcome,) = await asyncio.wait_for(asyncio.gather(still_waiting, return_exceptions=True), 5)
    assert outcome == {"type": "after"} or isinstance(outcome, redis.ConnectionError), outcome


async def test_a_burst_of_calls_shares_a_bounded_pool_and_every_call_succeeds(redis_server, raw_redis):
    """A burst of sends waits for one of `max_connections` Redis connections (`pool_wait`)
    instead of opening one each and keeping them for the life of the process."""
    name = f"layer-pool-{uuid.uuid4().hex[:8]}"
    layer = LocalFanoutRedisChannelLayer(
        hosts=[{"address": redis_server.url, "client_name": name, "max_connections": 8, "pool_wait": 10}],
        prefix=name,
    )
    channels = [f"{name}-channel-{n}" for n in range(300)]  # not process-local: a key each
    await asyncio.gather(*(layer.send(channel, {"type": "hello"}) for channel in channels))
    assert [await raw_redis.zcard(redis_key(layer, channel)) for channel in channels] == [1] * 300
    clients = [c for c in await raw_redis.client_list() if c["name"] == name]
    assert 1 <= len(clients) <= 8
    await layer.flush()


async def test_channels_joining_at_once_share_one_pipeline_and_their_groups_expire(
    layer, raw_redis, monkeypatch
):
    channels = [await layer.new_channel() for _ in range(50)]
    pipelines = []
    execute = redis.asyncio.client.Pipeline.execute

    async def counted(pipe, *args, **options):
        pipelines.append([str(command[0][0]).upper() for command in pipe.command_stack])
        return await execute(pipe, *args, **options)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", counted)
    groups = [GROUP if n % 2 else "other" for n in range(50)]
    await asyncio.gather(
        *(layer.group_add(group, channel) for group, channel in zip(groups, channels, strict=True))
    )

    assert pipelines == [["ZADD", "EXPIRE", "ZADD", "EXPIRE"]]  # one trip for 50 joins in two groups
    for group in (GROUP, "other"):
        key = layer._group_key(group)
        assert await raw_redis.zcard(key) == 25
        assert 0 < await raw_redis.ttl(key) <= layer.group_expiry
    receiving = await waiting(layer, channels[1::2])
    await layer.group_send(GROUP, {"type": "hello"})
    assert await asyncio.wait_for(asyncio.gather(*receiving), 5) == [{"type": "hello"}] * 25


async def test_a_redis_error_fails_every_join_of_its_pipeline_and_the_next_join_goes_through(
    layer, raw_redis
):
    channels = [await layer.new_channel() for _ in range(3)]
    # A key of the wrong type makes Redis answer ZADD with an error, as a lost server would.
    await raw_redis.set(layer._group_key(GROUP), "not a sorted set")
    joins = await asyncio.gather(
        *(layer.group_add(GROUP, channel) for channel in channels), return_exceptions=True
    )
    assert [type(outcome) for outcome in joins] == [redis.ResponseError] * 3

    await raw_redis.delete(layer._group_key(GROUP))
    await layer.group_add(GROUP, channels[0])
    assert await raw_redis.zrange(layer._group_key(GROUP), 0, -1) == [channels[0].encode()]


async def test_the_reader_takes_each_message_with_one_redis_command_and_leaves_no_backup_key(
    layer, raw_redis, monkeypatch
):
    channels = await channels_in_group(layer, "a", "a")
    sent = []
    execute = redis.asyncio.Redis.execute_command

    async def counted(client, *args, **options):
        sent.append(str(args[0]).upper())
        return await execute(client, *args, **options)

    for n in range(5):
        await layer.send(channels[n % 2], {"type": "hello", "n": n})
    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counted)
    tasks = await waiting(layer, channels)
    got = [await task for task in tasks] + [await layer.receive(channel) for channel in (channels * 2)[:3]]

    assert sorted(message["n"] for message in got) == [0, 1, 2, 3, 4]
    assert set(sent) == {"BZPOPMIN"} and len(sent) <= 6  # the 5 messages, perhaps one more wait
    assert not await raw_redis.keys(f"{layer.prefix}*$inflight")


async def test_a_receive_cancelled_once_woken_leaves_its_message_for_the_next_receive(layer):
    channel = await layer.new_channel()
    buffer = layer.receive_buffer[channel]
    first = asyncio.create_task(buffer.get())
    second = asyncio.create_task(buffer.get())
    await asyncio.sleep(0)

    buffer.put_nowait("hello")  # wakes `first`, which is cancelled before it runs
    first.cancel()

    assert await asyncio.wait_for(second, 1) == "hello"
    assert buffer.empty()


async def test_group_send_takes_one_round_trip_and_delivers_the_core_layers_message(layer, monkeypatch):
    local = await channels_in_group(layer, "a", "a", "b")
    plain = "layer-plain-channel"  # not process-local: its own key
    await layer.group_add(GROUP, plain)
    await layer.group_send(GROUP, {"type": "warm", "n": 0})  # the first call may load the script
    for channel in [*local, plain]:
        assert await layer.receive(channel) == {"type": "warm", "n": 0}
    trips, sending = [], contextvars.ContextVar("sending", default=False)
    execute, pipeline = redis.asyncio.Redis.execute_command, redis.asyncio.client.Pipeline.execute

    async def counted(client, *args, **options):  # other tasks' commands (the core receive's) left out
        if sending.get():
            trips.append(str(args[0]).upper())
        return await execute(client, *args, **options)

    async def counted_pipeline(pipe, *args, **options):
        if sending.get():
            trips.append("pipeline")
        return await pipeline(pipe, *args, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counted)
    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", counted_pipeline)
    message = {"type": "virus.created", "text": '{"seq": 7}', "ids": [1, 2], "nested": {"é": None}}
    sending.set(True)
    await layer.group_send(GROUP, message)
    sending.set(False)
    assert trips == ["EVALSHA"]
    monkeypatch.undo()
    for channel in [*local, plain]:
        assert await layer.receive(channel) == message


async def test_group_send_counts_a_full_channel_and_still_fills_the_others(redis_server, caplog):
    layer = LocalFanoutRedisChannelLayer(
        hosts=[redis_server.url], prefix=f"full-{uuid.uuid4().hex[:8]}", capacity=1
    )
    full, other = await channels_in_group(layer, "a", "b")
    await layer.send(full, {"type": "waiting"})
    with caplog.at_level("INFO", logger="channels_redis.core"):
        await layer.group_send(GROUP, {"type": "hello"})
    assert "event=layer.drop dropped=1 channels=2 group=layer-tests" in caplog.text
    assert await layer.receive(full) == {"type": "waiting"}
    assert await layer.receive(other) == {"type": "hello"}
    await layer.flush()


async def test_a_group_larger_than_one_trip_pays_for_goes_back_to_two(layer, monkeypatch):
    monkeypatch.setattr(layers, "ONE_TRIP_MAX_MEMBERS", 2)
    channels = await channels_in_group(layer, "a", "a", "b")
    one_trips = []
    one_trip = layer._group_send_in_one_trip

    async def counted(group, message):
        one_trips.append(message["n"])
        await one_trip(group, message)

    monkeypatch.setattr(layer, "_group_send_in_one_trip", counted)
    for n in range(3):
        await layer.group_send(GROUP, {"type": "hello", "n": n})
    assert one_trips == [0]  # its size unknown until then: 3 members, above 2
    for channel in channels:
        assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
