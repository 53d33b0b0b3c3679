"""Security headers that Django 5.2 does not set by itself; JSON for every answer under /api/;
the page-only middleware kept off the API's path."""

import logging

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.utils.decorators import sync_and_async_middleware

from .http import error
from .logs import kv

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


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


def api_answers_json(get_response):
    """Answer every request under /api/ in JSON: Django's own refusals (404, 400) included.

    A body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused here, before anything reads it (the
    CSRF check reads a form's): Django would raise `RequestDataTooBig` and log its
    traceback, then answer 400. The same refusal, in plain text, holds for every other path.
    """

    def middleware(request):
        api = request.path.startswith(API_PREFIX)
        size = _content_length(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and size > limit:
            logger.info(kv("http.too_large", method=request.method[:16], path=request.path[:200], size=size))
            message = f"the request body is over {limit} bytes"
            if api:
                return error(message, status=413)
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        response = get_response(request)
        if api and response.status_code >= 400 and not _is_json(response):
            message = (
                "no API endpoint here" if response.status_code == 404 else response.reason_phrase.lower()
            )
            return error(message, status=response.status_code)
        return response

    return middleware


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


class PagesOnly:
    """A middleware class's hooks for every request but the JSON API's, which reads no session,
    user or message.

    The API knows its player by the signed player cookie and checks CSRF by the CSRF cookie
    (viruses/players.py, settings.py), so Django's session, auth and message middleware only
    cost it time (docs/performance.md#lever-api-chain). Subclasses, so the admin's checks
    still find the classes it needs.
    """

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionsForPages(PagesOnly, SessionMiddleware):
    pass


class AuthForPages(PagesOnly, AuthenticationMiddleware):
    pass


class MessagesForPages(PagesOnly, MessageMiddleware):
    pass
