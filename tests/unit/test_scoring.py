"""Fair scoring (viruses/scoring.py): own and too-fast kills kill but score nothing, on both
paths; the stats an operator judges by; the refused-kill counter; the public board of the day."""

from datetime import UTC, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from tests.support.inprocess import browser, next_of
from viruses import players, scoring, selectors, services
from viruses.models import Player, Virus
from virusgame.asgi import application


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("virusgame_kills_refused_total", {"reason": reason}) or 0


def age(virus: Virus, ms: int) -> None:
    """Make `virus` look committed `ms` ago (its push reached the players that long ago)."""
    table, column = Virus._meta.db_table, Virus._meta.get_field("created_at").column
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column} = %s WHERE id = %s",
            [virus.created_at - timedelta(milliseconds=ms), virus.id.hex],
        )


def player_of(client) -> Player:
    return Player.objects.get(pk=client.get("/api/me/").json()["id"])


def create(client) -> str:
    response = client.post("/api/viruses/", headers={"x-csrftoken": client.token})
    assert response.status_code == 201
    return response.json()["id"]


def kill(client, virus_id) -> int:
    return client.delete(f"/api/viruses/{virus_id}/", headers={"x-csrftoken": client.token}).status_code


def test_the_rules_judge_own_then_too_fast_and_the_game_itself_scores_for_nobody(settings):
    settings.VIRUS_MIN_REACTION_MS = 150
    alice, bob = Player(name="Alice"), Player(name="Bob")
    now = timezone.now()
    virus = Virus(created_at=now - timedelta(milliseconds=149), creator=alice)
    assert scoring.judge(virus, alice, now) == scoring.Verdict(False, "own", 149)
    assert scoring.judge(virus, bob, now) == scoring.Verdict(False, "too_fast", 149)
    assert scoring.judge(virus, None, now) == scoring.Verdict(False, None, 149)
    virus.created_at = now - timedelta(milliseconds=150)
    assert scoring.judge(virus, bob, now) == scoring.Verdict(True, None, 150)
    assert scoring.judge(virus, alice, now).reason == "own"  # however long ago


def test_the_median_reaction_is_the_bucket_of_the_middle_kill():
    player = Player(name="Carol")
    for ms in (30, 420, 440, 460, 9000):
        scoring.record(player, scoring.Verdict(True, None, ms))
    assert player.reaction_median_ms == 500  # 420-460 ms: the 400-500 bucket
    assert scoring.median_ms([0] * len(scoring.BUCKETS_MS) + [3]) == scoring.BUCKETS_MS[-1]  # the slowest
    assert scoring.median_ms([]) is None


@pytest.mark.django_db
def test_over_http_a_self_kill_and_a_too_fast_kill_kill_but_score_nothing_and_are_counted(settings):
    settings.VIRUS_MIN_REACTION_MS = 150
    alice, bob = browser(), browser()
    own_before, fast_before = refused("own"), refused("too_fast")

    own = create(alice)
    age(Virus.objects.get(pk=own), 1000)  # slow enough: only the creator rule can refuse it
    assert kill(alice, own) == 204
    fast = services.virus_create()
    assert kill(bob, fast.id) == 204
    fair = services.virus_create()
    age(fair, 400)
    assert kill(bob, fair.id) == 204

    assert not Virus.objects.exists()  # every one of them killed, for everyone
    alice_row, bob_row = player_of(alice), player_of(bob)
    assert (alice_row.kills, alice_row.kills_scored, alice_row.kills_refused_own) == (0, 0, 1)
    assert (bob_row.kills, bob_row.kills_scored, bob_row.kills_refused_too_fast) == (1, 1, 1)
    assert bob_row.reaction_median_ms is not None
    assert (refused("own") - own_before, refused("too_fast") - fast_before) == (1, 1)
    assert [e["id"] for e in selectors.leaderboard()["top"]] == [str(bob_row.pk)]


