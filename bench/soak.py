"""`make soak`: one node played on for a long while; does anything grow without bound?

One daphne process on fresh embedded defaults (a SQLite database, a private redis-server
this tool starts so that it can restart it; PostgreSQL when DATABASE_URL points at it), and
from this process: page-like players (bench/client.py: seq order, resync on gaps) that
reconnect with backoff when the server closes them, a share of them leaving and coming back
every minute (churn), steady creates and kills over their sockets within the rate limit, and
`manage.py spawn_virus` started once a minute as cron would. Redis is stopped and started
again once, 40 % of the way in, so that the judged last half begins after the recovery.

Every `--sample-seconds` it records daphne's RSS and open file descriptors (/proc), the
asyncio tasks on its loop (`virusgame_asyncio_tasks` from /metrics), the `Connection` rows
and Redis's `used_memory` (and daphne's count of full GCs, which explains RSS steps). The
run fails (exit 1, naming the series) when a series' least-squares slope over the last half
(from when every player was back, if later) is above its limit (`LIMITS`), or when any
player's view differs from the database at the end. Writes
bench/results/soak-<time>.json and .png (and latest-soak.*), daphne's and the spawner's
logs to bench/results/logs/.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import redis

from bench.client import Player, Refused, Swarm
from tools.local_redis import LocalRedis
from tools.servers import (
    DAPHNE,
    ROOT,
    Databases,
    GameServer,
    base_env,
    raise_open_files_limit,
    rss_mib,
    uses_postgres,
)

RESULTS = ROOT / "bench" / "results"
# Per minute, over the last half: a leak of one socket, task or row per churned player, or
# of a few KB per reconnect, is far above these; a steady state is far below.
LIMITS = {
    "rss_mb": 1.0,
    "fds": 5.0,
    "tasks": 5.0,
    "connection_rows": 5.0,
    "redis_mb": 0.25,
}
UNITS = {"rss_mb": "MB", "fds": "fds", "tasks": "tasks", "connection_rows": "rows", "redis_mb": "MB"}
TITLES = {
    "rss_mb": "daphne RSS (MB)",
    "fds": "daphne open fds",
    "tasks": "asyncio tasks",
    "connection_rows": "Connection rows",
    "redis_mb": "Redis used_memory (MB)",
}
MIN_JUDGED = 3  # samples the last half needs for a slope
RESTART_AT = 0.4  # of the run: Redis is stopped here
REDIS_DOWN = 10.0  # s Redis stays down
BACKOFF = (0.5, 10.0)  # s, a player's first and longest wait before reconnecting after a close
CHURN_TICKS = 10  # per minute: churn is spread over the minute, not all at once
CONNECT_WAIT = 30.0  # s for a handshake and its snapshot
QUIET_WAIT = 10.0  # s a sample waits for every player to be connected
ANSWER_WAIT = 10.0  # s for an action's answer
CONVERGE_WAIT = 60.0  # s after the last change for every player to equal the database
TOKEN = "soak-metrics-token-0123456789abcdef"

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{(time.monotonic() - T0) / 60:5.1f} min] {message}", flush=True)


# -- the verdict (pure; tests/unit/test_bench_soak.py) --------------------------------------------


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute (None under two times)."""
    if len({t for t, _ in points}) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in points)
    variance = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * covariance / variance


def judge(samples: list[dict], *, since: float, unconverged: int, limits: dict = LIMITS) -> dict:
    """Each series' slope over the samples from `since` (s) on, and every reason to fail."""
    slopes: dict[str, float | None] = {}
    failures: list[str] = []
    for name, limit in limits.items():
        points = [(s["t"], s[name]) for s in samples if s["t"] >= since and s.get(name) is not None]
        slope = slope_per_minute(points) if len(points) >= MIN_JUDGED else None
        slopes[name] = None if slope is None else round(slope, 4)
        if slope is None:
            failures.append(f"{name}: {len(points)} samples in the last half, {MIN_JUDGED} needed")
        elif slope > limit:
            failures.append(f"{name} grows {slope:.3g} {UNITS[name]}/min (limit {limit:g})")
    if unconverged:
        failures.append(f"{unconverged} players ended unconverged (their view is not the database)")
    return {"slopes": slopes, "limits": dict(limits), "failures": failures, "passed": not failures}


