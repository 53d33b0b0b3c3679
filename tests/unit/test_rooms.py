"""Rooms are worlds of their own: viruses, seq, alive cap, board and pushes apart from the public world."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from viruses import broadcast, errors, leaderboard, messages, selectors, services
from viruses.models import ChangeCounter, Room, Score, Virus

pytestmark = pytest.mark.django_db(transaction=True)


def make_room(name=None) -> Room:
    return services.room_create(host=services.player_create(), name=name)


def test_a_room_gets_a_code_without_look_alikes_found_in_any_case_and_a_name():
    room = make_room()
    assert len(room.code) == 5 and set(room.code) <= set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
    assert selectors.room(room.code.lower()) == room
    assert 1 <= len(room.name) <= 40
    assert make_room("  Class   4B ").name == "Class 4B"
    for bad in ("x" * 41, "<b>", 7):
        with pytest.raises(errors.BadName):
            make_room(bad)
    for unknown in ("ZZZZZ", "O0IL1", "", "K7QM2X"):
        with pytest.raises(errors.RoomNotFound):
            selectors.room(unknown)


def test_a_rooms_viruses_seq_and_kills_stay_in_the_room():
    room, other = make_room(), make_room()
    player = services.player_create()
    public = services.virus_create()
    mine = [services.virus_create(room=room, by=room.host) for _ in range(3)]
    assert selectors.virus_state(room)[0] == 3
    assert {v["id"] for v in selectors.virus_state(room)[1]} == {str(v.id) for v in mine}
    assert selectors.virus_state(other) == (0, [])
    assert [v["id"] for v in selectors.virus_state()[1]] == [str(public.id)]
    # A virus of another world is unknown here, whichever way round.
    for virus, world in ((public, room), (mine[0], None), (mine[0], other)):
        with pytest.raises(errors.VirusNotFound):
            services.virus_kill(virus_id=virus.id, by=player, room=world)
    services.virus_kill(virus_id=mine[0].id, by=player, room=room)
    assert selectors.virus_state(room)[0] == 4 and selectors.virus_state(other)[0] == 0
    player.refresh_from_db()
    assert player.kills == 0  # the public board is not the room's
    assert selectors.leaderboard(room)["top"] == [
        {"rank": 1, "id": str(player.pk), "name": player.name, "kills": 1}
    ]
    assert selectors.leaderboard(other) == {"top": [], "players": 0}
    assert selectors.leaderboard() == {"top": [], "players": 0}
    assert selectors.me(player.pk, room)["kills"] == 1 and selectors.me(player.pk)["kills"] == 0


def test_the_alive_cap_counts_each_world_apart(settings):
    settings.VIRUS_MAX_ALIVE = 2
    room = make_room()
    for _ in range(2):
        services.virus_create(room=room)
    with pytest.raises(errors.AliveCapReached):
        services.virus_create(room=room)
    services.virus_create()  # the public world and another room still have room
    services.virus_create(room=make_room())
    assert Virus.objects.filter(room=room).count() == 2


def test_removing_a_room_removes_its_viruses_scores_and_counter_and_acting_in_it_is_not_found():
    room = make_room()
    player = services.player_create()
    services.virus_kill(virus_id=services.virus_create(room=room).id, by=player, room=room)
    services.virus_create(room=room)
    public = services.virus_create()
    room.delete()
    assert list(Virus.objects.all()) == [public]
    assert not Score.objects.exists() and ChangeCounter.objects.count() == 1
    with pytest.raises(errors.RoomNotFound):
        services.virus_create(room=room)


def test_the_host_alone_locks_a_room_and_a_locked_room_admits_only_its_members():
    room = make_room()
    stranger, member = services.player_create(), services.player_create()
    services.room_join(room=room, player_id=member.pk)
    with pytest.raises(errors.NotHost):
        services.room_set_locked(room=room, by=stranger, locked=True)
    services.room_set_locked(room=room, by=room.host_id, locked=True)
    assert selectors.room_admits(room, stranger.pk) == "locked"
    assert selectors.room_admits(room, None) == "locked"
    assert selectors.room_admits(room, member.pk) is None
    assert selectors.room_admits(room, room.host_id) is None


async def test_changes_in_a_room_reach_its_group_alone_numbered_from_one(pushes, listen):
    room, other = await database_sync_to_async(make_room)(), await database_sync_to_async(make_room)()
    in_room, in_other = await listen(room.group), await listen(other.group)
    virus = await database_sync_to_async(services.virus_create)(room=room)
    await database_sync_to_async(services.virus_kill)(virus_id=virus.id, room=room)
    created, killed = await in_room.receive(), await in_room.receive()
    assert (created["type"], created["seq"], created["virus"]["id"]) == ("virus.created", 1, str(virus.id))
    assert (killed["type"], killed["seq"], killed["id"]) == ("virus.killed", 2, str(virus.id))
    # Fences: the next message of the public world and of the other room is their own change.
    fence = await database_sync_to_async(services.virus_create)()
    assert (await pushes.receive())["virus"]["id"] == str(fence.id)
    fence = await database_sync_to_async(services.virus_create)(room=other)
    assert (await in_other.receive())["virus"]["id"] == str(fence.id)


async def test_a_room_kill_pushes_the_rooms_board_to_the_room_not_the_public_one(pushes, listen):
    room = await database_sync_to_async(make_room)()
    in_room = await listen(room.group)
    player = await database_sync_to_async(services.player_create)()
    virus = await database_sync_to_async(services.virus_create)(room=room)
    await database_sync_to_async(services.virus_kill)(virus_id=virus.id, by=player, room=room)
    received = [await in_room.receive() for _ in range(3)]
    assert [m["type"] for m in received] == ["virus.created", "virus.killed", "leaderboard"]
    assert received[2]["top"] == [{"rank": 1, "id": str(player.pk), "name": player.name, "kills": 1}]
    fence = await database_sync_to_async(services.virus_create)()
    assert (await pushes.receive())["virus"]["id"] == str(fence.id)  # no board came first
    assert await in_room.nothing(timeout=2 * leaderboard.DELAY)


async def test_queued_pushes_of_several_rooms_leave_in_batches_of_one_world_each_in_order(
    listen, monkeypatch
):
    rooms = [await database_sync_to_async(make_room)() for _ in range(3)]
    listeners = [await listen(broadcast.GROUP)] + [await listen(room.group) for room in rooms]
    groups = [broadcast.GROUP] + [room.group for room in rooms]
    pusher = broadcast.Pusher(asyncio.get_running_loop())
    monkeypatch.setattr(broadcast, "_pusher", pusher)
    try:
        for seq in range(1, 21):  # interleaved, all queued before the pusher runs
            for group in groups:
                pusher._put(messages.killed_event(seq=seq, virus_id=f"{group}-{seq}"), group)
        await broadcast.flush()
        for group, listener in zip(groups, listeners, strict=True):
            received = []
            while len(received) < 20:  # each frame holds this world's pushes alone
                frame = await listener.receive()
                received += frame if isinstance(frame, list) else [frame]
            assert [m["id"] for m in received] == [f"{group}-{seq}" for seq in range(1, 21)]
    finally:
        pusher.task.cancel()


def test_each_room_counts_its_own_seq_gap_free_under_concurrent_writers():
    rooms = [make_room() for _ in range(3)]
    errors_seen = []

    def churn(room):
        try:
            for _ in range(15):
                services.virus_kill(virus_id=services.virus_create(room=room).id, room=room)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors_seen.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=churn, args=(room,)) for room in rooms for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors_seen == []
    assert [selectors.virus_state(room) for room in rooms] == [(60, [])] * 3
    assert selectors.virus_state() == (0, [])


def test_prune_removes_rooms_idle_for_long_enough_and_keeps_those_with_someone_online(settings):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    idle, busy, fresh = make_room(), make_room(), make_room()
    services.virus_create(room=idle)
    long_ago = timezone.now() - timedelta(hours=settings.VIRUS_ROOM_IDLE_HOURS + 1)
    Room.objects.filter(pk__in=[idle.pk, busy.pk]).update(last_activity=long_ago)
    services.connections_open(
        server="here:1:a",
        sockets=[
            {"channel_name": "c.1", "client_address": "203.0.113.1", "user_agent": "t", "room_id": busy.pk}
        ],
    )
    Room.objects.filter(pk=busy.pk).update(last_activity=long_ago)
    call_command("prune_rooms")
    assert set(Room.objects.values_list("code", flat=True)) == {busy.code, fresh.code}
    assert not Virus.objects.exists()
    with pytest.raises(errors.RoomNotFound):
        selectors.room(idle.code)
