"""viruses/broadcast.py: in a server process pushes leave from its event loop, in order, and
the writer's answer never waits for them."""

import asyncio
import os
import signal

import httpx
import pytest

from tests import harness
from tests.harness import player
from tools.local_redis import LocalRedis
from viruses import broadcast, messages

pytestmark = pytest.mark.timeout(120)


async def test_pushes_handed_over_from_a_writer_thread_leave_in_the_order_given(pushes, monkeypatch):
    pusher = broadcast.Pusher(asyncio.get_running_loop())
    monkeypatch.setattr(broadcast, "_pusher", pusher)

    def commit_fifty():  # as writers do: on_commit callbacks, in a thread, in commit order
        for seq in range(1, 51):
            broadcast.push(messages.killed_event(seq=seq, virus_id=f"v{seq}"))

    try:
        await asyncio.to_thread(commit_fifty)
        assert [(await pushes.receive())["seq"] for _ in range(50)] == list(range(1, 51))
    finally:
        pusher.task.cancel()


async def test_a_stalled_redis_does_not_hold_the_acting_players_answer(game_env, tmp_path):
    redis = LocalRedis(tmp_path / "redis").start()
    server = harness.GameServer({**game_env, "REDIS_URL": redis.url}, tmp_path / "daphne.log").start()
    try:
        api = server.api()
        async with player(server) as alice, player(server) as bob:
            os.kill(redis.process.pid, signal.SIGSTOP)  # Redis hangs: no answer, no error
            try:
                created = await asyncio.to_thread(api.create)
                acked = await alice.act({"type": "create", "ref": "during"}, timeout=10)
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
            # Both answered while Redis was frozen; their pushes follow once it is back.
            assert created.status_code == 201 and acked["status"] == 201
            for client in (alice, bob):
                await client.until(lambda m: m["type"] == "virus.created" and m["seq"] == 2)
                assert set(client.viruses) == {created.json()["id"], acked["virus"]["id"]}
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise AssertionError("an answer waited for the stalled Redis") from exc
    finally:
        server.stop()
        redis.stop()
