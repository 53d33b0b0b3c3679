"""Rooms at scale, over real daphne and Redis: several processes, several Redis hosts, a class
behind one address with the default limits, and a room that is full exactly."""

import asyncio
import contextlib
import random
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import redis
import websockets

from tests.support import harness, nodes
from tests.support.delivery import Player, raise_open_files_limit, wait_for
from tests.support.harness import Api, Client, player
from tools.local_redis import LocalRedis

pytestmark = pytest.mark.timeout(240)

CHANGES = ("virus.created", "virus.killed")
# The settings' defaults, which the suite's environment turns off for other tests.
DEFAULTS = {"VIRUS_RATE_LIMIT": "180", "VIRUS_SNAPSHOT_RATE": "2", "VIRUS_ABUSE_PENALTY": "1"}


@dataclass
class Door:
    """A room's socket on one server, for players that take anything with `url` and `ws_url`."""

    url: str
    ws_url: str


def door(server, code: str) -> Door:
    return Door(server.url, "ws" + server.url.removeprefix("http") + f"/ws/rooms/{code}/")


def create_room(api: Api, name: str) -> dict:
    answer = api.client.post("/api/rooms/", json={"name": name}, headers=api.headers())
    assert answer.status_code == 201, answer.text
    return answer.json()


def create_in(api: Api, code: str) -> dict:
    answer = api.client.post(f"/api/rooms/{code}/viruses/", headers=api.headers())
    assert answer.status_code == 201, answer.text
    return answer.json()


def changes(client: Client) -> list[dict]:
    return [m for m in client.messages if m["type"] in CHANGES]


async def test_a_change_in_a_room_via_one_process_reaches_that_room_alone_on_another(cluster):
    one, two = cluster.start(2)
    host = Api(one.url).start()
    a, b = create_room(host, "Room A"), create_room(host, "Room B")
    async with (
        player(one, api=host, path=f"/ws/rooms/{a['code']}/") as a_on_one,
        player(two, path=f"/ws/rooms/{a['code']}/") as a_on_two,
        player(two, path=f"/ws/rooms/{b['code']}/") as b_on_two,
        player(two) as public_on_two,
    ):
        # Through process 1: a create over the socket, one over HTTP, a kill over the socket.
        made = (await a_on_one.act({"type": "create", "ref": "c1"}))["virus"]
        over_http = await asyncio.to_thread(create_in, host, a["code"])
        assert (await a_on_one.act({"type": "kill", "id": made["id"], "ref": "k1"}))["status"] == 204
        await a_on_two.until(lambda m: m["type"] == "virus.killed")
        assert [(m["type"], m["seq"]) for m in changes(a_on_two)] == [
            ("virus.created", 1),
            ("virus.created", 2),
            ("virus.killed", 3),
        ]
        assert a_on_two.viruses.keys() == {over_http["id"]}
        # Fences: B's and the public world's next change is their own first one.
        fences = [await asyncio.to_thread(create_in, host, b["code"]), await asyncio.to_thread(host.create)]
        for client, fence in zip((b_on_two, public_on_two), fences, strict=True):
            first = await client.until(lambda m: m["type"] in CHANGES)
            fence_id = fence["id"] if isinstance(fence, dict) else fence.json()["id"]
            assert (first["seq"], first["virus"]["id"]) == (1, fence_id)
    cluster.assert_clean()


async def test_seq_is_gap_free_per_room_under_concurrent_writers_in_several_rooms_on_two_processes(cluster):
    servers = cluster.start(2)
    host = Api(servers[0].url).start()
    codes = [create_room(host, f"Room {i}")["code"] for i in range(3)]
    writes = 12  # per room and per process

    async def write(server, code: str) -> list[int]:
        async with harness.Api(server.url, asynchronous=True) as api:
            answers = [
                await api.client.post(f"/api/rooms/{code}/viruses/", headers=api.headers())
                for _ in range(writes)
            ]
        return [answer.status_code for answer in answers]

    async with (
        player(servers[0], path=f"/ws/rooms/{codes[0]}/") as w0_one,
        player(servers[1], path=f"/ws/rooms/{codes[0]}/") as w0_two,
        player(servers[0], path=f"/ws/rooms/{codes[1]}/") as w1_one,
        player(servers[1], path=f"/ws/rooms/{codes[1]}/") as w1_two,
        player(servers[0], path=f"/ws/rooms/{codes[2]}/") as w2_one,
        player(servers[1], path=f"/ws/rooms/{codes[2]}/") as w2_two,
    ):
        statuses = await asyncio.gather(*(write(s, code) for code in codes for s in servers))
        assert all(s == [201] * writes for s in statuses), statuses
        watchers = {codes[0]: (w0_one, w0_two), codes[1]: (w1_one, w1_two), codes[2]: (w2_one, w2_two)}
        everything = set(range(1, 2 * writes + 1))
        for code, clients in watchers.items():
            listed = await asyncio.to_thread(host.get, f"/api/rooms/{code}/viruses/")
            assert listed.json()["seq"] == 2 * writes
            for client in clients:
                # Two processes publish in their own order (the client applies by seq): the last
                # seq may come before another process's earlier one, so wait for all of them.
                await client.until(lambda m, c=client: {x["seq"] for x in changes(c)} >= everything)
                # Every change of its room exactly once, none of the others'.
                assert sorted(m["seq"] for m in changes(client)) == list(range(1, 2 * writes + 1))
                assert client.seq == 2 * writes
                assert client.viruses.keys() == {v["id"] for v in listed.json()["viruses"]}
    cluster.assert_clean()


