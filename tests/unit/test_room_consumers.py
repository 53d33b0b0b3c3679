"""A room's socket: the public socket's messages, in the room's world; refusals by close code."""

import pytest
from channels.db import database_sync_to_async

from tests.support import inprocess
from viruses import services

pytestmark = pytest.mark.django_db(transaction=True)


socket = inprocess.socket


async def next_of(communicator, kind: str) -> dict:
    """The next message of this type, skipping presence and board pushes."""
    return await inprocess.next_of(communicator, kind, skip=("presence", "leaderboard"))


async def closed_with(communicator) -> int:
    while True:
        output = await communicator.receive_output(3)
        if output["type"] == "websocket.close":
            return output["code"]


@database_sync_to_async
def new_room(**fields):
    host = services.player_create()
    room = services.room_create(host=host, name="Class 4B")
    for name, value in fields.items():
        setattr(room, name, value)
    room.save()
    return room, host


async def test_a_rooms_socket_gets_the_rooms_snapshot_and_changes_and_the_public_one_never_does():
    room, host = await new_room()
    player = await database_sync_to_async(services.player_create)()
    in_room, public = await socket(f"/ws/rooms/{room.code.lower()}/", player), await socket("/ws/viruses/")
    snapshot = await next_of(in_room, "snapshot")
    assert (snapshot["seq"], snapshot["viruses"], snapshot["online"]) == (0, [], 1)
    assert snapshot["room"] == {
        "code": room.code,
        "name": "Class 4B",
        "url": f"/r/{room.code}/",
        "host": {"id": str(host.pk), "name": host.name},
        "online": 1,
        "alive": 0,
        "locked": False,
        "max_players": 100,
    }
    assert "room" not in await next_of(public, "snapshot")
    await in_room.send_json_to({"type": "create", "ref": "r1"})
    ack = await next_of(in_room, "ack")
    created = await next_of(in_room, "virus.created")
    assert (created["seq"], created["virus"]) == (1, ack["virus"])
    # Killing it through the public socket: unknown there.
    await public.send_json_to({"type": "kill", "id": ack["virus"]["id"], "ref": "p1"})
    assert (await next_of(public, "error"))["status"] == 404
    await in_room.send_json_to({"type": "kill", "id": ack["virus"]["id"], "ref": "r2"})
    assert (await next_of(in_room, "ack"))["status"] == 204
    killed = await next_of(in_room, "virus.killed")
    assert (killed["seq"], killed["by"]["id"]) == (2, str(player.pk))
    # Fence: the public socket's next change is the public world's own, seq 1.
    fence = await database_sync_to_async(services.virus_create)()
    created = await next_of(public, "virus.created")
    assert (created["seq"], created["virus"]["id"]) == (1, str(fence.id))
    await in_room.disconnect()
    await public.disconnect()


@pytest.mark.parametrize("path", ["/ws/rooms/ZZZZZ/", "/ws/rooms/not-a-code/"])
async def test_an_unknown_room_is_accepted_then_closed_with_4404(path):
    assert await closed_with(await socket(path)) == 4404


async def test_a_full_room_closes_the_next_socket_with_4409(settings):
    settings.VIRUS_ROOM_MAX_PLAYERS = 2
    room, _ = await new_room()
    first, second = await socket(f"/ws/rooms/{room.code}/"), await socket(f"/ws/rooms/{room.code}/")
    for communicator in (first, second):
        await next_of(communicator, "snapshot")
    assert await closed_with(await socket(f"/ws/rooms/{room.code}/")) == 4409
    await first.disconnect()
    await second.disconnect()


async def test_a_locked_room_lets_in_its_host_and_players_who_were_in_and_closes_others_with_4403():
    room, host = await new_room()
    member, stranger = [await database_sync_to_async(services.player_create)() for _ in range(2)]
    first = await socket(f"/ws/rooms/{room.code}/", member)
    await next_of(first, "snapshot")
    await first.disconnect()
    await database_sync_to_async(services.room_set_locked)(room=room, by=host, locked=True)
    for player in (stranger, None):
        assert await closed_with(await socket(f"/ws/rooms/{room.code}/", player)) == 4403
    for player in (member, host):
        again = await socket(f"/ws/rooms/{room.code}/", player)
        assert (await next_of(again, "snapshot"))["room"]["locked"] is True
        await again.disconnect()
