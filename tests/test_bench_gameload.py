"""The game-load benchmark's decisions (bench/gameload.py): when a step holds, what the capacity is."""

import asyncio

import pytest

from bench import gameload


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
    assert "lost" in gameload.verdict(summary(10, lost=3))
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
