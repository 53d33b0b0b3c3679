"""viruses/guards/admission.py: reserve-then-decide places per client address, in Redis and in memory."""

import uuid

import pytest

from viruses.guards import admission


@pytest.fixture(params=["redis", "local"])
def places(request, redis_server):
    if request.param == "local":
        return admission.LocalPlaces()
    return admission.RedisPlaces(redis_server.url, f"t{uuid.uuid4().hex[:8]}")


def test_places_up_to_the_cap_then_refusals_until_one_is_given_back(places):
    assert [places.reserve("203.0.113.7", f"c.{i}", 3) for i in range(5)] == [True] * 3 + [False] * 2
    assert places.reserve("203.0.113.8", "other", 3)  # another address has its own places
    assert places.count("203.0.113.7") == 3
    places.release("203.0.113.7", "c.0")
    places.release("203.0.113.7", "c.0")  # twice: harmless
    assert places.reserve("203.0.113.7", "c.9", 3)
    for member in ("c.1", "c.2", "c.9"):
        places.release("203.0.113.7", member)
    assert places.count("203.0.113.7") == 0


def test_redis_places_of_a_server_that_stopped_renewing_them_expire(redis_server, settings):
    places = admission.RedisPlaces(redis_server.url, f"t{uuid.uuid4().hex[:8]}")
    settings.VIRUS_PRESENCE_HEARTBEAT = 0  # reservations that expire at once unless renewed
    assert places.reserve("203.0.113.7", "dead.1", 1)
    settings.VIRUS_PRESENCE_HEARTBEAT = 15
    assert places.reserve("203.0.113.7", "alive.1", 1)  # the dead server's place was freed
    places.renew({"alive.1": "203.0.113.7", "left.1": "203.0.113.7"})
    assert places.count("203.0.113.7") == 1  # renewing never re-adds a place given back


def test_no_cap_or_no_address_always_admits(settings):
    settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS = 0
    assert all(admission.reserve("203.0.113.7", f"c.{i}") for i in range(50))
    settings.VIRUS_MAX_CONNECTIONS_PER_ADDRESS = 1
    assert all(admission.reserve("", f"c.{i}") for i in range(5))


def test_a_rooms_places_are_its_own_and_none_are_left_when_full(settings):
    settings.VIRUS_ROOM_MAX_PLAYERS = 2
    room, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert [admission.seat(room, f"c.{i}") for i in range(3)] == [True, True, False]
    assert admission.seat(other, "c.0")  # another room has its own places
    assert admission.places().count(room) == 0  # and an address of the same name too
    admission.unseat(room, "c.0")
    assert admission.seat(room, "c.9")
