"""Who is online: the Connection writers, the heartbeat's reaping, and one definition of "online"."""

from datetime import timedelta

import pytest
from django.utils import timezone

from viruses import selectors, services
from viruses.models import Connection

pytestmark = pytest.mark.django_db


def open_socket(channel_name: str, server: str = "here:1:aaa", address: str = "203.0.113.7") -> None:
    services.connections_open(
        server=server, sockets=[{"channel_name": channel_name, "client_address": address, "user_agent": "t"}]
    )


def age(channel_name: str, seconds: float) -> None:
    Connection.objects.filter(channel_name=channel_name).update(
        last_seen=timezone.now() - timedelta(seconds=seconds)
    )


def test_heartbeat_refreshes_this_servers_open_sockets_and_reaps_stale_rows(settings):
    stale_after = 3 * settings.VIRUS_PRESENCE_HEARTBEAT
    for name in ("mine.open", "mine.left", "theirs.dead"):
        open_socket(name, server="gone:2:bbb" if name == "theirs.dead" else "here:1:aaa")
        age(name, stale_after + 1)
    reaped = services.connections_heartbeat(server="here:1:aaa", channel_names=["mine.open"])
    # "mine.left" is not refreshed: its delete failed earlier, so it goes stale like a dead server's.
    assert sorted(reaped) == ["mine.left", "theirs.dead"]
    assert list(Connection.objects.values_list("channel_name", flat=True)) == ["mine.open"]
    assert selectors.online_count() == 1


def test_a_dead_servers_rows_count_until_three_heartbeats_old_then_stop_counting_before_any_reap(settings):
    stale_after = 3 * settings.VIRUS_PRESENCE_HEARTBEAT
    open_socket("theirs.late", server="gone:2:bbb")
    open_socket("theirs.dead", server="gone:2:bbb")
    age("theirs.late", stale_after - 1)
    age("theirs.dead", stale_after + 1)
    assert selectors.online_count() == 1
    assert Connection.objects.count() == 2  # nobody reaped yet: it stopped counting at once


def test_status_counts_online_as_the_page_does(settings):
    open_socket("a.1")
    open_socket("a.2")
    age("a.2", 3 * settings.VIRUS_PRESENCE_HEARTBEAT + 1)  # its server stopped refreshing it
    open_socket("b.1", server="gone:2:bbb")
    age("b.1", 3 * settings.VIRUS_PRESENCE_HEARTBEAT + 1)
    status = selectors.game_status()
    assert status["online"] == selectors.online_count() == selectors.snapshot()[2] == 1
    assert status["stale"] == 2
    servers = {s["server"]: (s["state"], s["online"], s["stale"]) for s in status["servers"]}
    assert servers == {"here:1:aaa": ("alive", 1, 1), "gone:2:bbb": ("stale", 0, 1)}


def test_connection_rows_keep_within_their_columns():
    services.connections_open(
        server="s", sockets=[{"channel_name": "c.1", "client_address": "a" * 100, "user_agent": "u" * 300}]
    )
    row = Connection.objects.get()
    assert (len(row.client_address), len(row.user_agent)) == (64, 255)
    services.connections_close(channel_names=["c.1"])
    assert not Connection.objects.exists()


def test_sockets_that_come_and_go_at_once_are_written_together():
    sockets = [
        {"channel_name": f"c.{i}", "client_address": "203.0.113.7", "user_agent": "t"} for i in range(3)
    ]
    services.connections_open(server="s", sockets=sockets)
    assert selectors.online_count() == 3
    assert {row.connected_at for row in Connection.objects.all()} != {None}
    services.connections_close(channel_names=["c.0", "c.2"])
    assert list(Connection.objects.values_list("channel_name", flat=True)) == ["c.1"]
