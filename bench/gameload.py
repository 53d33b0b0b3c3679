"""The game-load phase: players click while everyone watches.

P players hold sockets; actions (creates, and kills of what was created) go out at a fixed
total rate through one path, the rate stepped up until a step fails. A step holds when every
action is answered with success, every player receives every change, the p99 from sending an
action to the LAST player receiving its change is within `P99_LIMIT`, and the actions keep
their schedule. The capacity at P is the highest rate that held.

Two paths: `HttpActions` (keep-alive clients of the HTTP API, CSRF as the page does) and
`SocketActions` (the players themselves send the contract's `create` / `kill` over their
sockets, round robin, and wait for the `ack`). A server that does not know the socket
actions answers an `error` without a ref: that path is then "n/a" for it.
"""

import asyncio
import itertools
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from bench.client import Swarm

P99_LIMIT = 0.250  # s, send -> last player receives the change
LATE_LIMIT = 0.200  # s an action may go out behind its schedule
ANSWER_WAIT = 5.0  # s an action may wait for its answer before it counts as failed
DRAIN_WAIT = 2.0  # s after the last answer for the last deliveries (far beyond P99_LIMIT)
RETRY_PAUSE = 1.0  # s for a failed step's backlog to drain before it is tried again


@dataclass
class Action:
    kind: str  # "create" | "kill"
    due: float
    sent: float = math.nan
    answered: float = math.nan
    status: int | None = None
    virus_id: str | None = None


@dataclass
class Step:
    """One rate held for a while: what happened, and whether it held."""

    rate: float
    players: int
    actions: list[Action] = field(default_factory=list)
    completion: list[float] = field(default_factory=list)  # s per change, inf when not everyone got it
    lost: int = 0
    late: float = 0.0
    client_cpu: float = 0.0  # cores the benchmark process used meanwhile

    def summary(self) -> dict:
        answers = [a.answered - a.sent for a in self.actions if a.status is not None]
        errors = sum(1 for a in self.actions if a.status is None or not 200 <= a.status < 300)
        statuses = sorted({a.status for a in self.actions if a.status is None or a.status >= 300}, key=str)
        return {
            "rate": self.rate,
            "players": self.players,
            "actions": len(self.actions),
            "errors": errors,
            "error_statuses": statuses,
            "lost": self.lost,
            "p50_ms": ms(percentile(self.completion, 0.50)),
            "p99_ms": ms(percentile(self.completion, 0.99)),
            "own_p50_ms": ms(percentile(answers, 0.50)),
            "own_p99_ms": ms(percentile(answers, 0.99)),
            "late_ms": ms(self.late),
            "client_cpu": round(self.client_cpu, 2),
        }


def verdict(summary: dict) -> str | None:
    """Why a step failed (None: it held)."""
    if summary["actions"] == 0:
        return "no action made"
    if summary["errors"]:
        return f"{summary['errors']} actions failed {summary['error_statuses']}"
    if summary["lost"]:
        return f"{summary['lost']} deliveries not in {DRAIN_WAIT:g} s after the last answer"
    p99 = summary["p99_ms"]
    if p99 is None:
        return "no change reached every player"
    if p99 > 1000 * P99_LIMIT:
        return f"p99 {p99} ms"
    if summary["late_ms"] > 1000 * LATE_LIMIT:
        return f"benchmark client {summary['late_ms']} ms behind schedule"
    return None


