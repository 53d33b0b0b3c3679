"""The Django admin is one more writer: its kills and spawns are pushed like any other.

Async tests reach the database only through `database_sync_to_async`, which closes its
connection afterwards: the async ORM (`acount()`, `async for`) would leave one open in
asgiref's worker thread, and PostgreSQL then refuses to drop the test database.
"""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client

from viruses import rounds, services
from viruses.models import Connection, Room, Virus

pytestmark = pytest.mark.django_db(transaction=True)

SPAWN_URL = "/admin/viruses/virus/spawn/"


@database_sync_to_async
def virus_ids() -> list:
    return list(Virus.objects.values_list("id", flat=True))


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
    assert await virus_ids() == [viruses[2].id]


async def test_delete_from_the_change_page_pushes_the_kill(admin_client, pushes):
    virus = await database_sync_to_async(services.virus_create)()
    await pushes.receive()
    response = await database_sync_to_async(admin_client.post)(
        f"/admin/viruses/virus/{virus.id}/delete/", {"post": "yes"}
    )
    assert (response.status_code, response.url) == (302, "/admin/viruses/virus/")  # back to the list
    killed = (await pushes.receive()) | {"seq": 0}
    assert killed == {"type": "virus.killed", "seq": 0, "id": str(virus.id), "by": None, "scored": False}


async def test_spawn_button_on_an_empty_playground_creates_and_pushes_five(admin_client, pushes):
    page = await database_sync_to_async(admin_client.get)("/admin/viruses/virus/")
    assert f'action="{SPAWN_URL}"' in page.content.decode()
    response = await database_sync_to_async(admin_client.post)(SPAWN_URL, follow=True)
    assert response.redirect_chain == [("/admin/viruses/virus/", 302)]
    assert "Spawned 5 viruses." in response.content.decode()
    created = [await pushes.receive() for _ in range(5)]
    assert {m["type"] for m in created} == {"virus.created"}
    assert len(await virus_ids()) == 5


def test_spawn_button_stops_at_the_alive_cap_and_says_so(admin_client, settings):
    settings.VIRUS_MAX_ALIVE = 3
    services.virus_create()
    page = admin_client.post(SPAWN_URL, follow=True).content.decode()
    assert "Spawned 2: the playground is full (3 viruses)." in page
    assert Virus.objects.count() == 3


def test_spawn_needs_post_csrf_and_the_add_permission(admin_user, django_user_model):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.get(SPAWN_URL).status_code == 405
    assert strict.post(SPAWN_URL).status_code == 403  # no CSRF token
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_virus"))
    client = Client()
    client.force_login(viewer)
    assert "Spawn 5 viruses" not in client.get("/admin/viruses/virus/").content.decode()
    assert client.post(SPAWN_URL).status_code == 403
    assert Virus.objects.count() == 0


def test_virus_list_searches_by_id_and_tolerates_garbage(admin_client):
    virus = services.virus_create()
    services.virus_create()
    found = admin_client.get("/admin/viruses/virus/", {"q": str(virus.id)})
    assert found.status_code == 200
    assert str(virus.id) in found.content.decode()
    assert "1 virus" in found.content.decode()
    assert admin_client.get("/admin/viruses/virus/", {"q": "not-a-uuid"}).status_code == 200


def test_viruses_cannot_be_added_or_edited_around_the_rules(admin_client):
    virus = services.virus_create(kind=3)
    assert admin_client.get("/admin/viruses/virus/add/").status_code == 403
    page = admin_client.get(f"/admin/viruses/virus/{virus.id}/change/").content.decode()
    assert 'name="x"' not in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "purple" in page  # kind shown as the colour the page draws
    before = (virus.kind, virus.x)
    admin_client.post(f"/admin/viruses/virus/{virus.id}/change/", {"kind": 0, "x": 1, "_save": "Save"})
    virus.refresh_from_db()
    assert (virus.kind, virus.x) == before
    listing = admin_client.get("/admin/viruses/virus/", {"kind": 3}).content.decode()
    assert "purple" in listing and "1 virus" in listing


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


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def login(address: str, username: str, password: str):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response, client


