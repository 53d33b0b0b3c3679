"""Process-wide GC tuning happens in server processes only, never in tests or commands."""

import subprocess

import pytest

from tests import harness
from viruses import apps
from viruses.apps import serving


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


def test_importing_the_asgi_application_leaves_gc_alone(game_env):
    code = (
        "import gc; before = (gc.get_threshold(), gc.get_freeze_count()); "
        "import virusgame.asgi; print(before == (gc.get_threshold(), gc.get_freeze_count()))"
    )
    result = subprocess.run(
        [harness.PYTHON, "-c", code],
        cwd=harness.ROOT,
        env=game_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "True", result.stderr


def test_daphne_tunes_gc_at_start_up(game):
    assert "event=server.gc_tuned" in game.read_log()
    check = game.manage("check")
    assert "event=server.gc_tuned" not in check.stdout + check.stderr


def test_a_server_collects_the_cycles_of_closed_sockets_once_per_thousand(monkeypatch):
    collections = []
    monkeypatch.setattr(apps.gc, "collect", lambda: collections.append(1) or 0)
    untuned, tuned = apps.ClosedSockets(), apps.ClosedSockets()
    tuned.tuned = True
    for _ in range(2 * apps.CLOSED_SOCKETS_PER_COLLECTION + 1):
        untuned.add()
        tuned.add()
    assert len(collections) == 2  # the tuned one only: elsewhere the default thresholds do it
