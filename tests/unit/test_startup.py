"""Process-wide GC tuning happens in server processes only, never in tests or commands."""

import pytest

from viruses.live import gc_tuning
from viruses.live.gc_tuning import serving


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/srv/virusgame/.venv/bin/daphne", "virusgame.asgi:application"], True),
        (
            ["/usr/lib/python3/site-packages/daphne/__main__.py", "-p", "8000", "virusgame.asgi:application"],
            True,
        ),
        (["manage.py", "runserver"], True),
        (["manage.py", "spawn_virus"], False),
        (["/usr/bin/pytest", "tests/"], False),
        ([], False),
    ],
)
def test_only_servers_count_as_serving(argv, expected):
    assert serving(argv) is expected


def test_a_server_collects_the_cycles_of_closed_sockets_once_per_thousand(monkeypatch):
    collections = []
    monkeypatch.setattr(gc_tuning.gc, "collect", lambda: collections.append(1) or 0)
    untuned, tuned = gc_tuning.ClosedSockets(), gc_tuning.ClosedSockets()
    tuned.tuned = True
    for _ in range(2 * gc_tuning.CLOSED_SOCKETS_PER_COLLECTION + 1):
        untuned.add()
        tuned.add()
    assert len(collections) == 2  # the tuned one only: elsewhere the default thresholds do it
