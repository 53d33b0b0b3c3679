"""daphne under cProfile, every thread included: `python -m bench.profiled STATS_FILE DAPHNE_ARGS...`.

cProfile watches only the thread that enables it, and Django runs sync views (and
`database_sync_to_async`) in threads of their own; each new thread therefore starts a
profiler of its own, and all are merged into STATS_FILE when daphne exits (SIGTERM).
"""

import cProfile
import pstats
import sys
import threading

from daphne.cli import CommandLineInterface

profiles: list[cProfile.Profile] = []


def profile_this_thread(*_) -> None:
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()  # replaces this hook for the rest of the thread


def main() -> None:
    stats_file, argv = sys.argv[1], sys.argv[2:]
    threading.setprofile(profile_this_thread)
    profile_this_thread()
    try:
        CommandLineInterface().run(argv)
    finally:
        for profile in profiles:
            profile.disable()
        pstats.Stats(*profiles).dump_stats(stats_file)


if __name__ == "__main__":
    main()
