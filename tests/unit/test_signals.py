"""Every committed change is numbered and pushed once; a rolled-back one never is."""

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from viruses import leaderboard, selectors, services
from viruses.models import Virus

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


@database_sync_to_async
def create():
    return services.virus_create()


@database_sync_to_async
def current_seq():
    return selectors.virus_state()[0]


async def test_create_pushes_the_virus_with_the_next_seq(pushes):
    before = await current_seq()
    virus = await create()
    message = await pushes.receive()
    assert message == {
        "type": "virus.created",
        "seq": before + 1,
        "virus": {
            "id": str(virus.id),
            "kind": virus.kind,
            "x": virus.x,
            "y": virus.y,
            "created_at": virus.created_at.isoformat(),
        },
        "by": None,  # the game itself (spawner, admin, shell) made it
    }


async def test_kill_pushes_the_id_it_had_while_the_row_existed(pushes):
    virus = await create()
    await pushes.receive()
    await database_sync_to_async(services.virus_kill)(virus_id=virus.id)
    message = await pushes.receive()
    assert message["type"] == "virus.killed"
    assert message["id"] == str(virus.id)
    assert not await Virus.objects.filter(pk=virus.id).aexists()


async def test_rolled_back_create_is_not_pushed_and_consumes_no_seq(pushes):
    before = await current_seq()

    @database_sync_to_async
    def create_then_fail():
        with transaction.atomic():
            services.virus_create()
            raise Boom

    with pytest.raises(Boom):
        await create_then_fail()
    assert await pushes.nothing()
    assert await Virus.objects.acount() == 0
    await create()
    assert (await pushes.receive())["seq"] == before + 1


async def test_rolled_back_kill_is_not_pushed(pushes):
    virus = await create()
    await pushes.receive()

    @database_sync_to_async
    def kill_then_fail():
        with transaction.atomic():
            services.virus_kill(virus_id=virus.id)
            raise Boom

    with pytest.raises(Boom):
        await kill_then_fail()
    assert await pushes.nothing()
    assert await Virus.objects.filter(pk=virus.id).aexists()


async def test_shell_style_writes_in_autocommit_are_numbered_and_pushed(pushes):
    """`Virus.objects.create()` and `.delete()` outside any transaction, as in a shell."""
    before = await current_seq()
    virus = await database_sync_to_async(Virus.objects.create)(kind=2, x=10, y=20)
    await database_sync_to_async(Virus.objects.filter(pk=virus.pk).delete)()
    created, killed = await pushes.receive(), await pushes.receive()
    assert (created["type"], created["seq"]) == ("virus.created", before + 1)
    assert (killed["type"], killed["seq"], killed["id"]) == ("virus.killed", before + 2, str(virus.id))


async def test_seq_is_gap_free_across_mixed_commits_and_rollbacks(pushes):
    before = await current_seq()

    @database_sync_to_async
    def churn():
        kept = []
        for i in range(10):
            try:
                with transaction.atomic():
                    virus = services.virus_create()
                    if i % 3 == 0:
                        raise Boom
                kept.append(virus)
            except Boom:
                pass
        for virus in kept[:3]:
            services.virus_kill(virus_id=virus.id)
        return len(kept) + 3

    changes = await churn()
    seqs = [(await pushes.receive())["seq"] for _ in range(changes)]
    assert seqs == list(range(before + 1, before + changes + 1))
    assert await current_seq() == before + changes
    assert await pushes.nothing()


async def test_a_players_kill_is_pushed_naming_them_then_the_board_and_a_rolled_back_one_is_neither(pushes):
    player = await database_sync_to_async(services.player_create)()
    virus = await create()
    await pushes.receive()

    @database_sync_to_async
    def kill_then_fail():
        with transaction.atomic():
            services.virus_kill(virus_id=virus.id, by=player)
            raise Boom

    with pytest.raises(Boom):
        await kill_then_fail()
    assert await pushes.nothing(timeout=3 * leaderboard.DELAY)  # no kill, and no board
    await database_sync_to_async(player.refresh_from_db)()
    assert player.kills == 0

    await database_sync_to_async(services.virus_kill)(virus_id=virus.id, by=player)
    killed = await pushes.receive()
    by = {"id": str(player.pk), "name": player.name}
    assert (killed["type"], killed["by"], killed["scored"]) == ("virus.killed", by, True)
    board = await pushes.receive()
    top = [{"rank": 1, "id": str(player.pk), "name": player.name, "kills": 1}]
    assert board == {"type": "leaderboard", "top": top, "players": 1, "today": {"top": top, "players": 1}}