def room_groups(url: str, prefix: str) -> set[str]:
    """Codes of the rooms whose group this Redis holds (channels-redis's `<prefix>:group:<name>`)."""
    client = redis.Redis.from_url(url)
    try:
        keys = client.keys(f"{prefix}:group:room.*")
    finally:
        client.close()
    return {key.decode().rsplit(".", 1)[1] for key in keys}


async def test_rooms_groups_spread_over_two_redis_hosts_and_every_room_works(start_game, tmp_path):
    hosts = [LocalRedis(tmp_path / f"redis-{i}").start() for i in range(2)]
    try:
        game = start_game(REDIS_URL=",".join(h.url for h in hosts))
        prefix = game.env["REDIS_PREFIX"]
        host = Api(game.url).start()
        rooms, sockets, placed = [], [], [set(), set()]
        async with contextlib.AsyncExitStack() as stack:
            # Rooms until both hosts hold some (each lands on one by the hash of its group name).
            while not all(placed) and len(rooms) < 10:
                rooms.append(create_room(host, f"Room {len(rooms)}")["code"])
                sockets.append(await stack.enter_async_context(player(game, path=f"/ws/rooms/{rooms[-1]}/")))
                placed = [room_groups(h.url, prefix) for h in hosts]
            assert all(placed), f"{len(rooms)} rooms, all on one host: {placed}"
            assert placed[0] | placed[1] == set(rooms) and not placed[0] & placed[1]
            for code, client in zip(rooms, sockets, strict=True):
                assert client.messages[0]["room"]["code"] == code
                made = (await client.act({"type": "create", "ref": "c"}))["virus"]
                assert (await client.seen(lambda m: m["type"] == "virus.created"))["virus"] == made
                assert (await client.act({"type": "kill", "id": made["id"], "ref": "k"}))["status"] == 204
                killed = await client.seen(lambda m: m["type"] == "virus.killed")
                assert (killed["id"], killed["seq"]) == (made["id"], 2)
            # Each room saw its own two changes and nobody else's.
            assert [[m["seq"] for m in changes(c)] for c in sockets] == [[1, 2]] * len(rooms)
        assert "Traceback" not in game.read_log()
    finally:
        for h in hosts:
            h.stop()


SCHOOL = "127.0.0.78"  # the class's one address (NAT)
CLASS = 60
ROUNDS = 3  # creates and kills per pupil, at a human pace


async def pupil_joins(server, code: str, index: int) -> Player | str:
    api = harness.Api(server.url, asynchronous=True, connections=2, local_address=SCHOOL)
    try:
        await api.start()
        return await Player(door(server, code), name=f"pupil-{index}", local_addr=SCHOOL, api=api).start(30)
    except (httpx.HTTPError, TimeoutError) as exc:
        await api.close()
        return f"{type(exc).__name__}: {exc}"


async def plays(pupil: Player, rng: random.Random) -> list[tuple[int, str]]:
    answers = []
    for _ in range(ROUNDS):
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # a child looking for the next virus
        status, virus, path = await pupil.act({"type": "create"})
        answers.append((status, path))
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        status, _, path = await pupil.act({"type": "kill", "id": virus["id"]})
        answers.append((status, path))
    return answers