async def search(rates: list[float], run_step, *, ceiling: float = math.inf, say=print) -> dict:
    """Run `run_step(rate)` (a step summary) for rising rates until one fails twice in a row.

    A failed step is tried once more after a pause (a shared machine has hiccups); rates above
    `ceiling` (where the client process, not the server, would be measured) are not tried.
    Returns the capacity (the highest rate that held, 0 if none), why the next rate failed,
    the step that held at capacity and every step run.
    """
    steps: list[dict] = []
    capacity: float = 0
    reason = None
    for rate in rates:
        if rate > ceiling:
            reason = f"client ceiling ({ceiling:g}/s not tried above)"
            break
        for attempt in (1, 2):
            summary = await run_step(rate)
            summary["failed"] = verdict(summary)
            summary["attempt"] = attempt
            steps.append(summary)
            say(
                f"      {rate:6g} actions/s: p99 {summary['p99_ms']} ms, own p50/p99 "
                f"{summary['own_p50_ms']}/{summary['own_p99_ms']} ms, late {summary['late_ms']} ms, "
                f"client {summary['client_cpu']} cores: {summary['failed'] or 'held'}"
            )
            if not summary["failed"]:
                break
            await asyncio.sleep(RETRY_PAUSE)
        if summary["failed"]:
            reason = summary["failed"]
            break
        capacity = rate
    held = next((s for s in reversed(steps) if s["rate"] == capacity and not s["failed"]), None)
    return {"capacity": capacity, "next_step": reason, "at_capacity": held, "steps": steps}


# -- the two action paths -------------------------------------------------------------------


class HttpActions:
    """Actions through the HTTP API: `connections` keep-alive clients sharing one pool."""

    name = "http"

    def __init__(self, driver):
        self.api = driver.api

    async def create(self) -> tuple[int | None, str | None, float]:
        response = await self.api.client.post("/api/viruses/", headers=self.api.headers())
        now = time.perf_counter()
        virus_id = response.json().get("id") if response.status_code == 201 else None
        return response.status_code, virus_id, now

    async def kill(self, virus_id: str) -> tuple[int | None, str | None, float]:
        response = await self.api.client.delete(f"/api/viruses/{virus_id}/", headers=self.api.headers())
        return response.status_code, virus_id, time.perf_counter()


class SocketActions:
    """Actions over the players' own sockets, round robin, answered by `ack` / `error`."""

    name = "socket"

    def __init__(self, swarm: Swarm):
        self.swarm = swarm
        self.refs = itertools.count()
        self.players = itertools.cycle(swarm.open_players)
        self.page = uuid.uuid4().hex  # keys unique across paths and P, as each page's are

    async def probe(self, wait: float = 5.0) -> str | None:
        """None when the server takes socket actions, else why not (it said so, or silence)."""
        player = self.swarm.open_players[0]
        before = len(self.swarm.unreferenced)
        future = player.act({"type": "create", "ref": "probe"})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if future.done():
                answer, _ = future.result()
                if answer.get("type") == "ack":
                    await self.kill(answer["virus"]["id"])
                    return None
                return f"answered {answer}"
            if len(self.swarm.unreferenced) > before:
                self.swarm.answers.pop("probe", None)
                return f"server answered {self.swarm.unreferenced[-1].get('error', '')!r}"
            await asyncio.sleep(0.02)
        self.swarm.answers.pop("probe", None)
        return "no answer"

    async def _act(self, message: dict) -> tuple[int | None, dict | None, float]:
        ref = f"b{next(self.refs)}"
        message.update(ref=ref, idempotency_key=f"{self.page}:{ref}")  # every action has one, as the page's
        future = next(self.players).act(message)
        try:
            answer, now = await asyncio.wait_for(future, ANSWER_WAIT)
        except TimeoutError:
            self.swarm.answers.pop(message["ref"], None)
            return None, None, time.perf_counter()
        return answer.get("status"), answer, now

    async def create(self) -> tuple[int | None, str | None, float]:
        status, answer, now = await self._act({"type": "create"})
        virus_id = answer["virus"]["id"] if status == 201 and answer.get("type") == "ack" else None
        return status, virus_id, now

    async def kill(self, virus_id: str) -> tuple[int | None, str | None, float]:
        status, _, now = await self._act({"type": "kill", "id": virus_id})
        return status, virus_id, now


# -- one step -------------------------------------------------------------------------------


async def run_step(swarm: Swarm, actions, rate: float, seconds: float) -> dict:
    return (await run_actions(swarm, actions, rate, seconds)).summary()


