"""The write path from the acting player's side: how long its own create and kill take to answer.

    python -m bench.writepath [--players 100] [--actions 60] [--in-flight 1] [--env KEY=VALUE ...]
                              [--keys] [--spy DIR] [--levers V ...] [--rounds 3] [--profile FILE]

Starts one daphne on a fresh database (PostgreSQL when DATABASE_URL points at one, else
SQLite) and Redis (REDIS_URL's, else a private one), connects P WebSocket players that read
everything, then acts one action at a time: K POST + DELETE pairs from a keep-alive HTTP
client, then K create + kill pairs over the players' sockets, each pair from the next
player (`--in-flight N`: N pairs at once, K in all). Prints the p50/p99 of each answer as the actor
waits for it, daphne's CPU time per action (the socket phase's until every player has every
change), and checks that every player received every change.
`--profile FILE` runs daphne under cProfile, every thread included (bench/profiled.py).
`--keys` gives every socket action an idempotency key, `--spy DIR` samples each phase with
py-spy (fold them with `python -m bench.spyreport`), `--levers V --levers W` runs each
BENCH_LEVERS variant (bench/levers/; `''` as shipped) in turn, `--rounds` times, in one run.
Figures are in docs/benchmarks/2026-11-29-write-path.md and docs/performance.md#levers.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets

from bench.run import CpuMonitor
from tools.local_redis import LocalRedis
from tools.servers import (
    DAPHNE,
    PYTHON,
    Api,
    Databases,
    GameServer,
    base_env,
    collectstatic,
    raise_open_files_limit,
)


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


async def measure(
    server: GameServer,
    players: int,
    actions: int,
    in_flight: int = 1,
    keys: bool = False,
    spy: Path | None = None,
) -> dict:
    run = uuid.uuid4().hex[:8]

    def key(ref: str) -> dict:
        return {"idempotency_key": f"{run}-{ref}"} if keys else {}

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
        spying = py_spy(pid, spy, "http")
        mark = cpu_seconds(pid)
        for _ in range(actions):
            started = time.perf_counter()
            virus = (await api.create()).json()
            times["POST"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await api.kill(virus["id"])
            times["DELETE"].append(time.perf_counter() - started)
        cpu["http"] = cpu_seconds(pid) - mark
        stop(spying)

    async def play(pairs: range) -> None:
        for i in pairs:
            # Pair i from player i: one socket sending every action would pass the flood limit.
            actor = crowd[i % len(crowd)]
            started = time.perf_counter()
            answer = await actor.act({"type": "create", "ref": f"c{i}", **key(f"c{i}")})
            times["ws create"].append(time.perf_counter() - started)
            assert answer["status"] == 201, answer
            started = time.perf_counter()
            answer = await actor.act(
                {"type": "kill", "id": answer["virus"]["id"], "ref": f"k{i}", **key(f"k{i}")}
            )
            times["ws kill"].append(time.perf_counter() - started)
            assert answer["status"] == 204, answer

    pushed = await group_messages(server.url)
    spying = py_spy(pid, spy, "socket")
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
    stop(spying)
    pushed = [after - before for after, before in zip(await group_messages(server.url), pushed, strict=True)]
    lost = sum(expected - p.changes for p in crowd)
    for ws in sockets:
        await ws.close()
    result = {name: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for name, v in times.items()}
    per_action = {path: seconds / (2 * actions) * 1000 for path, seconds in cpu.items()}
    return {"ms": result, "lost": lost, "cpu": per_action, "pushed": pushed, "lag": lag}


def py_spy(pid: int, folder: Path | None, phase: str) -> subprocess.Popen | None:
    """Sample daphne's busy threads (py-spy, collapsed stacks) into FOLDER/PHASE.txt until `stop`."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "500", "--threads"]
    argv += ["--format", "raw", "--output", str(folder / f"{phase}.txt")]
    spying = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # py-spy attaches
    return spying


