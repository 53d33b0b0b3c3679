"""The write path from the acting player's side: how long its own create and kill take to answer.

    python -m bench.writepath [--players 100] [--actions 60] [--in-flight 1] [--env KEY=VALUE ...]
                              [--profile FILE]

Starts one daphne on a fresh database (PostgreSQL when DATABASE_URL points at one, else
SQLite) and Redis (REDIS_URL's, else a private one), connects P WebSocket players that read
everything, then acts one action at a time: K POST + DELETE pairs from a keep-alive HTTP
client, then K create + kill pairs over the players' sockets, each pair from the next
player (`--in-flight N`: N pairs at once, K in all). Prints the p50/p99 of each answer as the actor
waits for it, daphne's CPU time per action (the socket phase's until every player has every
change), and checks that every player received every change.
`--profile FILE` runs daphne under cProfile, every thread included (bench/profiled.py).
Figures are in docs/benchmarks/2026-11-29-write-path.md and docs/performance.md#levers.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import websockets

from tools.local_redis import LocalRedis
from tools.servers import PYTHON, Api, Databases, GameServer, base_env, collectstatic, raise_open_files_limit


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


class Player:
    """A socket that reads everything; counts the changes it got."""

    def __init__(self, ws):
        self.ws = ws
        self.changes = 0
        self.answers: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        async for frame in self.ws:
            data = json.loads(frame)
            for message in data if isinstance(data, list) else [data]:
                if message["type"].startswith("virus."):
                    self.changes += 1
                elif message["type"] in ("ack", "error"):
                    self.answers.put_nowait(message)

    async def act(self, message: dict) -> dict:
        await self.ws.send(json.dumps(message))
        return await self.answers.get()


async def measure(server: GameServer, players: int, actions: int, in_flight: int = 1) -> dict:
    sockets = [
        await websockets.connect(server.ws_url, origin=server.url, max_size=None) for _ in range(players)
    ]
    crowd = [Player(ws) for ws in sockets]
    times: dict[str, list[float]] = {"POST": [], "DELETE": [], "ws create": [], "ws kill": []}
    pid = server.process.pid
    cpu = {}
    async with Api(server.url, asynchronous=True, check=True) as api:
        for _ in range(3):  # warm up: first connections, imports, caches
            await api.kill((await api.create()).json()["id"])
        mark = cpu_seconds(pid)
        for _ in range(actions):
            started = time.perf_counter()
            virus = (await api.create()).json()
            times["POST"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await api.kill(virus["id"])
            times["DELETE"].append(time.perf_counter() - started)
        cpu["http"] = cpu_seconds(pid) - mark

    async def play(pairs: range) -> None:
        for i in pairs:
            # Pair i from player i: one socket sending every action would pass the flood limit.
            actor = crowd[i % len(crowd)]
            started = time.perf_counter()
            answer = await actor.act({"type": "create", "ref": f"c{i}"})
            times["ws create"].append(time.perf_counter() - started)
            assert answer["status"] == 201, answer
            started = time.perf_counter()
            answer = await actor.act({"type": "kill", "id": answer["virus"]["id"], "ref": f"k{i}"})
            times["ws kill"].append(time.perf_counter() - started)
            assert answer["status"] == 204, answer

    pushed = await group_messages(server.url)
    mark = cpu_seconds(pid)
    await asyncio.gather(*(play(range(n, actions, in_flight)) for n in range(in_flight)))
    answered = time.perf_counter()
    expected = (3 + 2 * actions) * 2
    for _ in range(1000):  # up to 10 s for the last pushes, whose cost counts too
        if all(p.changes >= expected for p in crowd):
            break
        await asyncio.sleep(0.01)
    lag = time.perf_counter() - answered
    cpu["socket"] = cpu_seconds(pid) - mark
    pushed = [after - before for after, before in zip(await group_messages(server.url), pushed, strict=True)]
    lost = sum(expected - p.changes for p in crowd)
    for ws in sockets:
        await ws.close()
    result = {name: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for name, v in times.items()}
    per_action = {path: seconds / (2 * actions) * 1000 for path, seconds in cpu.items()}
    return {"ms": result, "lost": lost, "cpu": per_action, "pushed": pushed, "lag": lag}


async def group_messages(url: str) -> tuple[float, float]:
    """Events pushed so far, and the group messages that carried them (the server's /metrics)."""
    async with Api(url, asynchronous=True, check=True) as api:
        text = (await api.client.get("/metrics")).text
    events = messages = 0.0
    for line in text.splitlines():
        if line.startswith("virusgame_pushes_total{") and 'result="ok"' in line:
            events += float(line.rsplit(" ", 1)[1])
        elif line.startswith("virusgame_push_seconds_count "):
            messages = float(line.rsplit(" ", 1)[1])
    return events, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--actions", type=int, default=60)
    parser.add_argument("--in-flight", type=int, default=1, help="players acting at once over their sockets")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--profile", type=Path, help="write daphne's cProfile stats here")
    args = parser.parse_args()
    raise_open_files_limit()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis = None if os.environ.get("REDIS_URL") else LocalRedis(tmp).start()
        databases = Databases(tmp)
        try:
            static = tmp / "static"
            collectstatic(databases.fresh(), static)
            extra = dict(item.split("=", 1) for item in args.env)
            env = base_env(
                database_url=databases.fresh(),
                redis_url=redis.url if redis else os.environ["REDIS_URL"],
                DJANGO_STATIC_ROOT=str(static),
                VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",
                METRICS_ALLOW_FROM="127.0.0.1/32",
                LOG_LEVEL="WARNING",
                **extra,
            )
            argv = None
            if args.profile:
                argv = [PYTHON, "-m", "bench.profiled", str(args.profile.resolve()), "-b", "127.0.0.1"]
                argv += ["-p", "{port}", "virusgame.asgi:application"]
            server = GameServer(env, tmp / "daphne.log", argv=argv).start()
            try:
                result = asyncio.run(measure(server, args.players, args.actions, args.in_flight))
            finally:
                server.stop(timeout=30)
        finally:
            databases.drop_all()
            if redis:
                redis.stop()
    database = "PostgreSQL" if databases.postgres_url else "SQLite"
    flight = f"{args.in_flight} in flight"
    print(f"{database}, {args.players} players, {args.actions} of each, {flight}, env {extra or '-'}:")
    for name, (p50, p99) in result["ms"].items():
        print(f"  {name:10} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    cpu = result["cpu"]
    print(f"  daphne CPU per action: HTTP {cpu['http']:.2f} ms, socket {cpu['socket']:.2f} ms")
    events, group_sends = result["pushed"]
    print(f"  socket phase: {events:.0f} events pushed in {group_sends:.0f} group messages", end="")
    print(f", every change at every player {result['lag'] * 1000:.0f} ms after the last answer")
    print(f"  deliveries lost: {result['lost']}")
    if result["lost"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
