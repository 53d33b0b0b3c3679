"""The README's delivery guarantees: Redis and the database going away.

Outages are made with components the test owns: a private redis-server it stops and starts,
a SQLite write lock held from the test process, PostgreSQL backends terminated for the
game's own database, and a loopback proxy in front of PostgreSQL that is cut and restored.
The machine's Redis and PostgreSQL are never stopped.
"""

import asyncio
import sqlite3
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis
import websockets

from tests.support import harness
from tests.support.delivery import (
    Player,
    TcpProxy,
    api_state,
    converge,
    group_members,
    sqlite_path,
    wait_for,
)
from tests.support.harness import uses_postgres
from tools.local_redis import LocalRedis
from tools.servers import Api

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def private_redis(tmp_path):
    redis = LocalRedis(tmp_path / "private-redis").start()
    yield redis
    redis.stop()


async def refused_with(server, timeout: float = 15) -> int | None:
    """Open a WebSocket; return the close code it ends with (None: handshake failed)."""
    try:
        async with websockets.connect(server.ws_url, origin=server.url, open_timeout=timeout) as ws:
            message = await asyncio.wait_for(ws.recv(), timeout)
            raise AssertionError(f"served during the outage: {message[:80]}")
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


# 4. Redis outage ---------------------------------------------------------------------------


async def test_redis_outage_http_keeps_working_and_clients_converge_after(cluster, private_redis):
    # The private Redis carries both the channel layer and the cache (rate limit on: it
    # must fail open, not turn into 500s).
    (server,) = cluster.start(
        1, REDIS_URL=private_redis.url, VIRUS_RATE_LIMIT="1000", VIRUS_PRESENCE_HEARTBEAT="1"
    )
    pid = server.process.pid
    players = [await Player(server, name=f"p{i}", seed=i).start() for i in range(4)]
    async with Api(server.url, asynchronous=True) as api:
        before = [(await api.create()).json()["id"] for _ in range(5)]
        await converge(players, server)

        private_redis.stop()
        await wait_for(lambda: all(p.close_codes for p in players), 10, "live sockets notice the outage")
        assert {code for p in players for code in p.close_codes} == {1013}

        health = await api.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"database": "ok", "channel_layer": "down"})
        started = time.monotonic()
        during = [(await api.create()).json()["id"] for _ in range(10)]
        create_seconds = (time.monotonic() - started) / 10
        kills = [await api.kill(v) for v in (*before[:3], *during[:2])]
        cron = await asyncio.to_thread(server.manage, "spawn_virus", "--count", "3")
        assert cron.stdout.count("Spawned ") == 3
        code = await refused_with(server)
        assert code == 1013  # new sockets: "try again later", not a 500
        assert set(api.statuses) == {201, 204, 503}  # 503: only /healthz, naming Redis
        assert all(k.status_code == 204 for k in kills)
        await asyncio.sleep(1.5)  # a few heartbeats and reconnect attempts in the dark

        private_redis.start()
        truth, recovered = await converge(players, server, timeout=20)
        after = (await api.create()).json()["id"]  # pushed live again, no restart
        await wait_for(lambda: all(after in p.viruses for p in players), 10, "push after recovery")
        health = await api.get("/healthz")
        assert health.status_code == 200

    truth = await asyncio.to_thread(api_state, server)
    listing = await asyncio.to_thread(httpx.get, f"{server.url}/api/viruses/")
    ids = [v["id"] for v in listing.json()["viruses"]]
    spawned = [line.split()[1] for line in cron.stdout.splitlines() if line.startswith("Spawned ")]
    expected = set(before[3:]) | set(during[2:]) | set(spawned) | {after}
    assert len(ids) == len(set(ids)) and set(ids) == expected  # nothing lost, nothing twice
    assert truth["seq"] == 5 + 10 + 5 + 3 + 1
    for player in players:
        assert player.state() == truth
        await player.stop()
    assert server.process.pid == pid and server.process.poll() is None
    print(
        f"redis outage: creates took {create_seconds * 1000:.0f} ms each while down; "
        f"{len(players)} clients converged {recovered:.1f} s after Redis returned"
    )
    cluster.assert_clean()


