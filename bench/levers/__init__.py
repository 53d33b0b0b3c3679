"""Variants of the project for measuring performance levers without touching project code.

    python -m bench --servers project --project-app bench.levers.asgi:application \
        --project-settings bench.levers.settings --label <name>

`BENCH_LEVERS` (comma-separated) picks the variants; see `asgi.py` and `settings.py`.
Results of every lever are in docs/performance.md.
"""

import os


def enabled(name: str) -> bool:
    return name in {x.strip() for x in os.environ.get("BENCH_LEVERS", "").split(",")}