def stop(spying: subprocess.Popen | None) -> None:
    if spying is not None:
        spying.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spying.wait(timeout=30)


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
    parser.add_argument("--keys", action="store_true", help="every socket action carries an idempotency key")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument(
        "--levers",
        action="append",
        help="a BENCH_LEVERS value (bench/levers/; '' is the project as shipped): each given one is a "
        "variant, run in turn --rounds times on the one machine",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the --levers variants")
    parser.add_argument("--spy", type=Path, help="py-spy samples of each phase into this folder")
    parser.add_argument("--profile", type=Path, help="write daphne's cProfile stats here")
    args = parser.parse_args()
    raise_open_files_limit()
    extra = dict(item.split("=", 1) for item in args.env)
    variants = args.levers or [None]
    rounds = args.rounds if args.levers else 1
    results: dict[str | None, list[dict]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis = None if os.environ.get("REDIS_URL") else LocalRedis(tmp).start()
        databases = Databases(tmp)
        monitor = CpuMonitor([os.getpid()] + ([redis.process.pid] if redis else []))
        try:
            static = tmp / "static"
            collectstatic(databases.fresh(), static)
            for _ in range(rounds):
                for variant in variants:
                    result = run_server(args, tmp, databases, redis, static, extra, variant, monitor)
                    results[variant].append(result)
        finally:
            databases.drop_all()
            if redis:
                redis.stop()
    database = "PostgreSQL" if databases.postgres_url else "SQLite"
    flight = f"{args.in_flight} in flight" + (", idempotency keys" if args.keys else "")
    print(f"{database}, {args.players} players, {args.actions} of each, {flight}, env {extra or '-'}:")
    if args.levers:
        report_levers(results)
    else:
        report(results[None][0])
    if any(result["lost"] for runs in results.values() for result in runs):
        sys.exit(1)


def run_server(args, tmp: Path, databases, redis, static: Path, extra: dict, variant, monitor) -> dict:
    """Start one daphne (as shipped, or the `variant` of bench/levers/) on a fresh database and measure it."""
    env = base_env(
        database_url=databases.fresh(),
        redis_url=redis.url if redis else os.environ["REDIS_URL"],
        DJANGO_STATIC_ROOT=str(static),
        VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",
        METRICS_ALLOW_FROM="127.0.0.1/32",
        LOG_LEVEL="WARNING",
        **extra,
    )
    app = "virusgame.asgi:application"
    if variant is not None:
        env.update(DJANGO_SETTINGS_MODULE="bench.levers.settings", BENCH_LEVERS=variant)
        app = "bench.levers.asgi:application"
    argv = [*DAPHNE, app]
    if args.profile:
        argv = [PYTHON, "-m", "bench.profiled", str(args.profile.resolve()), "-b", "127.0.0.1"]
        argv += ["-p", "{port}", app]
    server = GameServer(env, tmp / "daphne.log", argv=argv).start()
    monitor.pids.append(server.process.pid)
    monitor.foreign_cores()
    try:
        result = asyncio.run(measure(server, args.players, args.actions, args.in_flight, args.keys, args.spy))
        # Figures per action are CPU time, robust to busy neighbours; latencies are not.
        result["others"] = monitor.foreign_cores()
    finally:
        monitor.pids.remove(server.process.pid)
        server.stop(timeout=30)
    return result


def report(result: dict) -> None:
    for name, (p50, p99) in result["ms"].items():
        print(f"  {name:10} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    cpu = result["cpu"]
    print(f"  daphne CPU per action: HTTP {cpu['http']:.2f} ms, socket {cpu['socket']:.2f} ms")
    events, group_sends = result["pushed"]
    print(f"  socket phase: {events:.0f} events pushed in {group_sends:.0f} group messages", end="")
    print(f", every change at every player {result['lag'] * 1000:.0f} ms after the last answer")
    print(f"  deliveries lost: {result['lost']}")
    warn(result["others"])


def report_levers(results: dict) -> None:
    """Per variant: daphne CPU per action (each round's, and their median) and the socket answers' p50."""
    print(
        f"  {'BENCH_LEVERS':24} {'HTTP CPU/action (ms)':28} {'socket CPU/action (ms)':28} ws p50 (ms)  lost"
    )
    for variant, runs in results.items():
        http = [r["cpu"]["http"] for r in runs]
        socket = [r["cpu"]["socket"] for r in runs]
        each = "/".join  # every round, in order
        p50 = statistics.median(r["ms"]["ws create"][0] for r in runs)
        http_cell = f"{statistics.median(http):5.2f} ({each(f'{x:.2f}' for x in http)})"
        socket_cell = f"{statistics.median(socket):5.2f} ({each(f'{x:.2f}' for x in socket)})"
        lost = sum(r["lost"] for r in runs)
        print(f"  {variant or '(as shipped)':24} {http_cell:28} {socket_cell:28} {p50:6.1f}  {lost}")
    warn(max(r["others"] for runs in results.values() for r in runs))


def warn(others: float) -> None:
    if others > 0.25:
        print(
            f"  WARNING: other processes used up to {others:.1f} cores meanwhile (latencies are pessimistic)"
        )


if __name__ == "__main__":
    main()
