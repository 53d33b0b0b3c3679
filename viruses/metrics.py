"""Prometheus metrics of this process, and `/metrics`, the endpoint that serves them.

Every metric is defined here. Most move without any hook in the code that does the work:
each `key=value` line is built by `logs.kv`, which hands the event to `observe` below, so
a socket that opens, a refusal, a push or a Redis error is counted where it is logged
(whatever LOG_LEVEL says). The rest are read when scraped (open sockets, heartbeat age,
asyncio tasks) or counted by one call (resyncs, WebSocket actions, failed private reaches) or by
`count_http_actions`, a middleware.

Each daphne process counts its own: scrape every process, not the balancer in front
(docs/production.md, "Metrics"). `/metrics` is off (404) unless METRICS_TOKEN or
METRICS_ALLOW_FROM is set; then a scraper needs the bearer token and/or an allowed address.
"""

import asyncio
import logging

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from . import access, broadcast, logs, scoring
from .http import allow, error
from .logs import kv

logger = logging.getLogger(__name__)

SOCKETS_OPEN = Gauge("virusgame_ws_open", "WebSockets open on this process (joined and counted online)")
CONNECTS = Counter("virusgame_ws_connects", "WebSockets accepted, snapshot sent")
DISCONNECTS = Counter("virusgame_ws_disconnects", "Accepted WebSockets that closed, by close code", ["code"])
REFUSALS = Counter("virusgame_ws_refusals", "WebSocket handshakes refused, by reason", ["reason"])
SERVER_CLOSES = Counter(
    "virusgame_ws_server_closes",
    "WebSockets the server closed, by reason (slow_reader, flood, too_big, ping_*, unavailable)",
    ["reason"],
)
RESYNCS = Counter("virusgame_ws_resyncs", "Snapshots clients asked for with {type: resync}")
PUSHES = Counter(
    "virusgame_pushes",
    "Group events handed to the channel layer (type batch: several sent as one group message)",
    ["type", "result"],
)
PUSH_SECONDS = Histogram(
    "virusgame_push_seconds",
    "Time group_send took to hand one event or batch to Redis for every client (successful pushes)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LAYER_DROPS = Counter(
    "virusgame_layer_dropped_messages", "Group messages channels-redis dropped for full channels (layer.drop)"
)
ACTIONS = Counter(
    "virusgame_actions", "Creates and kills by path (http, socket) and status", ["path", "action", "status"]
)
BACKEND_ERRORS = Counter(
    "virusgame_backend_errors", "Failed database or Redis calls, by the event logged", ["backend", "event"]
)
EVENTS = Counter("virusgame_log_events", "Every key=value log event, by name and reason", ["event", "reason"])
KILLS_REFUSED = Counter(
    "virusgame_kills_refused",
    "Kills that killed but scored nothing, by fair-play rule (own, too_fast: viruses/scoring.py)",
    ["reason"],
)
for _reason in scoring.REASONS:  # both shown from the start, at 0
    KILLS_REFUSED.labels(_reason)
HEARTBEAT_AGE = Gauge(
    "virusgame_presence_heartbeat_age_seconds",
    "Seconds since this process last refreshed its Connection rows (0 while it has no socket)",
)
PRIVATE_REACH_FAILURES = Counter(
    "virusgame_private_reach_failures",
    "Reaches into daphne, autobahn or Twisted internals that failed at run time and fell back, by reach "
    "(viruses/live/daphne/surface.py)",
    ["reach"],
)
ASYNCIO_TASKS = Gauge(
    "virusgame_asyncio_tasks", "Unfinished asyncio tasks on this process's event loop (a leak grows it)"
)