# -- players ----------------------------------------------------------------------------------


class Slot:
    """One player's seat: connected, closed and reconnected for the whole run, as a page is."""

    def __init__(self, soak: "Soak"):
        self.soak = soak
        self.player: Player | None = None
        self.closed = asyncio.Event()
        self.leaving = False  # closed by the churn, not by the server

    @property
    def open(self) -> bool:
        return self.player is not None and self.player.open

    async def run(self) -> None:
        backoff = BACKOFF[0]
        while not self.soak.finished:
            try:
                player = await self.soak.swarm.connect_one(CONNECT_WAIT)
            except Refused:
                self.soak.counts["refused"] += 1
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(2 * backoff, BACKOFF[1])
                continue
            self.soak.counts["connects"] += 1
            self.closed.clear()
            player.slot = self
            self.player = player
            if player.open:
                await self.closed.wait()
            self.player = None
            if self.leaving:
                self.leaving = False
                await asyncio.sleep(random.uniform(0.5, 3.0))  # a reload, a tab come back
            else:
                self.soak.counts["closed_by_server"] += 1
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(2 * backoff, BACKOFF[1])
                continue
            backoff = BACKOFF[0]

    def leave(self) -> None:
        if self.open:
            self.leaving = True
            self.player.close()


class SoakSwarm(Swarm):
    """The benchmark's swarm, telling each player's slot when its socket closed."""

    def on_closed(self, player: Player) -> None:
        super().on_closed(player)
        with contextlib.suppress(ValueError):
            self.players.remove(player)
        slot = getattr(player, "slot", None)
        if slot is not None:
            slot.closed.set()


