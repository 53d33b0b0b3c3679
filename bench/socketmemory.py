"""Where an idle socket's memory goes: tracemalloc in daphne, before and after N idle sockets.

    python -m bench.socketmemory [--sockets 1000] [--batch 10] [--frames 12] [--top 25] [--levers LIST]

Starts one daphne (SQLite, a private Redis) with tracemalloc on (`bench.socketmemory
serve`: daphne's own CLI, a snapshot written on SIGUSR1), takes a snapshot, opens N sockets
that read their snapshot and then stay idle (`--batch` connecting at once: 1000 is
`make bench`'s connect storm), waits 3 s, takes another, and prints what
grew, per socket: by package (the innermost frame outside the standard library's
asyncio/json/etc. that is in site-packages or the project) and by allocation site.
RSS per socket is printed too: tracemalloc sees Python's allocations only, and its own
bookkeeping inflates RSS; `--frames 0` measures RSS alone, tracemalloc off. `--levers`
runs bench/levers' application with those levers (BENCH_LEVERS) instead of the shipped one.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import websockets

from tools.local_redis import LocalRedis
from tools.servers import PYTHON, Databases, GameServer, base_env, collectstatic, raise_open_files_limit

SITE = f"{os.sep}site-packages{os.sep}"


def serve(snapshot_dir: str, frames: int, argv: list[str]) -> None:
    """daphne with tracemalloc; SIGUSR1 writes snapshot-<n>.bin into `snapshot_dir`."""
    from daphne.cli import CommandLineInterface

    if frames:
        tracemalloc.start(frames)
    taken = 0

    def dump(*_) -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(os.path.join(snapshot_dir, f"snapshot-{taken}.bin"))

    signal.signal(signal.SIGUSR1, dump)
    CommandLineInterface().run(argv)


def owner(traceback: tracemalloc.Traceback) -> str:
    """Who asked for the memory: the innermost frame in a third-party package or the project."""
    for frame in reversed(traceback):  # innermost last in tracemalloc's order: walk from it
        name = frame.filename
        if SITE in name:
            return name.split(SITE, 1)[1].split(os.sep, 1)[0]
        if os.sep + "viruses" + os.sep in name or os.sep + "virusgame" + os.sep in name:
            return "project: " + name.rsplit(os.sep, 2)[-2] + "/" + name.rsplit(os.sep, 1)[-1]
    return "stdlib: " + traceback[-1].filename.rsplit(os.sep, 1)[-1]


def snapshot(server: GameServer, folder: Path, n: int) -> tracemalloc.Snapshot:
    server.process.send_signal(signal.SIGUSR1)
    path = folder / f"snapshot-{n}.bin"
    for _ in range(600):
        if path.exists():
            time.sleep(1)  # written whole
            return tracemalloc.Snapshot.load(str(path))
        time.sleep(0.1)
    raise RuntimeError("no snapshot")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_idle(url: str, origin: str, count: int, batch: int = 10) -> list:
    sockets = []
    for start in range(0, count, batch):
        connects = [
            websockets.connect(url, origin=origin, max_size=None, open_timeout=60)
            for _ in range(start, min(count, start + batch))
        ]
        sockets += await asyncio.gather(*connects)
    for ws in sockets:
        await ws.recv()  # its snapshot
    return sockets


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        return serve(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument(
        "--frames", type=int, default=12, help="frames per traceback; 0: tracemalloc off, RSS only"
    )
    parser.add_argument("--batch", type=int, default=10, help="sockets connecting at once")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--levers", help="BENCH_LEVERS for bench.levers' application (e.g. daphnequeue)")
    args = parser.parse_args()
    raise_open_files_limit()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis = LocalRedis(tmp).start()
        databases = Databases(tmp)
        try:
            static = tmp / "static"
            collectstatic(databases.fresh(), static)
            env = base_env(
                database_url=databases.fresh(),
                redis_url=redis.url,
                DJANGO_STATIC_ROOT=str(static),
                VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",
                VIRUS_ABUSE_PENALTY="0",  # every client comes from 127.0.0.1, as in the bench
                VIRUS_SNAPSHOT_RATE="0",
                LOG_LEVEL="WARNING",
            )
            app = "virusgame.asgi:application"
            if args.levers is not None:
                env.update(BENCH_LEVERS=args.levers, DJANGO_SETTINGS_MODULE="bench.levers.settings")
                app = "bench.levers.asgi:application"
            argv = [PYTHON, "-m", "bench.socketmemory", "serve", str(tmp), str(args.frames)]
            argv += ["-b", "127.0.0.1", "-p", "{port}", app]
            server = GameServer(env, tmp / "daphne.log", argv=argv).start(timeout=60)
            try:
                result = measure(server, tmp, args.sockets, args.batch, traced=args.frames > 0)
            finally:
                server.stop(timeout=30)
        finally:
            databases.drop_all()
            redis.stop()
    report(*result, args.sockets, args.top)


def measure(server: GameServer, folder: Path, count: int, batch: int, traced: bool):
    loop = asyncio.new_event_loop()
    # One socket first: imports and first-use caches are not what a socket costs.
    warm = loop.run_until_complete(open_idle(server.ws_url, server.url, 1))
    time.sleep(2)
    before, rss_before = traced and snapshot(server, folder, 1), rss_kb(server.process.pid)
    sockets = loop.run_until_complete(open_idle(server.ws_url, server.url, count, batch))
    time.sleep(3)
    after, rss_after = traced and snapshot(server, folder, 2), rss_kb(server.process.pid)
    for ws in sockets + warm:
        loop.run_until_complete(ws.close())
    loop.close()
    return before, after, rss_after - rss_before


def report(before, after, rss_grew_kb: int, count: int, top: int) -> None:
    """What grew per socket; `before` and `after` are tracemalloc snapshots, or False (RSS only)."""
    if not before:
        print(f"{count} idle sockets, tracemalloc off: RSS +{rss_grew_kb / count:.1f} KB per socket")
        return
    stats = after.compare_to(before, "traceback")
    by_owner: Counter = Counter()
    by_site: Counter = Counter()
    for stat in stats:
        by_owner[owner(stat.traceback)] += stat.size_diff
        frame = stat.traceback[-1]
        by_site[(owner(stat.traceback), f"{frame.filename.rsplit(os.sep, 1)[-1]}:{frame.lineno}")] += (
            stat.size_diff
        )
    traced = sum(by_owner.values())
    print(f"{count} idle sockets: traced Python memory +{traced / count / 1024:.1f} KB per socket", end="")
    print(f" (RSS +{rss_grew_kb / count:.1f} KB per socket, tracemalloc's own bookkeeping included)")
    print("by owner (KB per socket):")
    for name, size in by_owner.most_common(top):
        print(f"  {size / count / 1024:6.2f}  {name}")
    print("by allocation site (KB per socket):")
    for (name, site), size in by_site.most_common(top):
        print(f"  {size / count / 1024:6.2f}  {site:40} {name}")


if __name__ == "__main__":
    main()
