"""Process-wide GC tuning happens in server processes only, never in tests or commands."""

import subprocess

from tests.support import harness


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