def forget_the_game_s_redis_data(env: dict[str, str]) -> int:
    """Delete every key of the game's prefix: FLUSHALL, or a failover to an empty replica,
    as this game sees it (other users of a shared Redis keep theirs)."""
    client = redis.Redis.from_url(env["REDIS_URL"].split(",")[0])
    try:
        keys = list(client.scan_iter(match=f"{env['REDIS_PREFIX']}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


async def test_after_redis_loses_its_data_every_connected_player_gets_the_next_pushes(start_game):
    # The heartbeat, which also re-adds sockets to the group, is not what is tested here.
    game = start_game(VIRUS_PRESENCE_HEARTBEAT="600", VIRUS_RATE_LIMIT="0")
    async with (
        harness.player(game) as alice,
        harness.player(game) as bob,
        Api(game.url, asynchronous=True) as api,
    ):
        assert group_members(game.env) == 2
        assert await asyncio.to_thread(forget_the_game_s_redis_data, game.env) > 0
        # Creates until one reaches both (those made before the process noticed reach nobody).
        created: list[str] = []
        seen = {"alice": set(), "bob": set()}

        async def watch(name, client):
            while True:
                message = await client.until(lambda m: m["type"] == "virus.created", timeout=60)
                seen[name].add(message["virus"]["id"])

        watchers = [asyncio.create_task(watch("alice", alice)), asyncio.create_task(watch("bob", bob))]
        try:

            def both_got_one() -> bool:
                return bool(seen["alice"] & seen["bob"] & set(created))

            async def create_and_check() -> bool:
                if not both_got_one():
                    created.append((await api.create()).json()["id"])
                return both_got_one()

            await wait_for(create_and_check, 20, "a push reaching both players", interval=0.5)
        finally:
            for task in watchers:
                task.cancel()
    assert "event=presence.redis_lost_data channels=2" in game.read_log()
    assert "Traceback" not in game.read_log()


# 5. Database trouble -----------------------------------------------------------------------


@pytest.mark.skipif(uses_postgres(), reason="SQLite's write lock; PostgreSQL has its own tests")
async def test_sqlite_lock_held_too_long_answers_503_and_closes_sockets_cleanly(cluster):
    first, second = cluster.start(2)
    live = await Player(first, name="live").start()
    lock = sqlite3.connect(sqlite_path(cluster.env), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process's long write: holds the write lock throughout
    try:
        async with Api(first.url, asynchronous=True) as api:
            started = time.monotonic()
            refused, code = await asyncio.gather(api.create(), refused_with(second))
            waited = time.monotonic() - started
        # Both answered while the lock is still held: the busy timeout ended the wait, not the
        # lock's release (a hang would only end here, when the lock goes).
        assert refused.status_code == 503 and "unavailable" in refused.json()["error"]
        assert code == 1013  # closed cleanly, not left half-open
    finally:
        lock.rollback()
        lock.close()

    async with Api(first.url, asynchronous=True) as api:
        assert (await api.create()).status_code == 201
    back = await Player(second, name="back").start()
    truth, _ = await converge([live, back], first)
    assert truth["seq"] == 1 and len(truth["ids"]) == 1  # the refused create left nothing behind
    print(f"sqlite busy: 503 and the socket closed 1013 after {waited:.1f} s")
    for player in (live, back):
        await player.stop()
    cluster.assert_clean()


@pytest.mark.skipif(uses_postgres(), reason="SQLite's write lock")
def test_healthz_reports_a_database_whose_write_lock_another_process_holds(game):
    assert httpx.get(f"{game.url}/healthz", timeout=10).json() == {"database": "ok", "channel_layer": "ok"}
    lock = sqlite3.connect(sqlite_path(game.env), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process's long write: reads still work
    try:
        held = httpx.get(f"{game.url}/healthz", timeout=10)
        assert httpx.get(f"{game.url}/api/viruses/", timeout=10).status_code == 200
    finally:
        lock.rollback()
        lock.close()
    assert (held.status_code, held.json()) == (503, {"database": "down", "channel_layer": "ok"})
    assert "event=healthz.down part=database" in game.read_log()
    back = httpx.get(f"{game.url}/healthz", timeout=10)
    assert (back.status_code, back.json()) == (200, {"database": "ok", "channel_layer": "ok"})


@pytest.mark.skipif(not uses_postgres(), reason="needs PostgreSQL (DATABASE_URL)")
def test_healthz_reports_a_read_only_postgresql(game):
    name = urlsplit(game.env["DATABASE_URL"]).path.lstrip("/")
    admin = urlunsplit(urlsplit(game.env["DATABASE_URL"])._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    terminate_backends(game.env["DATABASE_URL"])  # new connections get the setting
    try:
        # Reads work again once every pooled connection has been replaced (killed ones fail once).
        answers = []
        while answers[-20:] != [200] * 20:
            answers.append(httpx.get(f"{game.url}/api/viruses/", timeout=10).status_code)
            assert len(answers) < 200, answers
        held = httpx.get(f"{game.url}/healthz", timeout=10)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        terminate_backends(game.env["DATABASE_URL"])
    assert (held.status_code, held.json()) == (503, {"database": "down", "channel_layer": "ok"})


def terminate_backends(database_url: str) -> int:
    """Kill every server-side connection of the game's database (as a PostgreSQL restart would)."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


@pytest.mark.skipif(not uses_postgres(), reason="needs PostgreSQL (DATABASE_URL)")
async def test_postgres_connections_killed_mid_play_answer_503_or_succeed(cluster):
    # Sockets come and go on a second server: a consumer that ends can cost its neighbours a
    # message in channels-redis (django/channels#1683), which is not what this test is about.
    server, churned = cluster.start(2, VIRUS_MAX_ALIVE="1000", DATABASE_CONN_MAX_AGE="60")
    observer = await Player(server, name="observer").start()
    stop = asyncio.Event()
    killed = 0

    async def killer():
        nonlocal killed
        while not stop.is_set():
            killed += await asyncio.to_thread(terminate_backends, cluster.env["DATABASE_URL"])
            await asyncio.sleep(0.25)

    async def player_churn():
        closes = []
        while not stop.is_set():
            try:
                async with websockets.connect(churned.ws_url, origin=churned.url) as ws:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as closed:
                closes.append(closed.rcvd.code if closed.rcvd else None)
            await asyncio.sleep(0.1)
        return closes

    async def play(api):
        created = []
        for _ in range(40):
            response = await api.create()
            if response.status_code == 201:
                created.append(response.json()["id"])
            if len(created) > 3:
                await api.kill(created.pop(0))
            await api.get("/api/viruses/")
            await asyncio.sleep(0.05)

    async with Api(server.url, asynchronous=True) as api:
        tasks = [asyncio.create_task(killer()), asyncio.create_task(player_churn())]
        await play(api)
        stop.set()
        _, closes = await asyncio.gather(*tasks)
        statuses = api.statuses

    assert set(statuses) <= {200, 201, 204, 404, 503}, statuses
    assert statuses.count(201) > 0 and killed > 0
    assert set(closes) <= {1013, None}
    truth, _ = await converge([observer], server)
    # Nothing half-written: every seq is one pushed change, and replaying them is the database.
    assert observer.seqs_received() == list(range(1, truth["seq"] + 1))
    print(
        f"postgres kills: {killed} backends terminated; {statuses.count(503)} of {len(statuses)} "
        f"requests answered 503, the rest succeeded; 0 errors 500"
    )
    await observer.stop()
    cluster.assert_clean()


@pytest.mark.skipif(not uses_postgres(), reason="needs PostgreSQL (DATABASE_URL)")
async def test_postgres_going_away_and_coming_back_needs_no_restart(cluster):
    target = urlsplit(cluster.env["DATABASE_URL"])
    proxy = await TcpProxy(target.hostname, target.port or 5432).start()
    through_proxy = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
    # Started from a thread: the proxy runs on this test's event loop.
    (server,) = await asyncio.to_thread(cluster.start, 1, DATABASE_URL=through_proxy)
    live = await Player(server, name="live").start()
    async with Api(server.url, asynchronous=True) as api:
        assert (await api.create()).status_code == 201

        await proxy.stop()  # PostgreSQL goes away
        started = time.monotonic()
        create = await api.create()
        answered = time.monotonic() - started
        listing = await api.get("/api/viruses/")
        health = await api.get("/healthz")
        code = await refused_with(server)
        assert create.status_code == 503 and "unavailable" in create.json()["error"]
        assert listing.status_code == 503
        assert (health.status_code, health.json()["database"]) == (503, "down")
        assert code == 1013

        await proxy.start()  # and comes back
        assert (await api.create()).status_code == 201
    back = await Player(server, name="back").start()
    truth, _ = await converge([live, back], server)
    assert truth["seq"] == 2 and len(truth["ids"]) == 2
    print(f"postgres away: 503 in {answered * 1000:.0f} ms, served again without a restart")
    for player in (live, back):
        await player.stop()
    await proxy.stop()
    cluster.assert_clean()
