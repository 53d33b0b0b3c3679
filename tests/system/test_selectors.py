"""Snapshots: consistent without a lock, on the real database (SQLite file or PostgreSQL).

The concurrent checks run in a child process against a fresh migrated database of the
configured kind: pytest-django's in-memory SQLite has neither WAL nor real concurrency.
"""

import contextlib
import json
import random
import subprocess
import threading

import pytest

from tests.support import harness
from viruses import errors, selectors, services
from viruses.models import ChangeCounter


def run_child(databases, function: str) -> dict:
    env = harness.base_env(database_url=databases.fresh(), redis_url="")
    code = f"import django; django.setup(); from tests.system.test_selectors import {function}; {function}()"
    done = subprocess.run(
        [harness.PYTHON, "-c", code], cwd=harness.ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def race_writers_and_readers(writers: int = 3, actions: int = 60, readers: int = 2) -> None:
    """Create and kill from several threads while others take snapshots; print what was seen."""
    from django.db import connection

    from viruses import broadcast

    log, lock = [], threading.Lock()

    def record(event):
        with lock:
            log.append(json.loads(event["text"]))
        return True

    broadcast.push = record  # the signals' on_commit callback: the log of committed changes
    finished = threading.Event()
    snapshots = []

    def write(seed):
        rng = random.Random(seed)
        try:
            for _ in range(actions):
                if rng.random() < 0.6:
                    services.virus_create()
                else:
                    alive = [v["id"] for v in selectors.virus_state()[1]]
                    if alive:
                        with contextlib.suppress(errors.VirusNotFound):
                            services.virus_kill(virus_id=rng.choice(alive))
        finally:
            connection.close()

    def read():
        try:
            while not finished.is_set():
                seq, viruses = selectors.virus_state()
                snapshots.append((seq, sorted(v["id"] for v in viruses)))
        finally:
            connection.close()

    reading = [threading.Thread(target=read) for _ in range(readers)]
    writing = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in reading + writing:
        thread.start()
    for thread in writing:
        thread.join()
    finished.set()
    for thread in reading:
        thread.join()
    print(json.dumps({"log": log, "snapshots": snapshots}))


def read_while_a_writer_holds_the_lock() -> None:
    """Hold the counter lock with an uncommitted create; take a snapshot meanwhile."""
    from django.db import connection, transaction

    services.virus_create()
    holding, reader_done = threading.Event(), threading.Event()
    outcome = {}

    def writer():
        try:
            with transaction.atomic():
                ChangeCounter.lock()
                services.virus_create()
                holding.set()
                # Released when the reader is done, or (the bug) after a long wait.
                outcome["writer_waited_for_reader"] = reader_done.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(30)
    try:
        seq, viruses = selectors.virus_state()
        outcome.update(seq=seq, alive=len(viruses))
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    reader_done.set()
    thread.join()
    print(json.dumps(outcome))


def test_every_snapshot_equals_the_database_at_its_seq(databases):
    seen = run_child(databases, "race_writers_and_readers")
    changes = sorted(seen["log"], key=lambda change: change["seq"])
    assert [c["seq"] for c in changes] == list(range(1, len(changes) + 1))
    state, states = set(), {0: []}
    for change in changes:
        if change["type"] == "virus.created":
            state.add(change["virus"]["id"])
        else:
            state.remove(change["id"])
        states[change["seq"]] = sorted(state)
    snapshots = seen["snapshots"]
    assert len({seq for seq, _ in snapshots}) > 10  # the readers saw the game move
    wrong = [(seq, ids) for seq, ids in snapshots if states[seq] != ids]
    assert not wrong, f"{len(wrong)} of {len(snapshots)} snapshots differ from the database at their seq"


def test_a_reader_does_not_wait_for_a_writer_holding_the_lock(databases):
    outcome = run_child(databases, "read_while_a_writer_holds_the_lock")
    assert outcome == {"seq": 1, "alive": 1, "writer_waited_for_reader": True}


@pytest.mark.django_db
def test_snapshot_of_an_empty_game_carries_the_seq():
    virus = services.virus_create()
    services.virus_kill(virus_id=virus.id)
    assert selectors.virus_state() == (2, [])


@pytest.mark.django_db
def test_snapshot_survives_a_flushed_counter():
    virus = services.virus_create()
    ChangeCounter.objects.all().delete()
    seq, viruses = selectors.virus_state()
    assert (seq, [v["id"] for v in viruses]) == (0, [str(virus.id)])
    assert ChangeCounter.objects.get(room=None).value == 0
