"""The HTTP API and the game page; every answer of the API is JSON."""

import asyncio
import functools
import logging
import math
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from . import access, messages, ratelimit, selectors, services
from .logs import kv

logger = logging.getLogger(__name__)


def json_errors(view):
    """Answer refused requests and database outages as JSON, never as a 500 traceback."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except services.GameError as exc:
            return error(str(exc), status=exc.status)
        except DatabaseError as exc:
            logger.error(
                kv("http.error", method=request.method, path=request.path, error="database", detail=exc)
            )
            return error("the database is unavailable, try again shortly", status=503)

    return wrapper


def error(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def allow(*methods: str):
    """Refuse other methods with a JSON 405 and an `Allow` header; HEAD goes wherever GET does."""
    allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                logger.info(
                    kv("http.method_not_allowed", method=request.method[:16], path=request.path[:200])
                )
                response = error(f"method {request.method[:16]} not allowed here", status=405)
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def rate_limited(request, bucket: str) -> JsonResponse | None:
    """Take a token from the client's `bucket`; a 429 answer when it is empty."""
    address = request.META.get("REMOTE_ADDR", "")
    wait = ratelimit.retry_after(bucket, address)
    if wait is None:
        return None
    seconds = math.ceil(wait)
    logger.info(kv("http.rate_limited", bucket=bucket, client=address, retry_after=seconds))
    response = error(f"too many requests, wait {seconds} s", status=429)
    response["Retry-After"] = str(seconds)
    return response


@ensure_csrf_cookie
@allow("GET")
def index(request):
    return render(request, "viruses/index.html")


@allow("GET", "POST")
@json_errors
def virus_collection(request):
    if request.method != "POST":  # GET or HEAD
        if limited := rate_limited(request, "snapshot"):
            return limited
        seq, viruses = selectors.virus_state()
        return JsonResponse({"seq": seq, "viruses": viruses})
    if limited := rate_limited(request, "action"):
        return limited
    virus = services.virus_create()
    return JsonResponse(messages.virus_json(virus), status=201)


@allow("DELETE")
@json_errors
def virus_detail(request, virus_id: str):
    try:
        virus_id = uuid.UUID(virus_id)
    except ValueError:
        return error("no such virus", status=404)
    if limited := rate_limited(request, "action"):
        return limited
    services.virus_kill(virus_id=virus_id)
    return HttpResponse(status=204)


@allow("GET")
def healthz(request):
    checks = {"database": _database_ok(), "channel_layer": _channel_layer_ok()}
    healthy = all(checks.values())
    if _may_see_details(request):
        body = {name: "ok" if ok else "down" for name, ok in checks.items()}
    else:
        body = {"status": "ok" if healthy else "down"}
    return JsonResponse(body, status=200 if healthy else 503)


def _may_see_details(request) -> bool:
    """Whether the client is a monitor (settings.HEALTHZ_DETAILS_FROM; empty: everyone)."""
    networks = settings.HEALTHZ_DETAILS_FROM
    return not networks or access.client_in(request, networks)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError as exc:
        logger.error(kv("healthz.down", part="database", detail=exc))
        return False


def _channel_layer_ok() -> bool:
    try:
        async_to_sync(_layer_round_trip)()
        return True
    except Exception as exc:
        logger.error(kv("healthz.down", part="channel_layer", detail=f"{type(exc).__name__}: {exc}"))
        return False


async def _layer_round_trip() -> None:
    """Send a message to a fresh channel and read it back: a real trip through the layer."""
    layer = get_channel_layer()
    async with asyncio.timeout(3):
        # The default prefix: this process's consumers already block reading that one Redis
        # list, and channels-redis lets one reader at a time; a channel of its own ("healthz.")
        # would wait behind them and time out whenever a socket is open.
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "healthz"})
        await layer.receive(channel)


def csrf_failure(request, reason=""):
    logger.warning(kv("http.csrf_refused", method=request.method, path=request.path, reason=reason))
    return error(f"CSRF check failed: {reason}", status=403)
