"""`make bench`: the fan-out benchmark of the project against its two baselines.

One run starts, one after the other, three servers on a private redis-server (unix socket)
and fresh databases, and puts each through the same phases from one asyncio client process:

  floor    raw `websockets` broadcast fed by Redis pub/sub (bench/floor.py)
  stock    the same game under stock Channels: send_json per client, default channels-redis
  project  the project as shipped: daphne + virusgame.asgi:application + virusgame.settings
  uvicorn, granian   the project's same application and settings under the other ASGI
           servers (tools/servers.py's PEERS); skipped, with a line saying so, if not installed

Phases per server: seed 50 viruses and measure the list endpoint; idle memory (sockets
connecting ten at a time, then closed); a connect storm; fan-out latency at the storm's N;
sustained deliveries per second; a burst; then latency at every other N (disconnecting or
connecting players to get there). Then, on a restarted server, the game load
(bench/gameload.py): capacity in actions per second with P players watching, through the
HTTP API and over the socket.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench import abuse, floor, gameload, report, rooms
from bench.client import Swarm
from bench.drivers import FloorDriver, HttpDriver
from tools.local_redis import LocalRedis
from tools.servers import (
    DAPHNE,
    PEERS,
    PYTHON,
    ROOT,
    Databases,
    GameServer,
    base_env,
    collectstatic,
    peer_argv,
    peer_missing,
    rss_mib,
)
from tools.servers import raise_open_files_limit as raise_open_files

RESULTS = ROOT / "bench" / "results"
SEED_VIRUSES = 50

PROFILES = {
    "full": {
        "storm": 1000,
        "levels": [100, 1000, 3000],
        "events": {100: 60, 1000: 60, 3000: 30},
        "list_seconds": 3.0,
        "step_seconds": 3.0,
        "rate_factor": 1.5,
        "burst": 500,
        "burst_timeout": 120.0,
        "quiet_wait": 120.0,
        "gameload": {
            "players": [100, 300, 1000],
            "rates": [5, 10, 25, 50, 100, 150, 200, 300, 400, 500, 650, 800],
            "step_seconds": 3.0,
        },
        "abuse": {"players": 200, "seconds": 15.0, "sockets": 20},
        "rooms": {
            "rooms": 50,
            "size": 20,
            "rates": [50, 100, 200, 300, 400, 500, 650, 800],
            "step_seconds": 3.0,
        },
    },
    "quick": {
        "storm": 500,
        "levels": [100, 500],
        "events": {100: 20, 500: 20},
        "list_seconds": 1.0,
        "step_seconds": 1.5,
        "rate_factor": 2.0,
        "burst": 200,
        "burst_timeout": 30.0,
        "quiet_wait": 10.0,
        "gameload": {
            "players": [50, 200],
            "rates": [10, 25, 50, 100, 200, 300, 500],
            "step_seconds": 1.0,
        },
        "abuse": {"players": 50, "seconds": 5.0, "sockets": 20},
        "rooms": {"rooms": 10, "size": 20, "rates": [50, 100, 200, 300, 400, 500], "step_seconds": 1.0},
    },
}
PHASES = ("fanout", "gameload", "abuse", "rooms")
# s the later phases wait for a quiet machine (the first waits `quiet_wait`): a busy machine
# is reported with a WARNING either way, and the full run must stay well under 30 minutes.
LATER_QUIET_WAIT = 30.0
SUSTAINED_P99_LIMIT = 1.0  # s: a rate is sustained if every delivery arrives within this, none lost
# What the other phases switch off because every client comes from 127.0.0.1.
ADMISSION_OFF = ("VIRUS_MAX_CONNECTIONS_PER_ADDRESS", "VIRUS_SNAPSHOT_RATE", "VIRUS_ABUSE_PENALTY")
MAX_DELIVERIES = 100_000  # per second: above this the client process, not the server, is measured
STEADY_CONNECTS = 10  # handshakes at a time for the idle-memory figure (bench/socketmemory.py's)

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


class BenchServer(GameServer):
    """A server of the run (daphne or the floor), named for the report."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, argv: list[str]):
        log_path.unlink(missing_ok=True)  # this run's log only
        super().__init__(env, log_path, argv=argv, name=name)

    def pids(self) -> list[int]:
        """The server's process and its children (the daphne processes of `--processes N`)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):  # a child that just ended
                total += rss_mib(pid)
        return total


class CpuMonitor:
    """CPU used by processes that are not the benchmark's: a busy neighbour spoils the figures.

    Reads /proc/stat (all CPUs) and /proc/<pid>/stat of the client, the server and Redis; the
    difference is what everything else on the machine used, in cores.
    """

    def __init__(self, pids: list[int], server: "BenchServer | None" = None):
        self.pids = pids
        self.server = server  # its processes, children included, are ours too
        self.mark = self.sample()

    def sample(self) -> tuple[float, int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]
        ours = 0
        for pid in self.pids + (self.server.pids() if self.server and self.server.process else []):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parts = stat.rsplit(")", 1)[1].split()
            ours += int(parts[11]) + int(parts[12])
        return time.monotonic(), busy, ours

    def foreign_cores(self) -> float:
        """Cores used by others since the last call."""
        now = self.sample()
        (t0, busy0, ours0), self.mark = self.mark, now
        ticks = os.sysconf("SC_CLK_TCK")
        return max(0.0, ((now[1] - busy0) - (now[2] - ours0)) / ticks / max(1e-6, now[0] - t0))


async def wait_for_quiet(monitor: CpuMonitor, limit: float) -> float:
    """Wait (at most `limit` s) until other processes use under a quarter of a core."""
    deadline = time.monotonic() + limit
    monitor.foreign_cores()
    while True:
        await asyncio.sleep(1.0)
        other = monitor.foreign_cores()
        if other < 0.25 or time.monotonic() > deadline:
            return other
        say(f"  other processes use {other:.1f} cores; waiting for a quieter machine")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; an event that never completed counts as infinitely late."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(1000 * value, 1)


# -- phases --------------------------------------------------------------------------------


async def list_rps(base_url: str, seconds: float, workers: int = 4) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

        async def worker():
            nonlocal count
            while time.perf_counter() < deadline:
                response = await http.get("/api/viruses/")
                response.raise_for_status()
                count += 1

        await asyncio.gather(*(worker() for _ in range(workers)))
    return count / seconds


async def measure_change(swarm: Swarm, key_of, wait: float) -> tuple[float, int, int]:
    """Make one change (`key_of` does it and returns its key); wait for every player to see it.

    Returns (completion seconds or inf, deliveries expected, deliveries received).
    """
    expected = len(swarm.open_players)
    started = time.perf_counter()
    key = await key_of()
    complete = await swarm.wait_for(key, expected, wait)
    count, _, last = swarm.arrivals.get(key, (0, 0.0, 0.0))
    return (last - started if complete else math.inf), expected, min(count, expected)


async def latency(swarm: Swarm, driver, events: int) -> dict:
    swarm.reset_arrivals()
    n = len(swarm.open_players)
    timeout = max(5.0, n / 250)
    samples: list[float] = []
    expected = received = 0
    deadline = time.monotonic() + 60 + events * timeout / 4
    for _ in range(events // 2):
        if time.monotonic() > deadline or samples[-3:] == [math.inf] * 3:
            break  # out of time, or changes stopped arriving at all
        created: list[str] = []

        async def create(created=created):
            created.append(await driver.create())
            return ("virus.created", created[0])

        async def kill(created=created):
            await driver.kill(created[0])
            return ("virus.killed", created[0])

        for change in (create, kill):
            seconds, want, got = await measure_change(swarm, change, timeout)
            samples.append(seconds)
            expected += want
            received += got
            await asyncio.sleep(0.02)
    return {
        "clients": n,
        "events": len(samples),
        "p50_ms": ms(percentile(samples, 0.50)),
        "p99_ms": ms(percentile(samples, 0.99)),
        "max_ms": ms(max(samples)),
        "incomplete_events": sum(math.isinf(s) for s in samples),
        "deliveries_expected": expected,
        "lost": expected - received,
    }


async def sustained(swarm: Swarm, driver, step_seconds: float, factor: float) -> dict:
    """Raise the change rate step by step until deliveries fall behind or go missing."""
    n = len(swarm.open_players)
    rate = max(2.0, 2000 / n)
    steps = []
    best = 0.0
    while rate * n <= MAX_DELIVERIES and rate <= 400:
        step = await sustained_step(swarm, driver, n, rate, step_seconds)
        steps.append(step)
        say(
            f"    {rate:7.1f} changes/s = {rate * n:9,.0f} deliveries/s: p99 {step['p99_ms']} ms, "
            f"lost {step['lost']}, {'ok' if step['ok'] else 'FALLING BEHIND'}"
        )
        if not step["ok"]:
            break
        best = rate * n
        rate *= factor
    return {
        "clients": n,
        "deliveries_per_s": round(best),
        "limit": "client ceiling" if steps and steps[-1]["ok"] else "server fell behind",
        "steps": steps,
    }


async def sustained_step(swarm: Swarm, driver, n: int, rate: float, seconds: float) -> dict:
    swarm.reset_arrivals()
    sent: dict[tuple, float] = {}
    pairs = max(1, int(rate * seconds / 2))
    start = time.perf_counter()
    late = 0.0

    async def pair(i: int):
        nonlocal late
        await asyncio.sleep(max(0.0, start + 2 * i / rate - time.perf_counter()))
        late = max(late, time.perf_counter() - (start + 2 * i / rate))
        t = time.perf_counter()
        virus_id = await driver.create()
        sent[("virus.created", virus_id)] = t
        await asyncio.sleep(max(0.0, start + (2 * i + 1) / rate - time.perf_counter()))
        t = time.perf_counter()
        await driver.kill(virus_id)
        sent[("virus.killed", virus_id)] = t

    try:
        async with asyncio.timeout(seconds + 20):
            await asyncio.gather(*(pair(i) for i in range(pairs)))
            # Drain: wait (bounded) until every change reached every player.
            for key in list(sent):
                await swarm.wait_for(
                    key, n, max(0.1, start + seconds + SUSTAINED_P99_LIMIT * 3 - time.perf_counter())
                )
    except TimeoutError:
        pass
    samples = []
    lost = 0
    for key, t in sent.items():
        count, _, last = swarm.arrivals.get(key, (0, 0.0, 0.0))
        samples.append(last - t if count >= n else math.inf)
        lost += max(0, n - count)
    lost += (2 * pairs - len(sent)) * n  # changes never made in time
    p99 = percentile(samples, 0.99) if samples else math.inf
    ok = lost == 0 and p99 <= SUSTAINED_P99_LIMIT and len(sent) == 2 * pairs and late < 0.5
    return {
        "changes_per_s": round(rate, 2),
        "deliveries_per_s": round(rate * n),
        "changes": len(sent),
        "p50_ms": ms(percentile(samples, 0.5)) if samples else None,
        "p99_ms": ms(p99),
        "lost": lost,
        "writer_late_s": round(late, 3),
        "ok": ok,
    }


async def burst(swarm: Swarm, driver, changes: int, wait: float) -> dict:
    """Fire `changes` changes as fast as the write path takes them (half creates, then their
    kills); wait until every player's state equals GET /api/viruses/, resyncing on gaps."""
    players = swarm.open_players
    n = len(players)
    for player in players:
        player.virus_messages = player.resyncs = player.gaps = 0
    closed_before = swarm.closed_by_server
    swarm.reset_arrivals()
    semaphore = asyncio.Semaphore(8)
    start = time.perf_counter()

    async def limited(coro_fn, *args):
        async with semaphore:
            return await coro_fn(*args)

    ids = await asyncio.gather(*(limited(driver.create) for _ in range(changes // 2)))
    await asyncio.gather(*(limited(driver.kill, virus_id) for virus_id in ids))
    written = time.perf_counter() - start
    made = 2 * len(ids)
    target = await driver.state()
    tails = 0
    converged_at = None
    deadline = start + wait
    while time.perf_counter() < deadline:
        if converged(swarm.open_players, target):
            converged_at = time.perf_counter() - start
            break
        quiet = time.perf_counter() - max(swarm.last_arrival, start + written)
        if quiet > 1.0:
            # Nothing moving but someone is behind: its last deliveries were dropped and no
            # later change reveals the gap. A live game always has a next change; make one.
            tails += 1
            virus_id = await driver.create()
            await driver.kill(virus_id)
            made += 2
            target = await driver.state()
        await asyncio.sleep(0.05)
    open_now = swarm.open_players
    behind = sum(1 for p in open_now if not matches(p, target))
    received = sum(p.virus_messages for p in players)
    expected = made * n
    return {
        "clients": n,
        "changes": changes,
        "write_seconds": round(written, 2),
        "converged_s": round(converged_at, 2) if converged_at is not None else None,
        "tail_changes": tails,
        "deliveries_expected": expected,
        "deliveries_dropped": max(0, expected - received),
        "dropped_pct": round(100 * max(0, expected - received) / expected, 1) if expected else 0,
        "resyncs": sum(p.resyncs for p in players),
        "closed_by_server": swarm.closed_by_server - closed_before,
        "lost_for_good": behind + (n - len(open_now)),
    }


def matches(player, target: dict) -> bool:
    return player.seq == target["seq"] and player.viruses.keys() == {v["id"] for v in target["viruses"]}


def converged(players, target: dict) -> bool:
    if any(p.seq != target["seq"] or p.behind for p in players):
        return False
    return all(matches(p, target) for p in players)


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def run_server(server: BenchServer, driver, profile: dict, redis_pid: int) -> dict:
    result: dict = {"name": server.name}
    monitor = CpuMonitor([os.getpid(), redis_pid])
    await wait_for_quiet(monitor, profile["quiet_wait"])
    say(f"{server.name}: starting")
    server.start()
    monitor.server = server
    monitor.foreign_cores()
    swarm = Swarm("127.0.0.1", server.port)
    try:
        await driver.start()
        for _ in range(SEED_VIRUSES):
            await driver.create()
        if server.name != "floor":
            rps = await list_rps(server.url, profile["list_seconds"])
            result["list_rps"] = round(rps)
            say(f"{server.name}: list endpoint {rps:,.0f} requests/s ({SEED_VIRUSES} viruses)")
        await settle(1.0)
        rss_before = server.rss_mb()

        storm_n = profile["storm"]
        # Idle memory first, from sockets connecting a few at a time: after a storm, RSS
        # also holds what its concurrent handshakes freed and the allocator kept
        # (docs/performance.md#the-connect-storm; `python -m bench.socketmemory --batch`).
        say(f"{server.name}: {storm_n} idle clients, {STEADY_CONNECTS} connecting at a time")
        await swarm.connect(storm_n, concurrency=STEADY_CONNECTS, wait=60)
        await settle(3.0)
        idle = len(swarm.open_players)
        rss_idle = server.rss_mb()
        per_1000 = (rss_idle - rss_before) * 1000 / max(1, idle)
        result["memory"] = {
            "rss_before_mb": round(rss_before, 1),
            "rss_idle_mb": round(rss_idle, 1),
            "idle_clients": idle,
            "mb_per_1000": round(per_1000, 1),
        }
        say(
            f"{server.name}: RSS {rss_before:.0f} -> {rss_idle:.0f} MB: "
            f"{per_1000:.1f} MB per 1000 idle clients"
        )
        swarm.close_all()
        await settle(3.0)

        say(f"{server.name}: connect storm, {storm_n} clients at once")
        storm = await swarm.connect(storm_n, concurrency=storm_n, wait=60)
        result["storm"] = storm
        say(
            f"{server.name}: storm: {storm['connected']} connected in {storm['seconds']:.2f} s, "
            f"{storm['refused']} refused {storm['refusal_reasons'][:2]}"
        )
        await settle(3.0)

        result["latency"] = {}
        result["ramp"] = []
        levels = [storm_n] + sorted(n for n in profile["levels"] if n != storm_n)
        for index, n in enumerate(levels):
            have = len(swarm.open_players)
            if n < have:
                swarm.disconnect(have - n)
                await settle(2.0)
            elif n > have:
                say(f"{server.name}: connecting {n - have} more clients")
                ramp = await swarm.connect(n - have, concurrency=50, wait=60)
                result["ramp"].append(ramp)
                say(f"{server.name}: ramp: {ramp['connected']} connected, {ramp['refused']} refused")
                await settle(3.0)
            events = profile["events"][n]
            say(f"{server.name}: fan-out latency, {len(swarm.open_players)} clients, {events} changes")
            lat = await latency(swarm, driver, events)
            result["latency"][str(n)] = lat
            say(
                f"{server.name}: N={lat['clients']}: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
                f"lost {lat['lost']} of {lat['deliveries_expected']}"
            )
            if index == 0 and not swarm.open_players:
                say(f"{server.name}: no client is still open: sustained and burst skipped")
            elif index == 0:
                say(f"{server.name}: sustained deliveries, {len(swarm.open_players)} clients")
                result["sustained"] = await sustained(
                    swarm, driver, profile["step_seconds"], profile["rate_factor"]
                )
                say(f"{server.name}: sustained {result['sustained']['deliveries_per_s']:,} deliveries/s")
                await settle(2.0)
                say(f"{server.name}: burst of {profile['burst']} changes, {len(swarm.open_players)} clients")
                result["burst"] = await burst(swarm, driver, profile["burst"], profile["burst_timeout"])
                b = result["burst"]
                say(
                    f"{server.name}: burst: written in {b['write_seconds']} s, "
                    f"converged in {b['converged_s']} s, "
                    f"{b['dropped_pct']} % of deliveries dropped, {b['resyncs']} resyncs, "
                    f"{b['lost_for_good']} clients lost for good"
                )
                await settle(2.0)
        result["closed_by_server"] = swarm.closed_by_server
        result["other_cpu_cores"] = round(monitor.foreign_cores(), 2)
        if result["other_cpu_cores"] > 0.3:
            say(f"{server.name}: WARNING: other processes used {result['other_cpu_cores']} cores meanwhile")
        result["refused_total"] = storm["refused"] + sum(r["refused"] for r in result["ramp"])
    finally:
        swarm.close_all()
        await driver.close()
        server.stop()
    say(f"{server.name}: stopped")
    return result


async def run_gameload(server: BenchServer, driver, profile: dict, redis_pid: int) -> dict:
    """The game-load phase on a freshly started `server` (its database kept from before)."""
    monitor = CpuMonitor([os.getpid(), redis_pid])
    await wait_for_quiet(monitor, min(LATER_QUIET_WAIT, profile["quiet_wait"]))
    say(f"{server.name}: game load, starting")
    server.start()
    monitor.server = server
    monitor.foreign_cores()
    swarm = Swarm("127.0.0.1", server.port)
    started = time.perf_counter()
    try:
        await driver.start()
        paths = ["socket"] if server.name == "floor" else ["http", "socket"]
        result = await gameload.phase(
            swarm, driver, paths, profile["gameload"], ceiling=MAX_DELIVERIES, say=say
        )
        result["closed_by_server"] = swarm.closed_by_server
        result["other_cpu_cores"] = round(monitor.foreign_cores(), 2)
        if result["other_cpu_cores"] > 0.3:
            say(f"{server.name}: WARNING: other processes used {result['other_cpu_cores']} cores meanwhile")
    finally:
        swarm.close_all()
        await driver.close()
        server.stop()
    result["seconds"] = round(time.perf_counter() - started, 1)
    say(f"{server.name}: game load done in {result['seconds']} s")
    return result


async def on_fresh_server(server: BenchServer, profile: dict, redis_pid: int, name: str, phase) -> dict:
    """Run `phase()` (a coroutine function) on `server`, started for it once the machine is
    quiet; the result records the cores other processes used meanwhile."""
    monitor = CpuMonitor([os.getpid(), redis_pid])
    await wait_for_quiet(monitor, min(LATER_QUIET_WAIT, profile["quiet_wait"]))
    say(f"{server.name}: {name}, starting")
    server.start()
    monitor.server = server
    monitor.foreign_cores()
    try:
        result = await phase()
    finally:
        server.stop()
    result["other_cpu_cores"] = round(monitor.foreign_cores(), 2)
    return result


async def run_abuse(server: BenchServer, driver, profile: dict, redis_pid: int) -> dict:
    """The abuse phase against one project process with the shipped admission limits.

    The attacker process counts as "other": its CPU is part of the attack."""
    return await on_fresh_server(
        server, profile, redis_pid, "abuse", lambda: abuse.phase(server, driver, profile["abuse"], say=say)
    )


async def run_rooms(server: BenchServer, profile: dict, redis_pid: int) -> dict:
    """The many-rooms phase (bench/rooms.py) on a freshly started `server`."""
    result = await on_fresh_server(
        server, profile, redis_pid, "many rooms",
        lambda: rooms.phase(
            server.url, server.port, profile["rooms"], ceiling=MAX_DELIVERIES, say=say,
            database_url=server.env["DATABASE_URL"],
        ),
    )  # fmt: skip
    if result["other_cpu_cores"] > 0.3:
        say(f"{server.name}: WARNING: other processes used {result['other_cpu_cores']} cores meanwhile")
    return result


def rooms_server(project: BenchServer, app: str, logs: Path) -> BenchServer:
    """The project with room creation unthrottled: the phase makes its rooms from one player."""
    env = {**project.env, **rooms.UNTHROTTLED_ROOMS}
    return BenchServer("project-rooms", env, logs / "project-rooms.log", [*DAPHNE, app])


def abuse_server(project: BenchServer, app: str, logs: Path) -> BenchServer:
    """The project with the shipped per-address limits (socket cap, snapshot bucket) back on."""
    env = {k: v for k, v in project.env.items() if k not in ADMISSION_OFF}
    return BenchServer("project-abuse", env, logs / "project-abuse.log", [*DAPHNE, app])


# -- main ----------------------------------------------------------------------------------


def server_specs(args, databases: Databases, redis_url: str, static_root: Path, logs: Path):
    """(name, server, driver factory) for each server of this run, in running order."""
    common = {
        "DJANGO_STATIC_ROOT": str(static_root),
        "VIRUS_MAX_ALIVE": "100000",
        # Every benchmark client comes from 127.0.0.1: lift the per-address socket cap.
        "VIRUS_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "LOG_LEVEL": "INFO",
    }
    specs = []
    if "floor" in args.servers:
        channel = f"floor-{uuid.uuid4().hex[:8]}"
        env = base_env(database_url="", redis_url=redis_url)
        argv = floor.command(redis_url, channel, str(databases.directory / f"{channel}.sqlite3"))
        server = BenchServer("floor", env, logs / "floor.log", argv)
        specs.append((server, lambda s=server, c=channel: FloorDriver(s.url, redis_url, c)))
    if "stock" in args.servers:
        env = base_env(
            database_url=databases.fresh(),
            redis_url=redis_url,
            DJANGO_SETTINGS_MODULE="bench.stock.settings",
            **common,
        )
        server = BenchServer("stock", env, logs / "stock.log", [*DAPHNE, "bench.stock.asgi:application"])
        specs.append((server, lambda s=server: HttpDriver(s.url)))
    extra = {"DJANGO_SETTINGS_MODULE": args.project_settings} if args.project_settings else {}
    if "project" in args.servers:
        env = base_env(database_url=databases.fresh(), redis_url=redis_url, **common, **extra)
        argv = [*DAPHNE, args.project_app]
        if args.processes != 1:
            # A node's layout: one daphne per core on one port (virusgame/serve.py, as make serve).
            argv = [PYTHON, "-m", "virusgame.serve", "--processes", str(args.processes)]
            argv += ["-b", "127.0.0.1", "-p", "{port}", args.project_app]
        server = BenchServer("project", env, logs / "project.log", argv)
        specs.append((server, lambda s=server: HttpDriver(s.url)))
    for name in (peer for peer in PEERS if peer in args.servers):
        if missing := peer_missing(name):
            say(f"{name}: skipped: {missing}")
            continue
        env = base_env(database_url=databases.fresh(), redis_url=redis_url, **common, **extra)
        server = BenchServer(name, env, logs / f"{name}.log", peer_argv(name, args.project_app))
        specs.append((server, lambda s=server: HttpDriver(s.url)))
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, fewer changes: under two minutes")
    parser.add_argument(
        "--servers",
        default="floor,stock,project,uvicorn,granian",
        help="comma-separated subset of floor,stock,project,uvicorn,granian (ratios need the baselines)",
    )
    parser.add_argument("--project-settings", default="", help="settings module for the project (levers)")
    parser.add_argument(
        "--project-app", default="virusgame.asgi:application", help="ASGI app for the project"
    )
    parser.add_argument("--label", default="", help="name of this run in the results file")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="daphne processes serving the project on one port, as make serve runs them (0: one per core)",
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.phases = [s.strip() for s in args.phases.split(",") if s.strip()]
    profile_name = "quick" if args.quick else "full"
    profile = PROFILES[profile_name]

    files = raise_open_files(1 << 20)
    say(f"bench ({profile_name}): open-file limit {files}, {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="virusbench-"))
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis = LocalRedis(work / "redis").start()
    say(f"private redis-server at {redis.url}")
    databases = Databases(work)
    say(f"databases: {'PostgreSQL' if databases.postgres_url else 'SQLite'} (fresh per server)")
    started = time.time()
    results: dict = {
        "profile": profile_name,
        "label": args.label,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "database": "postgresql" if databases.postgres_url else "sqlite",
        "cpus": os.cpu_count(),
        "project_settings": args.project_settings or "virusgame.settings",
        "project_app": args.project_app,
        "phases": args.phases,
        "project_processes": args.processes or os.cpu_count(),
        "servers": {},
        "skipped": {name: why for name in PEERS if name in args.servers and (why := peer_missing(name))},
    }
    try:
        static_root = work / "static"
        collectstatic(databases.fresh(), static_root)
        for server, make_driver in server_specs(args, databases, redis.url, static_root, logs):
            result = results["servers"][server.name] = {"name": server.name}
            if "fanout" in args.phases:
                result.update(asyncio.run(run_server(server, make_driver(), profile, redis.process.pid)))
            if "gameload" in args.phases:
                result["gameload"] = asyncio.run(
                    run_gameload(server, make_driver(), profile, redis.process.pid)
                )
            if "abuse" in args.phases and server.name == "project":
                target = abuse_server(server, args.project_app, logs)
                result["abuse"] = asyncio.run(
                    run_abuse(target, HttpDriver(target.url), profile, redis.process.pid)
                )
            if "rooms" in args.phases and server.name == "project":
                target = rooms_server(server, args.project_app, logs)
                result["rooms"] = asyncio.run(run_rooms(target, profile, redis.process.pid))
    finally:
        redis.stop()
        databases.drop_all()
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.time() - started, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    suffix = f"-{args.label}" if args.label else ""
    json_path = RESULTS / f"bench-{profile_name}-{stamp}{suffix}.json"
    png_path = json_path.with_suffix(".png")
    json_path.write_text(json.dumps(results, indent=2))
    shutil.copy(json_path, RESULTS / f"latest-{profile_name}.json")
    print()
    if "fanout" in args.phases:
        print(report.table(results))
        report.plot(results, png_path)
        shutil.copy(png_path, RESULTS / f"latest-{profile_name}.png")
    if "gameload" in args.phases:
        print()
        print(report.gameload_table(results))
        load_png = json_path.with_name(json_path.stem + "-gameload.png")
        if report.gameload_plot(results, load_png):
            shutil.copy(load_png, RESULTS / f"latest-{profile_name}-gameload.png")
    if (results["servers"].get("project") or {}).get("rooms"):
        print()
        print(report.rooms_table(results))
    if (results["servers"].get("project") or {}).get("abuse"):
        print()
        print(report.abuse_table(results))
    say(
        f"results: {json_path.relative_to(ROOT)}, plot: {png_path.relative_to(ROOT)} ({results['seconds']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
