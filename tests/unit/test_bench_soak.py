"""The soak's verdict: slopes over the last half, bounded series pass, growing ones fail by name."""

import math

import pytest

from bench import soak


def samples(minutes=20, every=30, **series):
    """Samples every `every` s; each series is a function of the time in minutes."""
    flat = {name: (lambda m: 100.0) for name in soak.LIMITS}
    flat.update(series)
    return [
        {"t": float(t), **{name: value(t / 60) for name, value in flat.items()}}
        for t in range(0, 60 * minutes + 1, every)
    ]


def test_the_slope_is_the_least_squares_one_per_minute():
    assert soak.slope_per_minute([(0, 10), (60, 12), (120, 14)]) == pytest.approx(2.0)
    assert soak.slope_per_minute([(0, 5), (30, 7), (60, 5), (90, 7)]) == pytest.approx(0.8)
    assert soak.slope_per_minute([(0, 1), (0, 2)]) is None


def test_bounded_series_pass_even_when_they_wobble_and_grew_early():
    wobbly = samples(
        rss_mb=lambda m: 80 + min(m, 5) * 3 + 0.5 * math.sin(7 * m),  # warms up, then flat
        fds=lambda m: 530 + (3 if int(m * 2) % 3 == 0 else 0),  # a few sockets reconnecting
        redis_mb=lambda m: 1.5 if m < 8 else 1.4,  # emptied by the restart
    )
    verdict = soak.judge(wobbly, since=600, unconverged=0)
    assert verdict["passed"], verdict["failures"]
    assert abs(verdict["slopes"]["rss_mb"]) < 0.5


def test_a_series_that_keeps_growing_fails_and_is_named():
    leaking = samples(rss_mb=lambda m: 80 + 1.5 * m, tasks=lambda m: 500 + 10 * m)
    verdict = soak.judge(leaking, since=600, unconverged=0)
    assert not verdict["passed"]
    assert verdict["slopes"]["rss_mb"] == pytest.approx(1.5)
    named = " ".join(verdict["failures"])
    assert "rss_mb grows 1.5 MB/min" in named and "tasks grows 10 tasks/min" in named
    assert "fds" not in named


def test_only_the_last_half_is_judged():
    grew_then_stopped = samples(connection_rows=lambda m: 500 + 20 * min(m, 10))
    assert soak.judge(grew_then_stopped, since=600, unconverged=0)["passed"]
    assert not soak.judge(grew_then_stopped, since=0, unconverged=0)["passed"]


def test_unconverged_players_fail_the_run():
    verdict = soak.judge(samples(), since=600, unconverged=3)
    assert verdict["failures"] == ["3 players ended unconverged (their view is not the database)"]


def test_too_few_samples_to_judge_is_a_failure_not_a_pass():
    verdict = soak.judge(samples(minutes=2), since=100, unconverged=0)
    assert not verdict["passed"]
    assert all("samples in the last half" in failure for failure in verdict["failures"])


def test_samples_missing_a_value_are_left_out_of_that_series_only():
    gaps = samples(redis_mb=lambda m: None if 10 <= m < 11 else 1.5)
    verdict = soak.judge(gaps, since=600, unconverged=0)
    assert verdict["passed"] and verdict["slopes"]["redis_mb"] == 0
