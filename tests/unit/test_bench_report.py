"""The fan-out table's verdicts: absolute targets and ratios to the floor (docs/performance.md#targets)."""

from bench import report


def server(p50_1000, p99_3000, storm, sustained, converged, memory):
    return {
        "latency": {
            "1000": {"p50_ms": p50_1000, "p99_ms": 60.0, "lost": 0},
            "3000": {"p99_ms": p99_3000, "lost": 0},
        },
        "storm": {"requested": 1000, "seconds": storm, "refused": 0},
        "sustained": {"deliveries_per_s": sustained},
        "burst": {"converged_s": converged, "lost_for_good": 0},
        "memory": {"mb_per_1000": memory},
    }


def verdicts(project) -> dict:
    floor = server(p50_1000=20.0, p99_3000=100.0, storm=1.0, sustained=50_000, converged=5.0, memory=15.0)
    results = {"servers": {"project": project, "floor": floor}}
    return {row["label"]: row["met"] for row in report.rows(results) if row["met"] is not None}


def test_figures_within_the_ratios_to_the_floor_meet_the_ratio_targets():
    met = verdicts(
        server(p50_1000=39.0, p99_3000=290.0, storm=1.9, sustained=41_000, converged=14.0, memory=24.0)
    )
    assert set(met.values()) == {True}
    assert {"fan-out p50, N=1000 (ms)", "storm: 1000 connects, seconds", "burst: converged after (s)"} <= set(
        met
    )


def test_a_figure_past_its_ratio_misses_even_when_its_absolute_target_holds():
    met = verdicts(
        server(p50_1000=41.0, p99_3000=310.0, storm=2.1, sustained=39_000, converged=16.0, memory=26.0)
    )
    assert met["fan-out p50, N=1000 (ms)"] is False
    assert met["fan-out p99, N=3000 (ms)"] is False  # under 600 ms, over 3x the floor
    assert met["storm: 1000 connects, seconds"] is False
    assert met["sustained deliveries/s"] is False  # over 10,000/s, under 0.8x the floor
    assert met["burst: converged after (s)"] is False
    assert met["memory per 1000 idle clients (MB)"] is False
    assert met["fan-out p99, N=1000 (ms)"] is True


def rooms_results(capacity: int) -> dict:
    held = {"p99_ms": 120.0}
    rooms = {"rooms": 50, "size": 20, "players": 1000, "capacity": capacity, "at_capacity": held}
    rooms.update(deliveries_per_s=capacity * 20, next_step="p99 300.0 ms", other_cpu_cores=0.1)
    one_room = {"capacity": 25, "deliveries_per_s": 25_000, "at_capacity": held, "next_step": "p99 400.0 ms"}
    gameload = {"levels": {"100": {"players": 100}, "1000": {"players": 1000, "socket": one_room}}}
    return {"servers": {"project": {"rooms": rooms, "gameload": gameload}}}


def test_the_many_rooms_table_sets_the_rooms_beside_one_room_of_as_many_players_and_checks_the_target():
    table = report.rooms_table(rooms_results(200))
    rows = {line.split("  ")[0]: line.split() for line in table.splitlines()}
    assert rows["50 rooms of 20"][-7:-4] == ["1000", "200", "4,000"]
    assert rows["one room (the game load)"][-7:-4] == ["1000", "25", "25,000"]
    assert "target >= 200 actions/s in total: MET" in table
    assert "MISSED" in report.rooms_table(rooms_results(100))


def test_the_table_names_each_peer_that_beats_the_project_and_each_peer_skipped():
    project = server(p50_1000=30.0, p99_3000=200.0, storm=2.0, sustained=40_000, converged=10.0, memory=30.0)
    uvicorn = server(p50_1000=25.0, p99_3000=250.0, storm=2.0, sustained=60_000, converged=12.0, memory=40.0)
    results = {
        "profile": "full",
        "database": "sqlite",
        "cpus": 2,
        "project_settings": "virusgame.settings",
        "servers": {"project": project, "uvicorn": uvicorn},
        "skipped": {"granian": "granian not installed (granian; pip install -r requirements-dev.lock)"},
    }
    ahead = {row["label"]: row["peers_ahead"] for row in report.rows(results)}
    assert ahead["fan-out p50, N=1000 (ms)"] == "uvicorn"  # lower is better
    assert ahead["sustained deliveries/s"] == "uvicorn"  # higher is better
    assert ahead["fan-out p99, N=3000 (ms)"] == "-"
    assert ahead["storm: 1000 connects, seconds"] == "-"  # a tie is not ahead
    assert ahead["memory per 1000 idle clients (MB)"] == "-"
    table = report.table(results)
    assert "uvicorn" in table.splitlines()[2]  # its column
    assert "granian: skipped: granian not installed" in table
