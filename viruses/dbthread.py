"""The socket actions' database calls: Channels' `database_sync_to_async`, SQLite connection kept.

Consumers run their database work on asgiref's one shared thread per process. Channels
closes that thread's connection after every call, as `CONN_MAX_AGE = 0` asks (settings.py:
under ASGI each HTTP request runs in a thread of its own, so persistent connections would
pile up). For SQLite that close costs more than the
query: the process's last connection to close checkpoints the WAL and deletes it, and the
next call opens the file, reads the schema and registers Django's SQL functions again
(docs/performance.md, "Game load": daphne CPU per socket action 13 -> 9 ms). So on that one
long-lived thread a SQLite connection stays open for `KEEP_SECONDS` (then it is replaced,
as any broken one is at once); the other consumer calls (snapshots, presence) still go
through Channels' own wrapper, which then finds that connection young and keeps it too.
PostgreSQL connections still go back to the pool after each call, where HTTP requests'
threads share them.
"""

import time

from asgiref.sync import SyncToAsync
from django.db import close_old_connections, connections

KEEP_SECONDS = 300.0


class DatabaseSyncToAsync(SyncToAsync):
    """`channels.db.database_sync_to_async` that keeps this thread's SQLite connection open."""

    def thread_handler(self, loop, *args, **kwargs):
        close_old_connections()  # broken or obsolete ones, as Channels does
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _keep_sqlite_open()
            close_old_connections()


def _keep_sqlite_open() -> None:
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if connection.vendor != "sqlite" or raw is None or getattr(connection, "_kept", None) is raw:
            continue
        # Django set close_at to connect time + CONN_MAX_AGE (0): push it back, once per
        # new connection, so that it is still replaced every KEEP_SECONDS.
        connection.close_at = time.monotonic() + KEEP_SECONDS
        connection._kept = raw


database_sync_to_async = DatabaseSyncToAsync
