"""CPU per create and per kill in the services alone, in-process (no server, no Redis).

    python -m bench.writecpu [--n 300] [--profile FILE]

A fresh SQLite file (or DATABASE_URL's database, emptied of viruses and players first), the
push replaced by a no-op, two players; times N `virus_create(by=maker)` then N `virus_kill`
by the other player (a fair kill: one's own would score nothing) with `time.process_time()`.
The firm figure behind docs/performance.md#lever-plain-sql.
"""

import argparse
import cProfile
import os
import shutil
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", help="write cProfile stats of the timed part to this file")
    args = parser.parse_args()
    db_dir = None
    if "DATABASE_URL" not in os.environ:
        db_dir = tempfile.mkdtemp(prefix="writecpu-")
        os.environ["DATABASE_URL"] = f"sqlite:///{db_dir}/db.sqlite3"
    os.environ.setdefault("DJANGO_SECRET_KEY", "x" * 50)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "virusgame.settings")
    os.environ.setdefault("VIRUS_MAX_ALIVE", str(args.n))
    os.environ.setdefault("VIRUS_MIN_REACTION_MS", "0")  # killed at once, yet credited: the full path
    import django

    django.setup()
    from django.core.management import call_command

    from viruses import broadcast, leaderboard, services
    from viruses.models import Player, Virus

    call_command("migrate", verbosity=0)
    broadcast.push = lambda event: None
    board_asks = []
    leaderboard.changed = lambda: board_asks.append(1)  # one ask per credited kill, not timed
    Virus.objects.all().delete()
    Player.objects.all().delete()
    player, maker = services.player_create(), services.player_create()
    board_asks.clear()  # the players deleted above asked too

    profiler = cProfile.Profile() if args.profile else None
    ids = []
    if profiler:
        profiler.enable()
    start = time.process_time()
    for _ in range(args.n):
        ids.append(services.virus_create(by=maker.pk).id)
    created = time.process_time()
    for virus_id in ids:
        services.virus_kill(virus_id=virus_id, by=player.pk)
    killed = time.process_time()
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    player.refresh_from_db()
    assert player.kills == args.n and len(board_asks) == args.n and not Virus.objects.exists()
    print(
        f"N={args.n}: create {1000 * (created - start) / args.n:.2f} ms CPU, "
        f"kill {1000 * (killed - created) / args.n:.2f} ms CPU"
    )
    if db_dir:
        shutil.rmtree(db_dir)


if __name__ == "__main__":
    sys.exit(main())
