"""viruses/live/coalesce.py: callers that ask while a run is in progress share the next run."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from viruses.live.coalesce import Coalesced

# The runs go through `database_sync_to_async`, as the consumers' do: it checks the thread's connection first.
pytestmark = pytest.mark.django_db(transaction=True)


async def test_callers_during_a_run_share_the_next_one_and_each_gets_a_run_started_after_it_asked():
    release = threading.Event()
    runs = []

    def work(items):
        runs.append(list(items))
        release.wait(5)  # the first run holds the database thread until the others have asked
        return len(runs)

    coalesced = Coalesced(database_sync_to_async(work))
    first = asyncio.create_task(coalesced("a"))
    await asyncio.sleep(0.1)
    others = [asyncio.create_task(coalesced(name)) for name in "bcd"]
    await asyncio.sleep(0.1)
    release.set()
    assert await first == 1
    assert await asyncio.gather(*others) == [2, 2, 2]
    assert runs == [["a"], ["b", "c", "d"]]


async def test_a_failed_run_fails_its_callers_only():
    def work(items):
        if "bad" in items:
            raise ValueError("database down")
        return items

    coalesced = Coalesced(database_sync_to_async(work))
    with pytest.raises(ValueError, match="database down"):
        await coalesced("bad")
    assert await coalesced("good") == ["good"]


async def test_a_caller_that_goes_away_does_not_cancel_the_run_of_the_others():
    coalesced = Coalesced(database_sync_to_async(sorted))
    leaving = asyncio.create_task(coalesced("x"))
    staying = asyncio.create_task(coalesced("y"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == ["x", "y"]
