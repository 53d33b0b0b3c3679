"""What one delivery costs each server: CPU and write syscalls per change per socket.

`python -m bench.peercost`: the project's application under daphne (the fastlane) and under
each peer (tools/servers.py's PEERS, the generic consumer path), one process each, fresh
SQLite database, a private Redis. For each: `--changes` changes (a create and its kill over
the HTTP API, one at a time, each waited for at every socket) with `--small` sockets open,
then with `--clients`; the server's CPU (utime + stime of its processes) of the small run is
taken from the large one's, so what is left is the fan-out's own cost, per delivery. Then
the same changes at `--clients` under `strace -c -f` (slow: only its counts are used) for
the write syscalls per delivery. Also the CPU per handshake (the large run's connects) and
per `GET /api/viruses/` (`--requests`, one at a time, before any socket). Not part of
`make bench`: docs/performance.md, "Peers".
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.client import Swarm
from bench.drivers import HttpDriver
from bench.run import BenchServer
from tools.local_redis import LocalRedis
from tools.servers import (
    DAPHNE,
    PEERS,
    Databases,
    base_env,
    collectstatic,
    peer_argv,
    peer_missing,
    raise_open_files_limit,
)

WRITES = "write,writev,sendmsg,sendto"
APP = "virusgame.asgi:application"


def cpu_seconds(server: BenchServer) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in server.pids():
        for task in Path(f"/proc/{pid}/task").iterdir():  # every thread (granian's Rust ones)
            parts = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
    return total / ticks


class Tracer:
    """`strace -c -f` of the write syscalls of running processes, every thread included."""

    def __init__(self, pids: list[int]):
        self.out = Path(tempfile.mkdtemp(prefix="strace-")) / "counts"
        argv = ["strace", "-c", "-f", "-e", f"trace={WRITES}", "-o", str(self.out)]
        self.process = subprocess.Popen([*argv, "-p", ",".join(map(str, pids))])

    def stop(self) -> int:
        """Stop tracing; return how many write syscalls were made meanwhile."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)
        rows = [line.split() for line in self.out.read_text().splitlines()]
        shutil.rmtree(self.out.parent)
        return sum(int(row[3]) for row in rows if row and row[-1] in WRITES.split(","))


async def changes(swarm: Swarm, driver: HttpDriver, count: int) -> None:
    n = len(swarm.open_players)
    for _ in range(count):
        virus_id = await driver.create()
        assert await swarm.wait_for(("virus.created", virus_id), n, 30), "a change did not reach everyone"
        await driver.kill(virus_id)
        assert await swarm.wait_for(("virus.killed", virus_id), n, 30), "a change did not reach everyone"


async def measure(server: BenchServer, args) -> dict:
    driver = await HttpDriver(server.url).start()
    swarm = Swarm("127.0.0.1", server.port)
    try:
        before = cpu_seconds(server)
        for _ in range(args.requests):
            await driver.state()
        per_request = (cpu_seconds(server) - before) / args.requests
        cpu = {}
        for n in (args.small, args.clients):
            have = len(swarm.open_players)
            before = cpu_seconds(server)
            await swarm.connect(n - have, concurrency=100, wait=60)
            per_connect = (cpu_seconds(server) - before) / (n - have)
            await asyncio.sleep(2)
            await changes(swarm, driver, 5)  # warm up
            before = cpu_seconds(server)
            await changes(swarm, driver, args.changes)
            cpu[n] = cpu_seconds(server) - before
        deliveries = 2 * args.changes * (args.clients - args.small)
        tracer = Tracer(server.pids())
        await asyncio.sleep(1)
        await changes(swarm, driver, args.changes)
        calls = tracer.stop()
        return {
            "cpu_us_per_delivery": round(1e6 * (cpu[args.clients] - cpu[args.small]) / deliveries, 1),
            "cpu_s": {str(k): round(v, 2) for k, v in cpu.items()},
            "cpu_ms_per_connect": round(1e3 * per_connect, 2),
            "cpu_ms_per_list_request": round(1e3 * per_request, 2),
            "write_syscalls_per_delivery": round(calls / (2 * args.changes * args.clients), 3),
        }
    finally:
        swarm.close_all()
        await driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peercost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--requests", type=int, default=300, help="GET /api/viruses/, one at a time")
    args = parser.parse_args()
    raise_open_files_limit(1 << 20)
    work = Path(tempfile.mkdtemp(prefix="peercost-"))
    redis = LocalRedis(work / "redis").start()
    databases = Databases(work)
    static_root = work / "static"
    collectstatic(databases.fresh(), static_root)
    common = {"DJANGO_STATIC_ROOT": str(static_root), "VIRUS_MAX_CONNECTIONS_PER_ADDRESS": "0"}
    servers = {"project": [*DAPHNE, APP]} | {name: peer_argv(name, APP) for name in PEERS}
    try:
        for name, argv in servers.items():
            if name in PEERS and (missing := peer_missing(name)):
                print(f"{name}: skipped: {missing}")
                continue
            env = base_env(database_url=databases.fresh(), redis_url=redis.url, **common)
            server = BenchServer(name, env, work / f"{name}.log", argv)
            server.start()
            started = time.monotonic()
            try:
                result = asyncio.run(measure(server, args))
            finally:
                server.stop()
            print(f"{name}: {result} ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
