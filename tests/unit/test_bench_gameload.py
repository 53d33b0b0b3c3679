"""The game-load benchmark's decisions: when a step holds, what the capacity is, which targets are met."""

import asyncio

import pytest

from bench import gameload, report


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(gameload, "RETRY_PAUSE", 0)


def summary(rate, **changes):
    held = {
        "rate": rate,
        "actions": 10,
        "errors": 0,
        "error_statuses": [],
        "lost": 0,
        "p99_ms": 40.0,
        "own_p50_ms": 5.0,
        "own_p99_ms": 9.0,
        "late_ms": 2.0,
        "client_cpu": 0.1,
    }
    return {**held, **changes}


def search(results_by_rate, rates, **kwargs):
    calls = []

    async def run_step(rate):
        calls.append(rate)
        outcomes = results_by_rate[rate]
        return outcomes.pop(0) if isinstance(outcomes, list) else outcomes

    found = asyncio.run(gameload.search(rates, run_step, say=lambda _: None, **kwargs))
    return found, calls


def test_a_step_holds_only_when_every_condition_does():
    assert gameload.verdict(summary(10)) is None
    assert "failed" in gameload.verdict(summary(10, errors=1, error_statuses=[503]))
    assert "3 deliveries not in" in gameload.verdict(summary(10, lost=3))
    assert "p99" in gameload.verdict(summary(10, p99_ms=251.0))
    assert "schedule" in gameload.verdict(summary(10, late_ms=300.0))
    assert gameload.verdict(summary(10, actions=0)) == "no action made"


def test_capacity_is_the_last_rate_that_held_and_the_reason_is_the_next_steps():
    steps = {10: summary(10), 25: summary(25), 50: summary(50, p99_ms=800.0)}
    found, calls = search(steps, [10, 25, 50, 100])
    assert found["capacity"] == 25
    assert found["next_step"] == "p99 800.0 ms"
    assert found["at_capacity"]["rate"] == 25
    assert calls == [10, 25, 50, 50]  # a failure is tried once more, then the search ends


def test_a_step_that_fails_once_then_holds_counts_as_held():
    steps = {10: [summary(10, lost=1), summary(10)], 25: summary(25, errors=2, error_statuses=[500])}
    found, calls = search(steps, [10, 25])
    assert found["capacity"] == 10
    assert calls == [10, 10, 25, 25]


def test_rates_above_the_client_ceiling_are_not_tried():
    found, calls = search({10: summary(10), 25: summary(25)}, [10, 25, 50], ceiling=30)
    assert found["capacity"] == 25
    assert calls == [10, 25]
    assert "client ceiling" in found["next_step"]


def test_nothing_held_is_capacity_zero():
    found, _ = search({10: summary(10, lost=5)}, [10, 25])
    assert found["capacity"] == 0
    assert found["at_capacity"] is None


def results_with(project_steps, capacity, database="sqlite", players=100, path="http"):
    found = {"capacity": capacity, "next_step": "p99 900.0 ms", "steps": project_steps}
    found["at_capacity"] = project_steps[-1] if project_steps else None
    found["deliveries_per_s"] = capacity * players
    level = {"players": players, path: found}
    return {
        "database": database,
        "servers": {"project": {"gameload": {"paths": [path], "levels": {str(players): level}}}},
    }


def test_the_table_meets_a_target_only_with_the_rate_held_and_a_quick_own_answer():
    def met(results):
        (row,) = [r for r in report.gameload_rows(results) if r["path"] == "http"]
        return row["met"]

    held = [{**summary(50), "failed": None}, {**summary(100), "failed": None}]
    assert met(results_with(held, 100)) is True  # the target: 100 players, HTTP, >= 100/s
    slow_answer = [{**summary(100, own_p99_ms=140.0), "failed": None}]
    assert met(results_with(slow_answer, 100)) is False  # own answer p99 over 100 ms
    assert met(results_with(held[:1], 50)) is False  # 50/s held, 100/s did not
    assert met(results_with(held[:1], 50, database="postgresql")) is True  # half on PostgreSQL
    assert met(results_with(held, 100, players=200)) is None  # no target at that P


def socket_row(results):
    (row,) = [r for r in report.gameload_rows(results) if r["path"] == "socket"]
    return row


def test_a_target_the_client_could_not_drive_says_so():
    # 0.3 cores for 50/s to 300 players: 300/s would need 1.8 cores of the one client process.
    steps = [{**summary(50, client_cpu=0.3), "failed": None}, {**summary(100), "failed": "p99 900.0 ms"}]
    row = socket_row(results_with(steps, 50, players=300, path="socket"))
    assert row["met"] is False
    assert row["next"].startswith("client-bound: the target needs ~1.8 client cores; p99 900.0 ms")
    light = [{**summary(50, client_cpu=0.05), "failed": None}]  # 0.3 cores at 300/s: the server's miss
    row = socket_row(results_with(light, 50, players=300, path="socket"))
    assert row["next"] == "p99 900.0 ms"