async def run_actions(swarm: Swarm, actions, rate: float, seconds: float, offset: float = 0.0) -> Step:
    """`rate` actions per second for `seconds`: each odd slot kills the oldest virus this step
    created and got answered for (a create when there is none yet), so the total rate is fixed
    and nothing waits for an answer before going out. `offset`: s to shift the schedule by."""
    players = len(swarm.open_players)
    swarm.reset_arrivals()
    step = Step(rate=rate, players=players)
    alive: deque[str] = deque()
    tasks = []
    count = max(2, round(rate * seconds))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    start = time.perf_counter() + 0.05 + offset

    async def perform(action: Action, virus_id: str | None) -> None:
        action.sent = time.perf_counter()
        try:
            if action.kind == "create":
                action.status, action.virus_id, action.answered = await actions.create()
                if action.virus_id is not None:
                    alive.append(action.virus_id)
            else:
                action.status, action.virus_id, action.answered = await actions.kill(virus_id)
        except Exception:  # a reset or a timeout is a failed action, not a crashed benchmark
            action.status, action.answered = None, time.perf_counter()

    for i in range(count):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        step.late = max(step.late, time.perf_counter() - due)
        target = alive.popleft() if i % 2 and alive else None
        action = Action("kill" if target else "create", due)
        step.actions.append(action)
        tasks.append(asyncio.create_task(perform(action, target)))
    await asyncio.wait(tasks, timeout=ANSWER_WAIT + 1)
    for task in tasks:
        task.cancel()
    # Every change that was made must reach every player (bounded wait).
    deadline = time.perf_counter() + DRAIN_WAIT
    for action in step.actions:
        if action.virus_id is None or action.status not in (201, 204):
            continue
        key = ("virus.created" if action.kind == "create" else "virus.killed", action.virus_id)
        done = await swarm.wait_for(key, players, max(0.01, deadline - time.perf_counter()))
        got, _, last = swarm.arrivals.get(key, (0, 0.0, 0.0))
        step.completion.append(last - action.sent if done else math.inf)
        step.lost += max(0, players - got)
    step.client_cpu = (time.process_time() - cpu0) / max(1e-6, time.perf_counter() - wall0)
    return step


# -- helpers --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values; inf counts as infinitely late)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(value: float | None) -> float | None:
    """Milliseconds, rounded; None for nothing measured or never completed (JSON has no inf)."""
    return None if value is None or math.isinf(value) else round(1000 * value, 1)


# -- the phase ------------------------------------------------------------------------------


async def phase(swarm: Swarm, driver, paths: list[str], profile: dict, *, ceiling: float, say) -> dict:
    """Capacity at each P of `profile["players"]`, for each path; players are added as P grows."""
    result: dict = {"paths": paths, "levels": {}}
    for players in profile["players"]:
        have = len(swarm.open_players)
        if players > have:
            say(f"  game load: connecting {players - have} more players")
            ramp = await swarm.connect(players - have, concurrency=50, wait=60)
            if ramp["refused"]:
                say(f"  game load: {ramp['refused']} refused {ramp['refusal_reasons'][:2]}")
            await asyncio.sleep(2.0)
        level: dict = {"players": len(swarm.open_players)}
        for path in paths:
            say(f"  game load: P={level['players']}, actions through {path}")
            if path == "http":
                actions = HttpActions(driver)
            else:
                actions = SocketActions(swarm)
                if (why := await actions.probe()) is not None:
                    say(f"    socket actions n/a: {why}")
                    level[path] = {"capacity": None, "n/a": why}
                    continue

            async def step(rate, actions=actions):
                return await run_step(swarm, actions, rate, profile["step_seconds"])

            found = await search(profile["rates"], step, ceiling=ceiling / level["players"], say=say)
            found["deliveries_per_s"] = round(found["capacity"] * level["players"])
            level[path] = found
            say(
                f"    capacity {found['capacity']:g} actions/s = {found['deliveries_per_s']:,} deliveries/s; "
                f"next step: {found['next_step']}"
            )
            await asyncio.sleep(1.0)  # let a failed step's backlog drain before the next path
        result["levels"][str(players)] = level
    return result
