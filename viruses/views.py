"""The HTTP API and the game page; every answer of the API is JSON."""

import asyncio
import functools
import json
import logging

import segno
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import ensure_csrf_cookie

from viruses.guards import idempotency, ratelimit

from . import access, actions, errors, messages, players, selectors, services, serving
from .errors import RoomNotFound, TooManyPlayers
from .http import allow, client_address, error, json_errors
from .logs import kv

logger = logging.getLogger(__name__)


def player_of(request):
    """The request's `Player`, created (and the cookie set by `with_player_cookie`) if it has none.

    New players are rate-limited per address (`TooManyPlayers`): a script that never keeps
    its cookie would otherwise add a row per request.
    """
    player_id = players.from_request(request)
    player = selectors.player(player_id) if player_id else None
    if player is None:
        address = client_address(request)
        if ratelimit.retry_after("player", address) is not None:
            logger.info(kv("http.rate_limited", bucket="player", client=address))
            raise TooManyPlayers("too many new players from this address, keep your cookie or wait")
        player = services.player_create()
        request.new_player = player
    return player


def with_player_cookie(view):
    """Set the player cookie on the answer when `player_of` created a player for this request."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if (player := getattr(request, "new_player", None)) is not None:
            players.remember(response, player)
        return response

    return wrapper


@ensure_csrf_cookie
@allow("GET")
@with_player_cookie
def index(request, code: str | None = None):
    """The game page: of the public world at `/`, of a room at `/r/<code>/` (a friendly 404 if none)."""
    room = None
    if code is not None:
        try:
            room = selectors.room(code)
        except RoomNotFound:
            logger.info(kv("http.room_not_found", path=request.path[:64]))
            return render(request, "viruses/room_not_found.html", status=404)
        except DatabaseError as exc:
            logger.error(kv("http.error", method="GET", path=request.path, error="database", detail=exc))
            return render(request, "viruses/room_not_found.html", {"unavailable": True}, status=503)
    # The first visit makes the player, so the page shows their name from the start.
    try:
        player = player_of(request)
    except TooManyPlayers:  # the page still loads; this browser plays anonymously
        player = None
    except DatabaseError as exc:  # the page still loads; the socket retries until the database is back
        logger.error(kv("http.error", method=request.method, path=request.path, error="database", detail=exc))
        player = None
    context = {"player": player, "room": room}
    if room is not None:
        context |= _room_header(request, room, player)
    return render(request, "viruses/index.html", context)


def _room_header(request, room, player) -> dict:
    """The room page's header: its absolute link (the scheme and host this player used, so it
    works from every phone the page is shown to), the QR code of that link, and whether the
    player is the host (who sees the lock toggle)."""
    link = request.build_absolute_uri(room.url)
    # Inline SVG: no extra request, and sharp at any size on a projector. segno writes only
    # numbers into it, never the link's text, so it is safe as markup.
    qr = segno.make(link, error="m").svg_inline(
        border=4, dark="#24203a", light="#fff", omitsize=True, svgclass="qr-code"
    )
    is_host = player is not None and room.host_id == player.pk
    return {"room_link": link, "room_qr": mark_safe(qr), "is_host": is_host}


def _world(code: str | None):
    """The world of a URL: None (the public one) without a code, else its room (404 if unknown)."""
    return None if code is None else selectors.room(code)


@allow("GET", "POST")
@json_errors
def virus_collection(request, code: str | None = None):
    room = _world(code)
    if request.method != "POST":  # GET or HEAD
        actions.take_token("snapshot", client_address(request), actions.who(players.from_request(request)))
        seq, viruses = selectors.virus_state(room)
        return JsonResponse({"seq": seq, "viruses": viruses})
    address, player = client_address(request), players.from_request(request)

    def create() -> idempotency.Answer:
        return 201, messages.virus_json(actions.create(address=address, by=player, room=room))

    key = idempotency_key(request)
    status, virus = idempotency.once(key, action="create", address=address, player=player, act=create)
    return JsonResponse(virus, status=status)


@allow("DELETE")
@json_errors
def virus_detail(request, virus_id: str, code: str | None = None):
    room = _world(code)
    address, player = client_address(request), players.from_request(request)

    def kill() -> idempotency.Answer:
        actions.kill(virus_id=virus_id, address=address, by=player, room=room)
        return 204, None

    action = f"kill {actions.parse_id(virus_id)}"
    idempotency.once(idempotency_key(request), action=action, address=address, player=player, act=kill)
    return HttpResponse(status=204)


def idempotency_key(request) -> str | None:
    """The `Idempotency-Key` header of a create or kill the client may send again."""
    return idempotency.valid_key(request.headers.get("Idempotency-Key"))


@allow("GET", "PATCH")
@with_player_cookie
@json_errors
def me(request):
    """The player of this browser (made on first use); PATCH `{"name": ...}` renames them."""
    player = player_of(request)
    if request.method == "PATCH":
        name = _json_body(request).get("name")
        return JsonResponse(actions.rename(player=player.pk, name=name, address=client_address(request)))
    return JsonResponse(selectors.me(player.pk))


@allow("GET")
@json_errors
def leaderboard(request, code: str | None = None):
    """The world's board, plus where this browser's player stands on the all-time board (`"me"`,
    null without a player); `?scope=today` (the public world): kills scored since 00:00 UTC."""
    room = _world(code)
    scope, scopes = request.GET.get("scope", "all"), selectors.SCOPES if room is None else ("all",)
    if scope not in scopes:
        raise errors.BadRequest(f"unknown scope {messages.clip(scope)}: use one of {', '.join(scopes)}")
    me = selectors.me(players.from_request(request), room)
    return JsonResponse({**selectors.leaderboard(room, scope), "scope": scope, "me": me})


@allow("POST")
@json_errors
def room_collection(request):
    """Create a room (`{"name": ...}`, optional) hosted by this browser's player: 201 Room."""
    host = selectors.player(players.from_request(request)) if players.from_request(request) else None
    if host is None:
        raise errors.NoPlayer("a room needs a host: open the game page first (it gives you a player)")
    room = actions.create_room(
        host=host, name=_json_body(request).get("name"), address=client_address(request)
    )
    logger.info(kv("room.created", room=room.code, host=host.pk, client=client_address(request)))
    return JsonResponse(selectors.room_json(room, online=0, alive=0), status=201)


