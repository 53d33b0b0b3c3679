"""Rounds: the host alone starts and stops them, the dish is cleared and refilled, kills score for
the round and all time, and each round ends exactly once."""

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, transaction
from django.utils import timezone

from tests.support import inprocess
from viruses import errors, rounds, selectors, services
from viruses.models import Round, RoundScore, Score, Virus

pytestmark = pytest.mark.django_db(transaction=True)


def host_and_room():
    """A browser with its player, the host of a fresh room."""
    host = inprocess.browser()
    answer = host.post("/api/rooms/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=host.token)
    assert answer.status_code == 201
    return host, selectors.room(answer.json()["code"])


def post_round(client, room, body) -> tuple[int, dict]:
    answer = client.post(
        f"/api/rooms/{room.code}/round/", json.dumps(body), "application/json", HTTP_X_CSRFTOKEN=client.token
    )
    return answer.status_code, answer.json()


def delete_round(client, room) -> int:
    return client.delete(f"/api/rooms/{room.code}/round/", HTTP_X_CSRFTOKEN=client.token).status_code


def expire(round_: Round) -> None:
    """Move the round's end into the past, as if its seconds had gone by."""
    Round.objects.filter(pk=round_.pk).update(ends_at=timezone.now() - timedelta(milliseconds=1))


def test_over_http_only_the_host_starts_and_stops_a_round_of_15_to_600_seconds_one_at_a_time():
    host, room = host_and_room()
    stranger = inprocess.browser()
    assert post_round(stranger, room, {"seconds": 30})[0] == 403
    for bad in (14, 601, "30", 30.5, True, None):
        status, body = post_round(host, room, {"seconds": bad})
        assert status == 400 and "15 to 600" in body["error"]
    assert post_round(host, room, ["seconds"])[0] == 400
    status, round_ = post_round(host, room, {"seconds": 15})
    assert status == 201
    assert round_["number"] == 1 and round_["state"] == "running" and round_["seconds"] == 15
    started, ends = (timezone.datetime.fromisoformat(round_[k]) for k in ("started_at", "ends_at"))
    assert ends - started == timedelta(seconds=15)
    assert post_round(host, room, {"seconds": 30})[0] == 409
    assert delete_round(stranger, room) == 403
    no_csrf = host.delete(f"/api/rooms/{room.code}/round/")
    assert no_csrf.status_code == 403
    assert delete_round(host, room) == 204
    assert delete_round(host, room) == 409  # nothing left to stop
    assert post_round(host, room, {"seconds": 600})[1]["number"] == 2
    assert (
        host.post(
            "/api/rooms/ZZZZZ/round/", "{}", "application/json", HTTP_X_CSRFTOKEN=host.token
        ).status_code
        == 404
    )


def test_a_round_clears_the_dish_refills_it_and_its_kills_count_for_the_round_and_all_time():
    _, room = host_and_room()
    old = {services.virus_create(room=room).id for _ in range(5)}
    player = services.player_create()
    round_ = rounds.start(room=room, by=room.host_id, seconds=60)
    alive = set(Virus.objects.filter(room=room).values_list("id", flat=True))
    assert not alive & old and len(alive) == rounds.OPENING
    services.virus_kill(virus_id=alive.pop(), by=player, room=room)
    assert RoundScore.objects.get(round=round_, player=player).kills == 1
    assert Score.objects.get(room=room, player=player).kills == 1
    board = selectors.leaderboard(room)
    assert board["scope"] == "round" and board["round"] == 1
    assert [(e["id"], e["kills"]) for e in board["top"]] == [(str(player.pk), 1)]
    rounds.stop(room=room, by=room.host_id)
    services.virus_kill(virus_id=alive.pop(), by=player, room=room)  # after the round: all time only
    assert RoundScore.objects.get(round=round_, player=player).kills == 1
    assert "scope" not in selectors.leaderboard(room)
    assert selectors.leaderboard(room)["top"][0]["kills"] == 2


def test_a_round_ends_once_whoever_notices_and_kills_after_ends_at_do_not_count_for_it():
    _, room = host_and_room()
    player = services.player_create()
    round_ = rounds.start(room=room, by=room.host_id, seconds=15)
    assert rounds.end_due() == 0 and rounds.tick() <= rounds.IDLE
    expire(round_)
    services.virus_kill(virus_id=Virus.objects.filter(room=room).first().id, by=player, room=room)
    assert not RoundScore.objects.filter(round=round_).exists()
    assert selectors.running_round(room) is not None  # nobody has noticed yet
    rounds.tick([room.pk])
    assert [rounds.end(round_), rounds.end_due(), rounds.tick()] == [False, 0, rounds.IDLE]
    round_.refresh_from_db()
    assert round_.state == "over" and round_.ended_at >= round_.ends_at
    with pytest.raises(errors.NoRound):
        rounds.stop(room=room, by=room.host_id)


def test_a_start_after_an_unnoticed_end_ends_that_round_first():
    _, room = host_and_room()
    first = rounds.start(room=room, by=room.host_id, seconds=15)
    with pytest.raises(errors.RoundRunning):
        rounds.start(room=room, by=room.host_id, seconds=15)
    expire(first)
    assert rounds.start(room=room, by=room.host_id, seconds=15).number == 2
    first.refresh_from_db()
    assert first.state == "over"


def test_the_server_adds_a_virus_every_spawn_interval_once_however_many_tick():
    _, room = host_and_room()
    round_ = rounds.start(room=room, by=room.host_id, seconds=60)
    Round.objects.filter(pk=round_.pk).update(next_spawn_at=timezone.now())
    rounds.tick()
    rounds.tick([room.pk])
    assert Virus.objects.filter(room=room).count() == rounds.OPENING + 1
    round_.refresh_from_db()
    assert round_.next_spawn_at > timezone.now() + rounds.SPAWN_EVERY - timedelta(seconds=1)


def test_a_player_past_the_refused_limit_is_left_off_the_rounds_board(settings):
    settings.VIRUS_ROUND_REFUSED_LIMIT = 2
    _, room = host_and_room()
    fair, farmer = services.player_create(), services.player_create()
    round_ = rounds.start(room=room, by=room.host_id, seconds=60)
    with transaction.atomic():  # as in the kill's transaction (PostgreSQL's FOR UPDATE needs one)
        rounds.record_kill(room=room, player=fair, scored=True)
        for _ in range(5):
            rounds.record_kill(room=room, player=farmer, scored=True)
        for _ in range(2):
            rounds.record_kill(room=room, player=farmer, scored=False)
    assert [e["id"] for e in selectors.round_board(round_)["top"]] == [str(farmer.pk), str(fair.pk)]
    with transaction.atomic():
        rounds.record_kill(room=room, player=farmer, scored=False)
    assert RoundScore.objects.get(round=round_, player=farmer).refused == 3
    assert [e["id"] for e in selectors.round_board(round_)["top"]] == [str(fair.pk)]


@database_sync_to_async
def room_with_host():
    _, room = host_and_room()
    return room, room.host


async def test_over_the_socket_only_the_host_plays_rounds_and_everyone_hears_start_and_end():
    room, host = await room_with_host()
    stranger = await database_sync_to_async(services.player_create)()
    mine = await inprocess.socket(f"/ws/rooms/{room.code}/", host)
    theirs = await inprocess.socket(f"/ws/rooms/{room.code}/", stranger)
    skip = ("presence", "leaderboard", "virus.created", "virus.killed")
    for sock in (mine, theirs):
        snapshot = await inprocess.next_of(sock, "snapshot", skip=skip)
        assert snapshot["round"] is None and "now" in snapshot
    await theirs.send_json_to({"type": "round.start", "seconds": 30, "ref": "r1"})
    assert await inprocess.next_of(theirs, "error", skip=skip) == {
        "type": "error",
        "ref": "r1",
        "status": 403,
        "error": "only the room's host may do that",
    }
    await mine.send_json_to({"type": "round.start", "seconds": 9, "ref": "r2"})
    assert (await inprocess.next_of(mine, "error", skip=skip))["status"] == 400
    await mine.send_json_to({"type": "round.start", "seconds": 30, "ref": "r3"})
    for sock in (mine, theirs):
        started = await inprocess.next_of(sock, "round", skip=(*skip, "ack"))
        assert started["round"]["state"] == "running" and started["board"]["top"] == []
        assert timezone.datetime.fromisoformat(started["now"]) <= timezone.now()
    await mine.send_json_to({"type": "round.start", "seconds": 30, "ref": "r4"})
    assert (await inprocess.next_of(mine, "error", skip=(*skip, "ack")))["status"] == 409
    await mine.send_json_to({"type": "round.stop", "ref": "r5"})
    assert await inprocess.next_of(mine, "ack", skip=skip) == {"type": "ack", "ref": "r5", "status": 204}
    for sock in (mine, theirs):
        over = await inprocess.next_of(sock, "round", skip=(*skip, "ack"))
        assert over["round"]["state"] == "over" and over["round"]["number"] == 1
    public = await inprocess.socket("/ws/viruses/", host)
    await public.send_json_to({"type": "round.start", "seconds": 30, "ref": "r6"})
    assert (await inprocess.next_of(public, "error", skip=(*skip, "snapshot")))["status"] == 400
    for sock in (mine, theirs, public):
        await sock.disconnect()


async def test_a_page_reconnecting_mid_round_gets_the_round_in_its_snapshot():
    room, host = await room_with_host()
    await database_sync_to_async(rounds.start)(room=room, by=host, seconds=120)
    sock = await inprocess.socket(f"/ws/rooms/{room.code}/", host)
    snapshot = await inprocess.next_of(sock, "snapshot", skip=("presence", "leaderboard"))
    assert snapshot["round"]["state"] == "running" and snapshot["round"]["seconds"] == 120
    assert snapshot["leaderboard"]["scope"] == "round"
    assert len(snapshot["viruses"]) == rounds.OPENING
    await sock.disconnect()


async def test_a_round_ends_at_its_end_by_the_servers_clock_with_nobody_acting():
    room, host = await room_with_host()
    round_ = await database_sync_to_async(rounds.start)(room=room, by=host, seconds=15)
    stranger = await database_sync_to_async(services.player_create)()
    sock = await inprocess.socket(f"/ws/rooms/{room.code}/", stranger)  # the host has left
    await inprocess.next_of(sock, "snapshot", skip=("presence", "leaderboard"))
    await database_sync_to_async(expire)(round_)
    skip = ("presence", "leaderboard", "virus.created", "virus.killed")
    over = await inprocess.next_of(sock, "round", skip=skip)
    assert over["round"]["state"] == "over" and over["round"]["number"] == 1
    await sock.disconnect()


def test_a_board_that_cannot_be_read_after_the_commit_still_lets_the_round_end(monkeypatch, caplog):
    host, room = host_and_room()
    assert post_round(host, room, {"seconds": 30})[0] == 201

    def down(*args, **kwargs):
        raise OperationalError("database went away")

    monkeypatch.setattr(selectors, "round_board", down)
    assert delete_round(host, room) == 204
    assert selectors.last_round(room).state == "over"
    assert "event=round.announce_failed" in caplog.text
