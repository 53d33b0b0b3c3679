"""The Django admin is one more writer: its kills and spawns are pushed like any other."""

import pytest
from channels.db import database_sync_to_async

from viruses import services
from viruses.models import Connection, Virus

pytestmark = pytest.mark.django_db(transaction=True)


async def test_bulk_delete_action_pushes_each_kill(admin_client, pushes):
    viruses = [await database_sync_to_async(services.virus_create)() for _ in range(3)]
    [await pushes.receive() for _ in viruses]
    response = await database_sync_to_async(admin_client.post)(
        "/admin/viruses/virus/",
        {"action": "delete_selected", "_selected_action": [str(v.id) for v in viruses[:2]], "post": "yes"},
    )
    assert response.status_code == 302
    killed = {(await pushes.receive())["id"] for _ in range(2)}
    assert killed == {str(v.id) for v in viruses[:2]}
    assert await pushes.nothing()
    assert [v.id async for v in Virus.objects.all()] == [viruses[2].id]


async def test_delete_from_the_change_page_pushes_the_kill(admin_client, pushes):
    virus = await database_sync_to_async(services.virus_create)()
    await pushes.receive()
    response = await database_sync_to_async(admin_client.post)(
        f"/admin/viruses/virus/{virus.id}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert (await pushes.receive()) | {"seq": 0} == {"type": "virus.killed", "seq": 0, "id": str(virus.id)}


async def test_spawn_action_creates_and_pushes_five(admin_client, pushes):
    response = await database_sync_to_async(admin_client.post)(
        "/admin/viruses/virus/",
        {"action": "spawn_five", "_selected_action": ["00000000-0000-0000-0000-000000000000"]},
    )
    assert response.status_code == 302
    created = [await pushes.receive() for _ in range(5)]
    assert {m["type"] for m in created} == {"virus.created"}
    assert await Virus.objects.acount() == 5


def test_virus_list_searches_by_id_and_tolerates_garbage(admin_client):
    virus = services.virus_create()
    services.virus_create()
    found = admin_client.get("/admin/viruses/virus/", {"q": str(virus.id)})
    assert found.status_code == 200
    assert str(virus.id) in found.content.decode()
    assert "1 virus" in found.content.decode()
    assert admin_client.get("/admin/viruses/virus/", {"q": "not-a-uuid"}).status_code == 200


def test_viruses_cannot_be_added_or_edited_around_the_rules(admin_client):
    virus = services.virus_create()
    assert admin_client.get("/admin/viruses/virus/add/").status_code == 403
    page = admin_client.get(f"/admin/viruses/virus/{virus.id}/change/").content.decode()
    assert 'name="x"' not in page


def test_connections_are_listed_read_only(admin_client):
    from django.utils import timezone

    Connection.objects.create(
        channel_name="specific.test!1",
        server="web-1:42:abc",
        client_address="203.0.113.9",
        last_seen=timezone.now(),
    )
    page = admin_client.get("/admin/viruses/connection/")
    assert page.status_code == 200
    assert "203.0.113.9" in page.content.decode()
    assert admin_client.get("/admin/viruses/connection/add/").status_code == 403
