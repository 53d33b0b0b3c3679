"""The connect storm alone: the floor, bare daphne and the project, interleaved on one machine.

    python -m bench.storm [--clients 1000] [--storms 3] [--rounds 3] [--servers floor,bare,project]
                         [--levers V ...] [--spy DIR]

Each server in turn starts fresh (SQLite, a private Redis, admission off as in `make bench`),
takes 200 sockets at once to warm up, then `--storms` storms of N clients connecting at
once (`bench.client.Swarm`, each storm closed before the next), `--rounds` times. Prints,
per server, the median storm's seconds and CPU per connect (the server process's user +
system time over the storm), with their ratios to the floor's. `bare` is daphne serving
`bench.storm:application`, which accepts, sends one snapshot and waits for the close, with
daphne tuned as the project tunes it (viruses/live/daphne/transport.py: backlog 1024, shared
options, no per-connection pformat): the least a connect costs on daphne. `--levers V` adds
the project with BENCH_LEVERS=V (bench/levers/). `--spy DIR` records the project's second
storm of each round with py-spy (fold with `python -m bench.spyreport`).
Figures: docs/performance.md#the-connect-storm.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench import floor
from bench.client import Swarm
from bench.run import CpuMonitor
from bench.writepath import cpu_seconds, py_spy, stop, warn
from tools.local_redis import LocalRedis
from tools.servers import (
    DAPHNE,
    Databases,
    GameServer,
    base_env,
    collectstatic,
    raise_open_files_limit,
)

WARM_UP = 200
SNAPSHOT = json.dumps({"type": "snapshot", "seq": 0, "viruses": [], "online": 1})


async def application(scope, receive, send):
    """The bare server: a WebSocket gets one snapshot, then waits; /healthz (any HTTP) answers 200."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": SNAPSHOT})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    elif scope["type"] == "http":
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


if os.environ.get("BENCH_STORM_BARE"):  # imported by the bare daphne: tune it as the project does
    from viruses.live.daphne import transport

    transport.set_protocol_options()


def server(name: str, tmp: Path, databases: Databases, redis: LocalRedis, static: Path) -> GameServer:
    """A fresh server; `name` is floor, bare, project or `project:LEVERS`."""
    if name == "floor":
        argv = floor.command(redis.url, "storm", str(tmp / "floor.sqlite3"))
        return GameServer(
            base_env(database_url="", redis_url=redis.url), tmp / "floor.log", argv=argv, name=name
        )
    env = base_env(
        database_url=databases.fresh(),
        redis_url=redis.url,
        DJANGO_STATIC_ROOT=str(static),
        VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",  # every client comes from 127.0.0.1, as in make bench
        LOG_LEVEL="INFO",
    )
    app = "virusgame.asgi:application"
    if name == "bare":
        env["BENCH_STORM_BARE"] = "1"
        app = "bench.storm:application"
    elif name.startswith("project:"):
        env.update(BENCH_LEVERS=name.split(":", 1)[1], DJANGO_SETTINGS_MODULE="bench.levers.settings")
        app = "bench.levers.asgi:application"
    return GameServer(env, tmp / f"{name}.log", argv=[*DAPHNE, app], name=name)


async def storms(server: GameServer, clients: int, count: int, spy: Path | None) -> list[tuple[float, float]]:
    """(seconds, CPU ms per connect) of each storm."""
    pid = server.process.pid
    swarm = Swarm("127.0.0.1", server.port)
    await swarm.connect(WARM_UP, concurrency=WARM_UP, wait=60)
    swarm.close_all()
    await asyncio.sleep(3)
    results = []
    for index in range(count):
        spying = py_spy(pid, spy, server.name.replace(":", "-")) if spy and index == 1 else None
        before = cpu_seconds(pid)
        storm = await swarm.connect(clients, concurrency=clients, wait=60)
        await asyncio.sleep(1)  # the last snapshots and log lines
        cpu = cpu_seconds(pid) - before
        stop(spying)
        if storm["refused"]:
            print(
                f"  {server.name}: {storm['refused']} refused {storm['refusal_reasons'][:2]}", file=sys.stderr
            )
        results.append((storm["seconds"], cpu / clients * 1000))
        swarm.close_all()
        await asyncio.sleep(3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--storms", type=int, default=3, help="storms per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="floor,bare,project")
    parser.add_argument(
        "--levers", action="append", default=[], help="also the project with this BENCH_LEVERS"
    )
    parser.add_argument("--spy", type=Path, help="py-spy of the project's second storm into this folder")
    args = parser.parse_args()
    raise_open_files_limit()
    names = [n.strip() for n in args.servers.split(",") if n.strip()] + [f"project:{v}" for v in args.levers]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis = LocalRedis(tmp).start()
        databases = Databases(tmp)
        monitor = CpuMonitor([os.getpid(), redis.process.pid])
        others = 0.0
        try:
            static = tmp / "static"
            collectstatic(databases.fresh(), static)
            for round_ in range(args.rounds):
                for name in names:
                    print(f"round {round_ + 1}: {name}", file=sys.stderr, flush=True)
                    running = server(name, tmp, databases, redis, static).start(timeout=60)
                    monitor.pids = [os.getpid(), redis.process.pid, running.process.pid]
                    monitor.foreign_cores()
                    spy = args.spy if name.startswith("project") else None
                    try:
                        results[name] += asyncio.run(storms(running, args.clients, args.storms, spy))
                    finally:
                        others = max(others, monitor.foreign_cores())
                        running.stop(timeout=30)
        finally:
            databases.drop_all()
            redis.stop()
    report(results, args.clients, others)


def report(results: dict[str, list[tuple[float, float]]], clients: int, others: float) -> None:
    print(
        f"connect storm: {clients} clients at once, median of {len(next(iter(results.values())))} storms each"
    )
    print(f"  {'server':28} {'seconds':>8} {'/floor':>7} {'CPU/connect (ms)':>17} {'/floor':>7}")
    baseline = results.get("floor")
    base = baseline and (statistics.median(s for s, _ in baseline), statistics.median(c for _, c in baseline))
    for name, runs in results.items():
        seconds, cpu = statistics.median(s for s, _ in runs), statistics.median(c for _, c in runs)
        ratios = (f"{seconds / base[0]:6.2f}x", f"{cpu / base[1]:6.2f}x") if base else ("-", "-")
        label = {"bare": "bare daphne (tuned)"}.get(name, name)
        print(f"  {label:28} {seconds:8.2f} {ratios[0]:>7} {cpu:17.3f} {ratios[1]:>7}")
    warn(others)


if __name__ == "__main__":
    main()