# -- the run ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, args, server: GameServer, local_redis: LocalRedis):
        self.args = args
        self.server = server
        self.redis = local_redis
        self.duration = 60 * args.minutes
        self.swarm = SoakSwarm("127.0.0.1", server.port)
        self.slots = [Slot(self) for _ in range(args.players)]
        self.finished = False
        self.counts: Counter = Counter()
        self.answers: Counter = Counter()
        self.spawner: Counter = Counter()
        self.samples: list[dict] = []
        self.events: list[dict] = []
        self.refs = 0
        self.holding = False  # a sample is being taken: the churn waits
        self.background: set[asyncio.Task] = set()
        self.back_at = 0.0  # when every player was connected again after the Redis restart
        self.http = httpx.AsyncClient(base_url=server.url, timeout=10)

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, name: str, **fields) -> None:
        self.events.append({"t": round(self.now(), 1), "event": name, **fields})
        say(f"{name} {' '.join(f'{k}={v}' for k, v in fields.items())}".rstrip())

    @property
    def open_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.open]

    async def run(self) -> int:
        self.started = time.monotonic()
        players = [asyncio.create_task(slot.run()) for slot in self.slots]
        await self.until(lambda: len(self.open_slots) == len(self.slots), 120, "every player connected")
        self.event("players.connected", players=len(self.slots))
        load = [
            asyncio.create_task(loop())
            for loop in (self.sample_loop, self.act_loop, self.churn_loop, self.cron_loop, self.restart_redis)
        ]
        await asyncio.sleep(max(0.0, self.duration - self.now()))
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        await self.wait_for_spawner()
        unconverged = await self.converge()
        await self.sample()
        self.finished = True
        for slot in self.slots:
            slot.leave()
        for task in players:
            task.cancel()
        await asyncio.gather(*players, return_exceptions=True)
        await self.http.aclose()
        return unconverged

    async def until(self, predicate, within: float, what: str) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > within:
                raise RuntimeError(f"not within {within} s: {what}")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    # -- load --

    async def act_loop(self) -> None:
        """Creates and kills over the players' sockets at a steady rate, within the rate limit."""
        period = 1 / self.args.actions_per_second
        next_at = time.monotonic()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            slots = self.open_slots
            if slots:
                task = asyncio.create_task(self.act(random.choice(slots).player))
                self.background.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(self.background.discard)

    async def act(self, player: Player) -> None:
        self.refs += 1
        ref = f"soak-{self.refs}"
        alive = list(player.viruses)
        if alive and (len(alive) >= self.args.target_alive or random.random() < 0.5):
            message = {"type": "kill", "id": random.choice(alive), "ref": ref}
        else:
            message = {"type": "create", "ref": ref}
        try:
            answer, _ = await asyncio.wait_for(player.act(message), ANSWER_WAIT)
            self.answers[f"{message['type']} {answer.get('status')}"] += 1
        except TimeoutError:
            self.swarm.answers.pop(ref, None)
            self.answers[f"{message['type']} unanswered"] += 1

    async def churn_loop(self) -> None:
        """Every minute `--churn` of the players leave and come back, spread over the minute."""
        per_tick = self.args.players * self.args.churn / CHURN_TICKS
        owed = 0.0
        while True:
            await asyncio.sleep(60 / CHURN_TICKS)
            owed += per_tick
            if self.holding:
                continue  # owed until the sample is taken
            leaving, owed = int(owed), owed - int(owed)
            for slot in random.sample(self.open_slots, min(leaving, len(self.open_slots))):
                slot.leave()
                self.counts["churned"] += 1

    async def cron_loop(self) -> None:
        """`spawn_virus` as the crontab runs it, at each minute; none in the last minute."""
        command = ["manage.py", "spawn_virus", "--count", "3", "--spread", "55", "--once-per", "60"]
        minute = 1
        while 60 * (minute + 1) <= self.duration:
            await asyncio.sleep(max(0.0, 60 * minute - self.now()))
            self.spawner_process = await asyncio.create_subprocess_exec(
                sys.executable,
                *command,
                cwd=ROOT,
                env=self.server.env,
                stdout=self.args.spawn_log,
                stderr=self.args.spawn_log,
            )
            task = asyncio.create_task(self.count_spawner_exit(self.spawner_process))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            minute += 1

    async def count_spawner_exit(self, process) -> None:
        self.spawner[f"exit {await process.wait()}"] += 1

    async def wait_for_spawner(self) -> None:
        process = getattr(self, "spawner_process", None)
        if process is not None and process.returncode is None:
            await process.wait()

    async def restart_redis(self) -> None:
        await asyncio.sleep(max(0.0, RESTART_AT * self.duration - self.now()))
        self.event("redis.stop", open_players=len(self.open_slots))
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(REDIS_DOWN)
        await asyncio.to_thread(self.redis.start)
        self.event("redis.start", open_players=len(self.open_slots))
        try:
            waited = await self.until(lambda: len(self.open_slots) == len(self.slots), 300, "")
        except RuntimeError:
            self.event("players.not_back", open_players=len(self.open_slots))  # the end check fails them
            return
        self.event("players.back", seconds=round(waited, 1))
        self.back_at = self.now()

    # -- measurements --

    async def sample_loop(self) -> None:
        while True:
            # Counts are taken with every player connected (churn held, at most QUIET_WAIT):
            # otherwise the few sockets mid-reconnect at each sample are noise in the slopes.
            self.holding = True
            with contextlib.suppress(RuntimeError):
                await self.until(lambda: len(self.open_slots) == len(self.slots), QUIET_WAIT, "")
            await asyncio.sleep(0.5)  # the server's side of the last handshakes
            await self.sample()
            self.holding = False
            await asyncio.sleep(self.args.sample_seconds)

    async def sample(self) -> None:
        pid = self.server.process.pid
        sample = {
            "t": round(self.now(), 1),
            "rss_mb": round(rss_mib(pid), 2),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            **await self.scrape(),
            "connection_rows": await asyncio.to_thread(connection_rows, self.server.env["DATABASE_URL"]),
            "redis_mb": await asyncio.to_thread(redis_used_mb, self.redis),
            "open_players": len(self.open_slots),
        }
        self.samples.append(sample)
        answers = " ".join(f"{key}:{n}" for key, n in sorted(self.answers.items()))
        say(
            f"rss {sample['rss_mb']} MB, fds {sample['fds']}, tasks {sample['tasks']}, "
            f"rows {sample['connection_rows']}, redis {sample['redis_mb']} MB, "
            f"players {sample['open_players']}/{len(self.slots)} | {answers}"
        )

    async def scrape(self) -> dict:
        """The asyncio tasks, and the full collections so far (not judged: they explain RSS)."""
        try:
            response = await self.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        except httpx.HTTPError:
            return {"tasks": None, "full_gcs": None}
        found = {
            name: re.search(rf"^{pattern} (\S+)$", response.text, re.MULTILINE)
            for name, pattern in (
                ("tasks", "virusgame_asyncio_tasks"),
                ("full_gcs", r'python_gc_collections_total\{generation="2"\}'),
            )
        }
        return {name: int(float(match.group(1))) if match else None for name, match in found.items()}

    async def converge(self) -> int:
        """Wait for every player to equal the database; return how many did not."""
        deadline = time.monotonic() + CONVERGE_WAIT
        while True:
            truth = (await self.http.get("/api/viruses/")).json()
            ids = {virus["id"] for virus in truth["viruses"]}
            behind = [slot for slot in self.slots if not (slot.open and matches(slot.player, truth, ids))]
            if not behind or time.monotonic() > deadline:
                self.event(
                    "converged" if not behind else "unconverged",
                    players=len(self.slots) - len(behind),
                    of=len(self.slots),
                    seq=truth["seq"],
                    viruses=len(ids),
                )
                return len(behind)
            await asyncio.sleep(0.5)