# Close codes kept as labels; any other (a client may send 3000-4999) counts as "other".
KNOWN_CODES = frozenset({1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1013})
# Log events that mean a call to the database or to Redis failed.
BACKEND_OF_EVENT = {
    "http.error": "database",
    "presence.heartbeat_failed": "database",
    "presence.count_failed": "database",
    "push.error": "redis",
    "ratelimit.unavailable": "redis",
    "ws.admission_unavailable": "redis",
    "ws.admission_release_failed": "redis",
    "presence.renewal_failed": "redis",
}
BACKEND_OF_PART = {"database": "database", "channel_layer": "redis"}
# (URL name, method) of the HTTP API's actions.
HTTP_ACTIONS = {("virus-collection", "POST"): "create", ("virus-detail", "DELETE"): "kill"}


def observe(event: str, fields: dict) -> None:
    """Count one log event (a `logs.kv` listener: it runs wherever something is logged)."""
    reason = fields.get("reason")
    EVENTS.labels(event, reason or "").inc()
    if event == "ws.connect":
        CONNECTS.inc()
    elif event == "ws.disconnect":
        code = fields.get("code")
        DISCONNECTS.labels(str(code) if code in KNOWN_CODES else "other").inc()
    elif event == "ws.refused":
        REFUSALS.labels(reason or "other").inc()
    elif event == "ws.no_route":
        REFUSALS.labels("no_route").inc()
    elif event == "ws.close":
        SERVER_CLOSES.labels(reason or "other").inc()
        if reason == "unavailable":
            backend = "database" if isinstance(fields.get("error"), DatabaseError) else "redis"
            BACKEND_ERRORS.labels(backend, event).inc()
    elif event == "push":
        PUSHES.labels(fields.get("type", ""), "ok").inc(_events(fields))
        if isinstance(fields.get("ms"), int | float):
            PUSH_SECONDS.observe(fields["ms"] / 1000)
    elif event == "push.error":
        PUSHES.labels(fields.get("type", ""), "error").inc(_events(fields))
    elif event == "kill.unscored":
        KILLS_REFUSED.labels(reason or "other").inc()
    elif event == "layer.drop" and isinstance(fields.get("dropped"), int):
        LAYER_DROPS.inc(fields["dropped"])
    if event in BACKEND_OF_EVENT:
        BACKEND_ERRORS.labels(BACKEND_OF_EVENT[event], event).inc()
    elif event in ("healthz.down", "ws.leave_failed") and fields.get("part") in BACKEND_OF_PART:
        BACKEND_ERRORS.labels(BACKEND_OF_PART[fields["part"]], event).inc()


logs.listeners.append(observe)


def _events(fields: dict) -> int:
    events = fields.get("events")
    return events if isinstance(events, int) else 1


def count_action(*, path: str, action: str, status: int) -> None:
    """Count one create or kill and its answer; `path` is "http" or "socket"."""
    ACTIONS.labels(path, action, str(status)).inc()


def resync_requested() -> None:
    RESYNCS.inc()


def private_reach_failed(reach: str) -> None:
    PRIVATE_REACH_FAILURES.labels(reach).inc()


def _asyncio_tasks() -> int:
    loop = broadcast.server_loop()
    # Scrapes run on a worker thread; all_tasks copies the loop's task set (retrying if it changes).
    return len(asyncio.all_tasks(loop)) if loop is not None else 0


ASYNCIO_TASKS.set_function(_asyncio_tasks)


@sync_and_async_middleware
def count_http_actions(get_response):
    """Count the API's creates and kills by answer, refusals (CSRF, rate limit) included."""

    def count(request, response):
        match = request.resolver_match
        action = HTTP_ACTIONS.get((match.url_name if match else None, request.method))
        if action:
            count_action(path="http", action=action, status=response.status_code)
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request):
            return count(request, await get_response(request))

    else:

        def middleware(request):
            return count(request, get_response(request))

    return middleware


@allow("GET")
def view(request):
    """Serve this process's metrics to an allowed scraper; 404 when the endpoint is off."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOW_FROM
    if not token and not networks:
        return error("not found", status=404)
    refused = None
    if networks and not access.client_in(request, networks):
        refused = "address"
    elif token and not access.bearer_token_is(request, token):
        refused = "token"
    if refused:
        logger.warning(kv("metrics.refused", reason=refused, client=request.META.get("REMOTE_ADDR", "")))
        return error("forbidden", status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