@pytest.mark.django_db(transaction=True)
async def test_over_the_socket_a_self_kill_is_acked_pushed_unscored_and_a_fair_one_scored(settings):
    settings.VIRUS_MIN_REACTION_MS = 0
    alice = await database_sync_to_async(services.player_create)()

    async def join(player):
        cookie = f"{players.COOKIE}={players.cookie_value(player.pk)}".encode()
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)]
        communicator = WebsocketCommunicator(application, "/ws/viruses/", headers=headers)
        assert (await communicator.connect())[0]
        await next_of(communicator, "snapshot")
        return communicator

    socket = await join(alice)
    await socket.send_json_to({"type": "create", "ref": "c1"})
    virus_id = (await next_of(socket, "ack", skip=("presence", "virus.created")))["virus"]["id"]
    await socket.send_json_to({"type": "kill", "id": virus_id, "ref": "k1"})
    ack = await next_of(socket, "ack", skip=("presence", "virus.created"))
    killed = await next_of(socket, "virus.killed", skip=("presence", "virus.created", "leaderboard"))
    assert (ack["ref"], ack["status"]) == ("k1", 204)
    assert (killed["id"], killed["by"]["id"], killed["scored"]) == (virus_id, str(alice.pk), False)

    bob = await database_sync_to_async(services.player_create)()
    spawned = await database_sync_to_async(services.virus_create)(by=bob)
    await socket.send_json_to({"type": "kill", "id": str(spawned.id), "ref": "k2"})
    assert (await next_of(socket, "ack", skip=("presence", "virus.created", "virus.killed")))["status"] == 204
    killed = await next_of(socket, "virus.killed", skip=("presence", "virus.created"))
    assert (killed["id"], killed["scored"]) == (str(spawned.id), True)
    board = await next_of(socket, "leaderboard", skip=("presence", "virus.created", "virus.killed"))
    assert [(e["id"], e["kills"]) for e in board["top"]] == [(str(alice.pk), 1)]  # the fair kill alone
    await socket.disconnect()

    @database_sync_to_async
    def stats():
        row = Player.objects.get(pk=alice.pk)
        return row.kills, row.kills_scored, row.kills_refused_own

    assert await stats() == (1, 1, 1)


@pytest.mark.django_db
def test_in_a_room_an_unscored_kill_adds_nothing_to_the_rooms_board():
    host = services.player_create()
    room = services.room_create(host=host)
    guest = services.player_create()
    services.virus_kill(virus_id=services.virus_create(room=room, by=host).id, by=host, room=room)
    services.virus_kill(virus_id=services.virus_create(room=room, by=host).id, by=guest, room=room)
    assert [e["id"] for e in selectors.leaderboard(room)["top"]] == [str(guest.pk)]
    host.refresh_from_db()
    assert (host.kills_refused_own, host.kills) == (1, 0)


@pytest.mark.django_db
def test_the_board_of_the_day_counts_only_todays_kills_and_a_bad_scope_is_a_400():
    early, late = services.player_create(), services.player_create()
    yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    Player.objects.filter(pk=early.pk).update(kills=5, today_kills=5, today_on=yesterday)
    services.virus_kill(virus_id=services.virus_create().id, by=late)
    services.virus_kill(virus_id=services.virus_create().id, by=early)  # their first kill today

    client = browser()
    today = client.get("/api/leaderboard/?scope=today").json()
    assert [(e["id"], e["kills"]) for e in today["top"]] == [(str(late.pk), 1), (str(early.pk), 1)]
    assert (today["scope"], today["players"]) == ("today", 2)
    all_time = client.get("/api/leaderboard/").json()
    assert [(e["id"], e["kills"]) for e in all_time["top"]] == [(str(early.pk), 6), (str(late.pk), 1)]
    assert all_time["scope"] == "all"
    assert selectors.live_board()["today"] == {"top": today["top"], "players": 2}

    bad = client.get("/api/leaderboard/?scope=week")
    assert bad.status_code == 400 and "unknown scope" in bad.json()["error"]
    room = services.room_create(host=late)
    assert client.get(f"/api/rooms/{room.code}/leaderboard/?scope=today").status_code == 400


@pytest.mark.django_db
def test_the_admin_lists_the_fair_play_columns_sorts_marks_suspects_and_bans_them(admin_client, settings):
    settings.VIRUS_SUSPECT_REFUSED = 3
    farmer, fair = services.player_create(), services.player_create()
    for _ in range(3):
        services.virus_kill(virus_id=services.virus_create(by=farmer).id, by=farmer)
    services.virus_kill(virus_id=services.virus_create().id, by=fair)

    page = admin_client.get("/admin/viruses/player/", {"o": "-8"})  # the suspect column, descending
    html = page.content.decode()
    for heading in (
        "Kills scored",
        "Kills refused own",
        "Kills refused too fast",
        "Reaction median ms",
        "Suspect",
    ):
        assert heading in html
    assert html.index(farmer.name) < html.index(fair.name)
    detail = admin_client.get(f"/admin/viruses/player/{farmer.pk}/change/")
    assert detail.status_code == 200 and "Kills refused own" in detail.content.decode()
    suspects = admin_client.get("/admin/viruses/player/", {"suspect": "yes"}).content.decode()
    assert farmer.name in suspects and fair.name not in suspects

    response = admin_client.post(
        "/admin/viruses/player/", {"action": "ban", "_selected_action": [str(farmer.pk)], "suspect": "yes"}
    )
    assert response.status_code == 302
    farmer.refresh_from_db()
    assert farmer.banned and not Player.objects.get(pk=fair.pk).banned
