"""System checks for configurations that silently break live updates."""

import uuid

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import messages
from .selectors import ONLINE_NAMES


@register()
def channel_layer_reaches_other_processes(app_configs, **kwargs):
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only reaches sockets of the same process: "
                "viruses spawned by cron or changed in a shell or another server are not "
                "pushed to browsers.",
                hint="Set REDIS_URL (make run starts a local Redis for you).",
                id="viruses.W001",
            )
        ]
    return []


# The widest value of each field: the longest repr of a float in 0..100, a full timestamp.
WIDEST_VIRUS = {
    "id": str(uuid.UUID(int=0)),
    "kind": 5,
    "x": 1.2345678901234567e-05,
    "y": 1.2345678901234567e-05,
    "created_at": "2000-01-01T00:00:00.000000+00:00",
}
# A name of 24 letters outside the BMP: each is escaped as a 12-byte surrogate pair.
WIDEST_PLAYER = {"id": str(uuid.UUID(int=0)), "name": "\U0001d4d0" * 24, "kills": 2**31, "banned": False}


def largest_snapshot_bytes(alive: int) -> int:
    """Return the size of the largest snapshot `alive` viruses can make (with a full leaderboard)."""
    board = {"top": [{"rank": 10, **WIDEST_PLAYER}] * 10, "players": 2**31}
    text = messages.snapshot(
        seq=2**63 - 1,
        viruses=[WIDEST_VIRUS] * alive,
        online=2**31,
        leaderboard=board,
        me={**WIDEST_PLAYER, "rank": 2**31},
        online_players=[{"id": WIDEST_PLAYER["id"], "name": WIDEST_PLAYER["name"]}] * ONLINE_NAMES,
        online_more=2**31,
    )
    return len(text.encode())


@register()
def snapshot_fits_in_a_message(app_configs, **kwargs):
    limit = settings.VIRUS_WS_MAX_MESSAGE_SIZE
    size = largest_snapshot_bytes(settings.VIRUS_MAX_ALIVE)
    if 0 < limit < size:
        fits = (limit - largest_snapshot_bytes(0)) // (largest_snapshot_bytes(1) - largest_snapshot_bytes(0))
        return [
            Error(
                f"A snapshot of VIRUS_MAX_ALIVE={settings.VIRUS_MAX_ALIVE} viruses takes up to {size} "
                f"bytes, over the WebSocket message size limit of {limit} bytes: once the "
                "playground fills up, every connect and resync would fail with 1011.",
                hint=f"Lower VIRUS_MAX_ALIVE to {fits} or less, or run daphne with "
                f"--websocket-max-message-size {size} (or more) and set VIRUS_WS_MAX_MESSAGE_SIZE "
                "to the same value.",
                id="viruses.E001",
            )
        ]
    return []


@register()
def secure_cookies_have_https(app_configs, **kwargs):
    secure = settings.SESSION_COOKIE_SECURE or settings.CSRF_COOKIE_SECURE
    if secure and settings.SECURE_PROXY_SSL_HEADER is None and not settings.SECURE_SSL_REDIRECT:
        return [
            Warning(
                "Session and CSRF cookies are Secure-only (the default without DJANGO_DEBUG), but "
                "nothing says this site is served over HTTPS: browsers on plain http:// never send "
                'them back, so every + and kill fails with "CSRF cookie not set".',
                hint="Behind a TLS proxy (nginx): DJANGO_BEHIND_TLS_PROXY=true and "
                "DJANGO_SECURE_SSL_REDIRECT=true. Serving TLS from daphne itself: "
                "DJANGO_SECURE_SSL_REDIRECT=true. Plain HTTP on purpose (a trial on a trusted "
                "network): DJANGO_SECURE_COOKIES=false.",
                id="viruses.W002",
            )
        ]
    return []
