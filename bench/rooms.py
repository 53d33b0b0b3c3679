"""The many-rooms phase: R rooms of S players each, every room busy at once.

Each room is its own swarm on `/ws/rooms/<code>/`; a step sends `rate` actions per second in
total, `rate / R` in each room, over the players' own sockets, with the game load's rule
(bench/gameload.py): every action answered, every change to every player of its room, p99
send -> last player of the room within 250 ms, actions on schedule. The capacity is the
highest total rate that held, to set beside one room of R x S players (the game load's P).

On PostgreSQL it also shows what a room's own counter row is for: the same rate, first all in
one room and then spread over every room, while pg_locks is sampled for waiting locks.
"""

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path

import psycopg

from bench import gameload
from bench.client import Swarm
from tools.local_redis import LocalRedis
from tools.servers import Api, Databases, base_env, collectstatic, raise_open_files_limit

LOCK_SAMPLE_EVERY = 0.005  # s between pg_locks samples
# Room creation unthrottled: the phase makes all its rooms from one player and one address.
UNTHROTTLED_ROOMS = {"VIRUS_ROOM_CREATE_BURST": "1000", "VIRUS_ROOM_ADDRESS_BURST": "1000"}
WAITING = (
    "SELECT count(*) FROM pg_locks WHERE NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def create_rooms(base_url: str, count: int) -> list[str]:
    async with Api(base_url, asynchronous=True, check=True) as api:
        codes = []
        for i in range(count):
            answer = await api.client.post("/api/rooms/", json={"name": f"Bench {i}"}, headers=api.headers())
            answer.raise_for_status()
            codes.append(answer.json()["code"])
    return codes


async def step_in(swarms: list[Swarm], rate: float, seconds: float) -> dict:
    """`rate` actions/s in total, shared evenly by `swarms`' rooms at once: one merged summary.

    The rooms' schedules interleave (room i starts i / rate s later): one even stream, not
    every room acting at the same instant.
    """
    each = rate / len(swarms)
    steps = await asyncio.gather(
        *(
            gameload.run_actions(s, gameload.SocketActions(s), each, seconds, offset=i / rate)
            for i, s in enumerate(swarms)
        )
    )
    merged = gameload.Step(rate=rate, players=sum(s.players for s in steps))
    for step in steps:
        merged.actions += step.actions
        merged.completion += step.completion
        merged.lost += step.lost
        merged.late = max(merged.late, step.late)
        merged.client_cpu = max(merged.client_cpu, step.client_cpu)  # each measured the whole process
    return merged.summary()


async def lock_waits(database_url: str, work) -> dict:
    """Run `work` while sampling waiting locks: the share of samples with a waiter, and the mean."""
    samples: list[int] = []
    task = asyncio.ensure_future(work)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while not task.done():
            samples.append((await (await conn.execute(WAITING)).fetchone())[0])
            await asyncio.sleep(LOCK_SAMPLE_EVERY)
    summary = await task
    return {
        "rate": summary["rate"],
        "p99_ms": summary["p99_ms"],
        "failed": gameload.verdict(summary),
        "samples": len(samples),
        "samples_with_waiters_pct": round(100 * sum(1 for n in samples if n) / max(1, len(samples)), 1),
        "mean_waiting": round(sum(samples) / max(1, len(samples)), 2),
    }


async def phase(
    base_url: str, port: int, profile: dict, *, ceiling: float, say, database_url: str = "", sources=None
) -> dict:
    """The capacity of `rooms` x `size` players served at `port`; `sources`: local addresses to use."""
    rooms, size = profile["rooms"], profile["size"]
    say(f"  many rooms: {rooms} rooms of {size} players")
    codes = await create_rooms(base_url, rooms)
    swarms = [Swarm("127.0.0.1", port, path=f"/ws/rooms/{code}/", sources=sources) for code in codes]
    started = time.perf_counter()
    ramps = await asyncio.gather(*(s.connect(size, concurrency=10, wait=60) for s in swarms))
    refused = sum(r["refused"] for r in ramps)
    connected, seconds = sum(r["connected"] for r in ramps), time.perf_counter() - started
    say(f"  many rooms: {connected} connected in {seconds:.1f} s, {refused} refused")
    result: dict = {
        "rooms": rooms,
        "size": size,
        "players": sum(len(s.open_players) for s in swarms),
        "refused": refused,
    }
    try:
        await asyncio.sleep(2.0)

        async def step(rate):
            return await step_in(swarms, rate, profile["step_seconds"])

        found = await gameload.search(profile["rates"], step, ceiling=ceiling / size, say=say)
        found["deliveries_per_s"] = round(found["capacity"] * size)
        result.update(found)
        say(f"  many rooms: capacity {found['capacity']:g} actions/s in all, next step: {found['next_step']}")
        if database_url.startswith("postgres") and found["capacity"]:
            rate = found["capacity"]
            await asyncio.sleep(1.0)
            result["locks"] = {
                "one_room": await lock_waits(
                    database_url, step_in(swarms[:1], rate, profile["step_seconds"])
                ),
                "all_rooms": await lock_waits(database_url, step(rate)),
            }
            say(f"  many rooms: waiting locks at {rate:g} actions/s: {result['locks']}")
        result["closed_by_server"] = sum(s.closed_by_server for s in swarms)
    finally:
        for swarm in swarms:
            swarm.close_all()
    return result


# -- behind the deploy kit's nginx: python -m bench.rooms [--quick] -------------------------


def behind_nginx(profile: dict, nodes_count: int = 2) -> dict:
    """The phase on PostgreSQL, `nodes_count` daphne processes (the unit's flags) behind nginx."""
    from bench.run import MAX_DELIVERIES, say
    from tests.support import nodes  # the test suite's nginx and nodes: the same kit, the same way

    raise_open_files_limit(1 << 20)
    work = Path(tempfile.mkdtemp(prefix="virusrooms-"))
    redis = LocalRedis(work / "redis").start()
    databases = Databases(work)
    assert databases.postgres_url, "set DATABASE_URL to a PostgreSQL server"
    static = work / "static"
    collectstatic(databases.fresh(), static)
    proxy_port = nodes.harness.free_port()
    env = base_env(
        database_url=databases.fresh(),
        redis_url=redis.url,
        DJANGO_STATIC_ROOT=str(static),
        DJANGO_CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{proxy_port}",
        DJANGO_BEHIND_TLS_PROXY="true",
        VIRUS_MAX_ALIVE="100000",
        VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",
        **UNTHROTTLED_ROOMS,
    )
    started = nodes.start_nodes(nodes_count, env, work)
    (work / "nginx").mkdir()
    proxy = nodes.Nginx(work / "nginx", [n.port for n in started], port=proxy_port, worker_connections=8192)
    try:
        proxy.start()
        # Players from 100 loopback addresses: nginx's per-address handshake pacing is for one person.
        sources = itertools.cycle(f"127.0.0.{i}" for i in range(2, 102))
        result = asyncio.run(
            phase(
                started[0].url, proxy.port, profile, ceiling=MAX_DELIVERIES, say=say,
                database_url=env["DATABASE_URL"], sources=sources,
            )
        )  # fmt: skip
        result["nodes"] = nodes_count
        result["errors_in_nginx_log"] = proxy.read_log().count("[error]")
    finally:
        proxy.stop()
        for node in started:
            node.stop()
        redis.stop()
        databases.drop_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rooms", description=behind_nginx.__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.run import PROFILES, RESULTS

    result = behind_nginx(PROFILES["quick" if args.quick else "full"]["rooms"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"rooms-nginx-{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