async def test_a_class_of_sixty_behind_one_address_joins_one_room_and_plays_with_the_default_limits(
    start_game,
):
    raise_open_files_limit()
    game = start_game(**DEFAULTS)
    teacher = harness.Api(game.url, local_address=SCHOOL).start()
    code = create_room(teacher, "Class 4B")["code"]
    joined = await asyncio.gather(*(pupil_joins(game, code, i) for i in range(CLASS)))
    pupils = [p for p in joined if isinstance(p, Player)]
    try:
        assert len(pupils) == CLASS, [p for p in joined if not isinstance(p, Player)][:3]
        played = await asyncio.gather(*(plays(p, random.Random(i)) for i, p in enumerate(pupils)))
        assert all(a == [(201, "socket"), (204, "socket")] * ROUNDS for a in played), played
        total = CLASS * ROUNDS * 2

        async def everyone_saw_everything() -> bool:
            return all(p.seq == total for p in pupils)

        await wait_for(
            everyone_saw_everything,
            20,
            "every pupil saw every change",
            detail=lambda: [p.seq for p in pupils],
        )
        for pupil in pupils:
            assert sorted({m["seq"] for m in pupil.changes}) == list(range(1, total + 1))
            assert pupil.viruses == {} and pupil.close_codes == [] and pupil.refusals == []
            assert pupil.online == CLASS
    finally:
        for pupil in pupils:
            await pupil.stop()
            await pupil.api.close()
    assert "ws.refused" not in game.read_log() and "Traceback" not in game.read_log()


async def test_a_burst_of_joins_over_two_processes_fills_a_room_exactly_and_the_rest_get_4409(cluster):
    most = 6
    servers = cluster.start(2, VIRUS_ROOM_MAX_PLAYERS=str(most))
    code = create_room(Api(servers[0].url).start(), "Exact")["code"]

    async def join(i: int):
        server = servers[i % 2]
        ws = await websockets.connect(door(server, code).ws_url, origin=server.url, max_size=None)
        try:
            first = await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            return ws, closed.rcvd.code if closed.rcvd else 1006
        return ws, "snapshot" if '"snapshot"' in first else first

    outcomes = list(await asyncio.gather(*(join(i) for i in range(most + 5))))
    try:
        results = sorted(str(result) for _, result in outcomes)
        assert results == ["4409"] * 5 + ["snapshot"] * most, results
        # A place given back is a place for the next one, on either process.
        await next(ws for ws, result in outcomes if result == "snapshot").close()
        await asyncio.sleep(0.5)
        outcomes.append(await join(1))
        outcomes.append(await join(0))
        assert [result for _, result in outcomes[-2:]] == ["snapshot", 4409]
    finally:
        for ws, _ in outcomes:
            await ws.close()
    cluster.assert_clean()


async def test_on_postgresql_a_write_in_one_room_never_waits_for_another_rooms_lock(game):
    nodes.require_postgres()
    host = Api(game.url).start()
    a, b = create_room(host, "Busy")["code"], create_room(host, "Free")["code"]
    with psycopg.connect(game.env["DATABASE_URL"]) as holder:  # a long change in room A, in flight
        holder.execute(
            "SELECT c.value FROM viruses_changecounter c JOIN viruses_room r ON r.id = c.room_id"
            " WHERE r.code = %s FOR UPDATE OF c",
            [a],
        )
        in_a = asyncio.create_task(asyncio.to_thread(create_in, Api(game.url).start(), a))
        in_b = await asyncio.wait_for(asyncio.to_thread(create_in, host, b), 5)  # B does not wait
        assert in_b["id"]
        await asyncio.sleep(1.0)
        assert not in_a.done(), "room A's write waits for room A's counter"
        holder.commit()
    assert (await asyncio.wait_for(in_a, 10))["id"]
    assert [host.get(f"/api/rooms/{code}/viruses/").json()["seq"] for code in (a, b)] == [1, 1]


async def test_a_full_room_stays_full_past_its_places_lifetime_while_its_players_stay(start_game):
    # Places expire after 3 heartbeats unless the heartbeat renews them (admission.py).
    game = start_game(VIRUS_ROOM_MAX_PLAYERS="2", VIRUS_PRESENCE_HEARTBEAT="1")
    code = create_room(Api(game.url).start(), "Two")["code"]
    path = f"/ws/rooms/{code}/"
    async with player(game, path=path), player(game, path=path):
        await asyncio.sleep(5)  # past the 3 s lifetime: only renewal keeps the two places
        async with websockets.connect(door(game, code).ws_url, origin=game.url) as ws:
            assert await harness.close_code(ws) == 4409
    async with player(game, path=path) as again:  # both left: their places were given back
        assert again.messages[0]["room"]["code"] == code