def matches(player: Player, truth: dict, ids: set[str]) -> bool:
    return player.seq == truth["seq"] and not player.behind and player.viruses.keys() == ids


def connection_rows(database_url: str) -> int:
    query = "SELECT COUNT(*) FROM viruses_connection"
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return db.execute(query).fetchone()[0]
    with psycopg.connect(database_url) as db:
        return db.execute(query).fetchone()[0]


def redis_used_mb(local_redis: LocalRedis) -> float | None:
    try:
        client = redis.Redis(unix_socket_path=str(local_redis.socket), socket_timeout=2)
        with contextlib.closing(client):
            return round(client.info("memory")["used_memory"] / 2**20, 3)
    except redis.RedisError:
        return None  # down (the restart)


# -- output -----------------------------------------------------------------------------------


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(LIMITS)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.0 * len(names)), dpi=110, sharex=True)
    samples = results["samples"]
    down = [e["t"] / 60 for e in results["events"] if e["event"] in ("redis.stop", "redis.start")]
    # Between two samples where the process's count of full (generation 2) collections rose.
    full_gcs = [
        (before["t"] + after["t"]) / 120
        for before, after in zip(samples, samples[1:], strict=False)
        if None not in (before.get("full_gcs"), after.get("full_gcs"))
        and after["full_gcs"] > before["full_gcs"]
    ]
    verdict = results["verdict"]
    for ax, name in zip(axes, names, strict=True):
        points = [(s["t"] / 60, s[name]) for s in samples if s.get(name) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", color="tab:blue")
        ax.axvspan(results["judged_from_s"] / 60, results["seconds"] / 60, color="tab:green", alpha=0.07)
        if len(down) == 2:
            ax.axvspan(*down, color="tab:red", alpha=0.25, label="Redis down")
        for minute in full_gcs:
            ax.axvline(minute, color="tab:gray", linestyle=":", linewidth=1)
        slope = verdict["slopes"].get(name)
        slope_text = "n/a" if slope is None else f"{slope:+.3g} {UNITS[name]}/min"
        ax.set_title(f"{TITLES[name]}: slope {slope_text} (limit {LIMITS[name]:g})", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("minutes (green: the judged last half; dotted: a full GC in daphne)")
    outcome = "PASS" if verdict["passed"] else "FAIL"
    fig.suptitle(
        f"Soak {results['started']}: {results['players']} players, {results['minutes']:g} min, "
        f"{results['database']}: {outcome}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20, help="length of the run (default 20)")
    parser.add_argument("--players", type=int, default=500)
    parser.add_argument("--churn", type=float, default=0.10, help="share of players reconnecting each minute")
    parser.add_argument("--actions-per-second", type=float, default=2.0, help="creates + kills, all players")
    parser.add_argument(
        "--target-alive", type=int, default=40, help="players kill rather than create above this"
    )
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    raise_open_files_limit(1 << 16)
    work = Path(tempfile.mkdtemp(prefix="virussoak-"))
    args.logs = RESULTS / "logs"
    args.logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    local_redis = LocalRedis(work / "redis").start()
    databases = Databases(work)
    env = base_env(
        database_url=databases.fresh(),
        redis_url=local_redis.url,
        METRICS_TOKEN=TOKEN,
        VIRUS_RATE_LIMIT="",  # the default limit: the soak's actions stay within it
        VIRUS_MAX_CONNECTIONS_PER_ADDRESS="0",  # every player comes from 127.0.0.1
        LOG_LEVEL="WARNING",
    )
    log_path = args.logs / f"soak-{stamp}-daphne.log"
    # The deploy kit's daphne flags (make serve, deploy/).
    argv = [*DAPHNE, "--ping-interval", "20", "--ping-timeout", "30", "--application-close-timeout", "10"]
    server = GameServer(env, log_path, argv=[*argv, "virusgame.asgi:application"])
    database = "postgresql" if uses_postgres() else "sqlite"
    say(
        f"soak: {args.minutes:g} min, {args.players} players, churn {args.churn:.0%}/min, "
        f"{args.actions_per_second:g} actions/s, {database}, "
        f"Redis restart at {RESTART_AT * args.minutes:g} min"
    )
    soak = None
    args.spawn_log = open(args.logs / f"soak-{stamp}-spawner.log", "ab")  # noqa: SIM115 (closed below)
    try:
        server.start()
        say(f"daphne pid {server.process.pid} at {server.url}, redis {local_redis.url}")
        soak = Soak(args, server, local_redis)
        unconverged = asyncio.run(soak.run())
    finally:
        server.stop()
        local_redis.stop()
        args.spawn_log.close()
        databases.drop_all()
        shutil.rmtree(work, ignore_errors=True)
    # The last half, and never the reconnect storm after the restart (it ends before the
    # half in a default run; a shortened one could otherwise judge the recovery).
    judged_from = round(max(30 * args.minutes, soak.back_at), 1)
    verdict = judge(soak.samples, since=judged_from, unconverged=unconverged)
    results = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(soak.samples[-1]["t"], 1),
        "minutes": args.minutes,
        "players": args.players,
        "churn_per_minute": args.churn,
        "actions_per_second": args.actions_per_second,
        "database": database,
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "judged_from_s": judged_from,
        "verdict": verdict,
        "unconverged": unconverged,
        "answers": dict(soak.answers),
        "spawner": dict(soak.spawner),
        "players_log": dict(soak.counts),
        "events": soak.events,
        "samples": soak.samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"soak-{stamp}.json"
    png_path = json_path.with_suffix(".png")
    json_path.write_text(json.dumps(results, indent=2))
    plot(results, png_path)
    shutil.copy(json_path, RESULTS / "latest-soak.json")
    shutil.copy(png_path, RESULTS / "latest-soak.png")
    print()
    for name, slope in verdict["slopes"].items():
        shown = "n/a" if slope is None else f"{slope:+.4g}"
        print(f"  {TITLES[name]:<26} slope {shown:>9} {UNITS[name]}/min   (limit {LIMITS[name]:g})")
    print(f"  answers: {dict(sorted(soak.answers.items()))}")
    print(f"  spawner runs: {dict(soak.spawner)}; players: {dict(soak.counts)}")
    say(f"results: {json_path.relative_to(ROOT)}, plot: {png_path.relative_to(ROOT)}")
    if verdict["failures"]:
        for failure in verdict["failures"]:
            print(f"SOAK FAILED: {failure}", flush=True)
        return 1
    print("soak passed: nothing grew without bound, every player converged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