@allow("GET", "PATCH")
@json_errors
def room_detail(request, code: str):
    """The room; PATCH `{"locked": true|false}` by its host locks or unlocks it."""
    room = selectors.room(code)
    if request.method == "PATCH":
        locked = _json_body(request).get("locked")
        if not isinstance(locked, bool):
            raise errors.BadRequest('the body must be {"locked": true} or {"locked": false}')
        room = services.room_set_locked(room=room, by=players.from_request(request), locked=locked)
    return JsonResponse(selectors.room_json(room))


@allow("POST", "DELETE")
@json_errors
def room_round(request, code: str):
    """The host starts a round (POST `{"seconds": S}`: 201 Round) or stops the running one (DELETE: 204)."""
    room = selectors.room(code)
    address, player = client_address(request), players.from_request(request)
    if request.method == "DELETE":
        actions.play_round(room=room, by=player, address=address, stop=True)
        return HttpResponse(status=204)
    seconds = _json_body(request).get("seconds")
    round_ = actions.play_round(room=room, by=player, address=address, seconds=seconds)
    return JsonResponse(messages.round_json(round_), status=201)


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..." too deep
        reason = "too_deep" if isinstance(exc, RecursionError) else "not_json"
        logger.info(kv("http.bad_body", method=request.method, path=request.path[:200], reason=reason))
        raise errors.BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise errors.BadRequest('the body must be a JSON object such as {"name": "Brave Otter"}')
    return body


@allow("GET")
def healthz(request):
    if serving.draining:  # leaving on SIGTERM: balancers and the restart procedure look elsewhere
        return JsonResponse({"status": "draining"}, status=503)
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


# How long /healthz waits for SQLite's write lock: a monitor's probe must answer quickly.
HEALTHZ_LOCK_WAIT_MS = 500


def _database_ok() -> bool:
    """Whether the database answers and can take writes (a read alone says "ok" while
    another process holds SQLite's write lock, or on a read-only PostgreSQL replica)."""
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                _sqlite_can_write(cursor)
            elif connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
                )
                if cursor.fetchone()[0]:
                    raise DatabaseError("read-only (a standby or default_transaction_read_only)")
            else:
                cursor.execute("SELECT 1")
        return True
    except DatabaseError as exc:
        logger.error(kv("healthz.down", part="database", detail=exc))
        return False


def _sqlite_can_write(cursor) -> None:
    """Take SQLite's write lock and let it go at once: raise if it cannot be had quickly."""
    if not connection.get_autocommit():  # inside a transaction (tests): a read is all we may do
        cursor.execute("SELECT 1")
        return
    cursor.execute("PRAGMA busy_timeout")
    (usual,) = cursor.fetchone()
    cursor.execute(f"PRAGMA busy_timeout = {HEALTHZ_LOCK_WAIT_MS}")
    try:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("ROLLBACK")
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(usual)}")


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
