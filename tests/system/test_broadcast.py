"""viruses/broadcast.py: in a server process pushes leave from its event loop, in order (those
queued meanwhile as one batch), and the writer's answer never waits for them."""

import asyncio
import os
import signal

import httpx
import pytest

from tests.support import harness
from tests.support.harness import player
from tools.gameclient import CHANGES, decode
from tools.local_redis import LocalRedis

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("fastlane", ["1", "0"])
async def test_a_burst_committed_while_a_push_is_in_flight_reaches_a_client_whole_in_fewer_frames(
    game_env, tmp_path, fastlane
):
    """Redis hangs during the first push; the changes committed meanwhile follow as one batch."""
    redis = LocalRedis(tmp_path / "redis").start()
    env = {**game_env, "REDIS_URL": redis.url, "VIRUS_FASTLANE": fastlane}
    server = harness.GameServer(env, tmp_path / "daphne.log").start()
    total = 12
    try:
        api = server.api()
        async with player(server) as watcher:
            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                for _ in range(total):
                    assert (await asyncio.to_thread(api.create)).status_code == 201
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
            seqs, frames = [], 0
            while len(seqs) < total:
                frame = await asyncio.wait_for(watcher.ws.recv(), 20)
                changes = [m for m in decode(frame) if m["type"] in CHANGES]
                frames += bool(changes)
                seqs += [m["seq"] for m in changes]
            assert seqs == list(range(1, total + 1))
            assert frames <= 3, f"{total} changes came in {frames} frames"
            # The push's log line follows its group_send, which may return after the
            # reader in the same process has already delivered the batch.
            for _ in range(50):
                if "type=batch" in server.read_log():
                    break
                await asyncio.sleep(0.1)
            assert "type=batch" in server.read_log()
    finally:
        server.stop()
        redis.stop()


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
