"""Security headers that Django 5.2 does not set by itself."""

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware


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
