"""`manage.py spawn_virus`, the cron job."""

import io
import random
import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from viruses import rounds, services
from viruses.management.commands.spawn_virus import moments
from viruses.models import Round, Virus

pytestmark = pytest.mark.django_db


def spawn(*args) -> str:
    out = io.StringIO()
    call_command("spawn_virus", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_no_options_spawns_one_now():
    output = spawn()
    assert Virus.objects.count() == 1
    assert str(Virus.objects.get().id) in output


def test_count_spawns_that_many():
    spawn("--count", "4")
    assert Virus.objects.count() == 4


def test_spread_places_creations_at_random_moments_within_the_window():
    started = time.monotonic()
    spawn("--count", "3", "--spread", "1.5")
    elapsed = time.monotonic() - started
    assert Virus.objects.count() == 3
    assert elapsed <= 3  # sleeps only until the last random moment, which is within 1.5 s
    times = sorted(v.created_at for v in Virus.objects.all())
    assert len(set(times)) == 3


def test_alive_cap_stops_the_round_and_says_so(settings):
    settings.VIRUS_MAX_ALIVE = 2
    output = spawn("--count", "5")
    assert Virus.objects.count() == 2
    assert "full" in output


def test_once_per_window_lets_only_the_first_node_spawn():
    # A window length of its own, so no earlier run's lock in a shared Redis applies.
    window = str(random.randrange(10**6, 10**7))
    spawn("--once-per", window)
    second = spawn("--once-per", window)
    assert "skipping" in second
    assert Virus.objects.count() == 1


@pytest.mark.parametrize("args", [("--count", "0"), ("--spread", "-1"), ("--every", "1", "--spread", "5")])
def test_bad_options_are_refused(args):
    with pytest.raises(CommandError):
        spawn(*args)
    assert Virus.objects.count() == 0


def test_once_per_without_a_reachable_cache_refuses_to_spawn(settings, unused_tcp_port):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{unused_tcp_port}/0",
        }
    }
    with pytest.raises(CommandError, match="spawn lock"):
        spawn("--once-per", "60")
    assert Virus.objects.count() == 0


def test_spread_gives_each_creation_its_own_equal_slice_of_the_window():
    random.seed(4)
    for _ in range(200):
        spaced = moments(3, 55)
        assert all(i * 55 / 3 <= moment < (i + 1) * 55 / 3 for i, moment in enumerate(spaced))
    assert moments(1, 0) == [0.0]


def test_room_spawns_in_that_room_alone_and_an_unknown_code_fails():
    from viruses import services

    room = services.room_create(host=services.player_create(), name="Biology Class")
    output = spawn("--room", room.code.lower(), "--count", "2")
    assert output.count(f"in room {room.code}") == 2
    assert Virus.objects.filter(room=room).count() == 2 and Virus.objects.count() == 2
    with pytest.raises(CommandError, match="no such room"):
        spawn("--room", "ZZZZZ")


def test_all_rooms_spawns_in_the_public_room_and_each_room_with_someone_online():
    from viruses import services

    host = services.player_create()
    used, empty = (services.room_create(host=host, name=name) for name in ("Used", "Empty"))
    services.connections_open(
        server="here:1:a",
        sockets=[
            {"channel_name": "c.1", "client_address": "203.0.113.1", "user_agent": "t", "room_id": used.pk}
        ],
    )
    spawn("--all-rooms", "--count", "2", "--spread", "0.2")
    assert Virus.objects.filter(room=None).count() == 2
    assert Virus.objects.filter(room=used).count() == 2
    assert not Virus.objects.filter(room=empty).exists()


def test_all_rooms_ends_the_rounds_due_while_it_waits_between_spawns():
    room = services.room_create(host=services.player_create(), name=None)
    round_ = rounds.start(room=room, by=room.host_id, seconds=15)
    Round.objects.filter(pk=round_.pk).update(ends_at=timezone.now())
    spawn("--all-rooms", "--spread", "0.3")
    round_.refresh_from_db()
    assert round_.state == "over"
