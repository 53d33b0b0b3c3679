"""Work of sockets that connect at once, done once for all of them."""

import asyncio
from collections.abc import Awaitable, Callable


class Coalesced:
    """Await `work(items)` once for every item added before the run began.

    A connect storm otherwise queues one call per socket: on the one database thread (wrap
    the work in `database_sync_to_async`), or on a Redis connection. Here, while a run is in
    progress, new callers wait for the next run, which takes them all: a caller's result
    comes from a run that started after it asked (a snapshot read after its group join, a
    row written after its accept).
    """

    def __init__(self, work: Callable[[list], Awaitable]):
        self.work = work
        self.items: list = []
        self.next: asyncio.Future | None = None  # the result of the run that will take `items`
        self.runner: asyncio.Task | None = None

    async def __call__(self, item=None):
        loop = asyncio.get_running_loop()
        if self.next is None or self.next.get_loop() is not loop:  # tests: one loop per case
            self.next, self.items = loop.create_future(), []
        self.items.append(item)
        result = self.next
        if self.runner is None or self.runner.done() or self.runner.get_loop() is not loop:
            self.runner = loop.create_task(self._run())
        # Shielded: a caller that goes away must not cancel the run of the others.
        return await asyncio.shield(result)

    async def _run(self) -> None:
        while self.next is not None:
            result, items = self.next, self.items
            self.next, self.items = None, []
            try:
                result.set_result(await self.work(items))
            except Exception as exc:
                result.set_exception(exc)
