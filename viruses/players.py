"""Who is playing: the signed player cookie (HTTP and WebSocket alike) and generated names.

A first visit gets an anonymous `Player` and a cookie holding its id, signed with the
secret key: a client can drop its cookie (and start over as someone new) but never take
another player's. The same cookie arrives in the WebSocket handshake, so a kill scores for
the same player whichever path it takes.
"""

import random
import uuid
from collections.abc import Mapping

from django.conf import settings
from django.core import signing
from django.http.cookie import parse_cookie

COOKIE = "player"
SALT = "viruses.players"
COOKIE_MAX_AGE = 365 * 24 * 3600

ADJECTIVES = (
    "Brave", "Shy", "Swift", "Jolly", "Clever", "Sleepy", "Mighty", "Gentle", "Lucky", "Bold",
    "Calm", "Eager", "Fuzzy", "Happy", "Keen", "Lively", "Merry", "Nimble", "Proud", "Quick",
    "Quiet", "Sunny", "Witty", "Zesty", "Cosmic", "Daring", "Fierce", "Glad", "Humble", "Noble",
)  # fmt: skip
ANIMALS = (
    "Otter", "Lynx", "Badger", "Falcon", "Panda", "Koala", "Heron", "Gecko", "Marten", "Puffin",
    "Walrus", "Beaver", "Bison", "Crane", "Dingo", "Ferret", "Ibex", "Jackal", "Lemur", "Moose",
    "Newt", "Ocelot", "Quokka", "Raven", "Stoat", "Tapir", "Urchin", "Vole", "Wombat", "Yak",
)  # fmt: skip

PLACES = ("Lab", "Ward", "Clinic", "Dish", "Den", "Club", "Camp", "Crew", "Squad", "Team")


def generated_name(attempt: int = 0) -> str:
    """A friendly name such as "Brave Otter"; later attempts add a number to dodge collisions."""
    name = f"{random.choice(ADJECTIVES)} {random.choice(ANIMALS)}"
    return name if attempt < 5 else f"{name} {random.randrange(10, 10_000)}"


def generated_room_name() -> str:
    """A friendly room name such as "Jolly Puffin Lab"."""
    return f"{random.choice(ADJECTIVES)} {random.choice(ANIMALS)} {random.choice(PLACES)}"


def player_id(cookies: Mapping[str, str]) -> uuid.UUID | None:
    """Return the player id in a validly signed cookie, else None."""
    value = cookies.get(COOKIE)
    if not value:
        return None
    try:
        return uuid.UUID(_signer().unsign(value))
    except (signing.BadSignature, ValueError):
        return None


def from_request(request) -> uuid.UUID | None:
    return player_id(request.COOKIES)


def from_scope(scope) -> uuid.UUID | None:
    """The player of a WebSocket handshake (its Cookie header), with or without Channels' middleware."""
    if "cookies" in scope:
        return player_id(scope["cookies"])
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            return player_id(parse_cookie(value.decode("latin-1")))
    return None


def remember(response, player) -> None:
    """Set the player cookie on `response` (HttpOnly: scripts never need it)."""
    response.set_cookie(
        COOKIE,
        cookie_value(player.pk),
        max_age=COOKIE_MAX_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def cookie_value(player_id) -> str:
    """The signed value of the player cookie for `player_id`."""
    return _signer().sign(str(player_id))


def _signer():
    # Signed and read here, both ways, so that HTTP and the WebSocket handshake agree.
    return signing.get_cookie_signer(salt=SALT)
