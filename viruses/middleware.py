"""Security headers that Django 5.2 does not set by itself, and static files without thread hops."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware


@sync_and_async_middleware
def content_security_policy(get_response):
    """Add `Content-Security-Policy` (settings.CONTENT_SECURITY_POLICY) to the game's HTML.

    The page loads only same-origin script and style files and inline SVG, and talks to its
    own origin over fetch and WebSocket, so a strict policy costs nothing. The admin is
    left out: some of its templates carry inline styles.
    """

    def add_policy(request, response):
        policy = settings.CONTENT_SECURITY_POLICY
        if (
            policy
            and "Content-Security-Policy" not in response
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith("/admin/")
        ):
            response["Content-Security-Policy"] = policy
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request):
            return add_policy(request, await get_response(request))

    else:

        def middleware(request):
            return add_policy(request, get_response(request))

    return middleware


class StaticFiles(WhiteNoiseMiddleware):
    """whitenoise's middleware, made async-capable.

    whitenoise 6 is sync-only, so under ASGI Django would run it in a thread and the rest of
    the chain back on the event loop: two thread hops on every request, static or not. Here
    a request costs a hop only when it is for a static file (opening the file).
    """

    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self.static_response, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def static_response(self, request):
        """whitenoise's own answer for a static file, or None (as its `__call__` decides)."""
        path = request.path_info
        static_file = self.find_file(path) if self.autorefresh else self.files.get(path)
        return None if static_file is None else self.serve(static_file, request)