def test_admin_login_locks_a_user_and_address_out_after_five_failures(django_user_model, caplog):
    for name in ("boss", "other"):
        django_user_model.objects.create_superuser(name, password="right-horse-battery")
    for _ in range(6):
        response, _ = login("203.0.113.5", "boss", "wrong")
        assert response.status_code in (200, 429)  # the form again, then locked
    assert response.status_code == 429
    response, client = login("203.0.113.5", "boss", "right-horse-battery")
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302  # not logged in
    # Per user and address: the same user elsewhere, another user here, both get in.
    assert login("198.51.100.7", "boss", "right-horse-battery")[0].status_code == 302
    assert login("203.0.113.5", "other", "right-horse-battery")[0].status_code == 302
    locked = [r.getMessage() for r in caplog.records if "admin.locked_out" in r.getMessage()]
    assert locked and locked[0] == "event=admin.locked_out client=203.0.113.5 username=boss"


def test_admin_login_failures_below_the_limit_do_not_lock(django_user_model):
    django_user_model.objects.create_superuser("boss", password="right-horse-battery")
    for _ in range(4):
        assert login("203.0.113.5", "boss", "wrong")[0].status_code == 200
    assert login("203.0.113.5", "boss", "right-horse-battery")[0].status_code == 302


async def test_players_page_searches_sorts_by_score_and_bans_off_the_board(admin_client, pushes):
    @database_sync_to_async
    def players_with_kills(*counts):
        made = []
        for count in counts:
            player = services.player_create()
            for _ in range(count):
                services.virus_kill(virus_id=services.virus_create().id, by=player)
            made.append(player)
        return made

    low, high = await players_with_kills(1, 3)
    await database_sync_to_async(services.player_rename)(player=high, name="Top Sneezer")
    page = (await database_sync_to_async(admin_client.get)("/admin/viruses/player/")).content.decode()
    assert page.index("Top Sneezer") < page.index(low.name)  # best score first
    found = (
        await database_sync_to_async(admin_client.get)("/admin/viruses/player/?q=sneez")
    ).content.decode()
    assert "Top Sneezer" in found
    assert low.name not in found

    names = await board_names(pushes)
    while names != ["Top Sneezer", low.name]:  # pushes coalesce: the latest board tells
        names = await board_names(pushes)
    response = await database_sync_to_async(admin_client.post)(
        "/admin/viruses/player/", {"action": "ban", "_selected_action": [str(high.pk)]}
    )
    assert response.status_code == 302
    assert await board_names(pushes) == [low.name]
    assert await pushes.nothing()


async def board_names(pushes) -> list[str]:
    """The names on the next `leaderboard` push, skipping virus changes."""
    while (message := await pushes.receive())["type"] != "leaderboard":
        pass
    return [entry["name"] for entry in message["top"]]


def test_rooms_are_listed_found_by_code_in_any_case_and_their_viruses_deleted_in_their_room(admin_client):
    room = services.room_create(host=services.player_create(), name="Class 4B")
    virus = services.virus_create(room=room)
    listing = admin_client.get("/admin/viruses/room/", {"q": room.code.lower()}).content.decode()
    assert room.code in listing and "Class 4B" in listing
    response = admin_client.post(
        "/admin/viruses/virus/",
        {"action": "delete_selected", "_selected_action": [str(virus.id)], "post": "yes"},
    )
    assert response.status_code == 302 and not Virus.objects.exists()
    response = admin_client.post(f"/admin/viruses/room/{room.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Room.objects.exists()


def test_rounds_are_listed_with_each_players_kills_and_refused_kills_read_only(admin_client):
    room = services.room_create(host=services.player_create(), name="Class 4B")
    round_ = rounds.start(room=room, by=room.host_id, seconds=60)
    with transaction.atomic():  # as in the kill's transaction (PostgreSQL's FOR UPDATE needs one)
        rounds.record_kill(room=room, player=room.host, scored=True)
        rounds.record_kill(room=room, player=room.host, scored=False)
    listing = admin_client.get("/admin/viruses/round/", {"q": room.code.lower()}).content.decode()
    assert room.code in listing and "running" in listing
    assert admin_client.get("/admin/viruses/round/add/").status_code == 403
    page = admin_client.get(f"/admin/viruses/round/{round_.pk}/change/").content.decode()
    assert room.host.name in page and "Refused" in page
    assert "Save" not in page
