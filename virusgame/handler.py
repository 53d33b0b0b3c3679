"""HTTP under ASGI as a threaded WSGI server runs it: each request's sync code in one thread of a pool."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix


class PooledASGIHandler(ASGIHandler):
    """Django's `ASGIHandler` with each request's sync code on one of `threads` long-lived threads.

    For a sync view Django's own handler runs the middleware in async mode, where every
    `MiddlewareMixin` hook is a thread hop of its own (two per middleware: ~15 per request),
    and gives each request a new thread (`ThreadSensitiveContext`), so no database
    connection can outlive its request. Here the middleware chain is built in sync mode,
    as under WSGI, and a request's sync code (the request_started and request_finished
    signals, the middleware and the view) runs on one thread of a fixed pool
    (docs/performance.md#lever-http-thread-pool), in one hop (`handle`). Connections then persist per
    thread where CONN_MAX_AGE allows (settings.py). A request holds its thread from its
    body's arrival (daphne hands a body over whole) to its response's close; with every
    thread busy the next request waits for one.
    """

    def __init__(self, threads: int):
        self.threads = threads
        self.idle: asyncio.Queue[ThreadPoolExecutor] | None = None  # made on the server's loop
        super().__init__()

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def handle(self, scope, receive, send):
        """Django's `handle` with the request's sync code in one hop instead of three.

        Django hops to the thread for the request_started signal, for the middleware and the
        view, and for closing the answer (request_finished), and runs a second task per
        request that waits for the client's disconnect to cancel the view: a sync view's
        thread cannot be cancelled, and daphne drops an answer to a closed connection. Here
        one hop does all three for an answer whose body is whole (every answer but a file's),
        closed before it is sent; a streamed one is closed after, as Django does
        (docs/performance.md#lever-one-hop).
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self.respond)(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await sync_to_async(response.close)()
        finally:
            body_file.close()

    def respond(self, scope, body_file):
        """The request's answer, closed unless streamed: its sync code, on the request's thread."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the server chunks it
        if not response.streaming:
            response.close()
        return response

    async def __call__(self, scope, receive, send):
        if self.idle is None:
            self.idle = asyncio.Queue()
            for n in range(self.threads):
                self.idle.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{n}"))
        executor = await self.idle.get()
        try:
            # The executor's one thread runs every thread-sensitive call of this request.
            async with ThreadSensitiveContext(executor=executor):
                await super().__call__(scope, receive, send)
        finally:
            self.idle.put_nowait(executor)


def get_asgi_application() -> PooledASGIHandler:
    """`django.core.asgi.get_asgi_application`, with `settings.HTTP_THREADS` request threads."""
    django.setup(set_prefix=False)
    return PooledASGIHandler(settings.HTTP_THREADS)
