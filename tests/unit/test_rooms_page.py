"""A room's page (its header: name, code, link, QR, lock) and the public page's way into rooms."""

import re
from html import unescape

import pytest
from channels.db import database_sync_to_async

from tests.support.inprocess import browser
from viruses import services

pytestmark = pytest.mark.django_db


def create_room(client, name="Class 4B") -> dict:
    answer = client.post(
        "/api/rooms/", {"name": name}, content_type="application/json", headers={"X-CSRFToken": client.token}
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def link_of(page: str) -> str:
    """The link the copy button copies (and the QR code holds)."""
    return unescape(re.search(r'id="room-card"[^>]*data-link="([^"]+)"', page).group(1))


def test_a_room_page_shows_its_name_its_code_its_absolute_link_and_a_qr_code():
    host = browser()
    room = create_room(host)
    page = host.get(f"/r/{room['code'].lower()}/").content.decode()
    assert "<h1>Class 4B</h1>" in page
    assert re.search(rf'id="room-code"[^>]*>{room["code"]}<', page)
    assert link_of(page) == f"http://testserver/r/{room['code']}/"
    assert f'value="http://testserver/r/{room["code"]}/"' in page  # shown, selectable without a clipboard
    assert re.search(r'<figure class="room-qr"[^>]*><svg[^>]*class="qr-code"', page)
    assert 'id="room-entry"' not in page


def test_the_link_has_the_scheme_and_host_the_player_used_behind_a_tls_proxy(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["testserver", "play.example.org"]
    host = browser()
    code = create_room(host)["code"]
    page = host.get(f"/r/{code}/", headers={"X-Forwarded-Proto": "https", "Host": "play.example.org"})
    assert link_of(page.content.decode()) == f"https://play.example.org/r/{code}/"


def test_only_the_host_sees_the_lock_toggle_and_everyone_sees_a_locked_room():
    host, guest = browser(), browser()
    code = create_room(host)["code"]
    assert 'id="room-lock"' in host.get(f"/r/{code}/").content.decode()
    page = guest.get(f"/r/{code}/").content.decode()
    assert 'id="room-lock"' not in page
    assert re.search(r'id="room-locked"\s+hidden', page)
    locked = host.patch(
        f"/api/rooms/{code}/",
        {"locked": True},
        content_type="application/json",
        headers={"X-CSRFToken": host.token},
    )
    assert locked.status_code == 200
    page = guest.get(f"/r/{code}/").content.decode()
    assert 'data-locked="true"' in page and not re.search(r'id="room-locked"\s+hidden', page)
    assert 'aria-pressed="true"' in host.get(f"/r/{code}/").content.decode()


def test_the_public_page_offers_to_create_a_room_and_to_join_one_by_code():
    page = browser().get("/").content.decode()
    assert 'id="room-entry"' in page and 'id="room-card"' not in page
    assert re.search(r'<button type="submit" id="create-room">Create a room</button>', page)
    assert 'id="join-room-code"' in page


@pytest.mark.django_db(transaction=True)
async def test_locking_and_unlocking_push_the_room_to_its_group_alone(pushes, listen):
    host = await database_sync_to_async(services.player_create)()
    room = await database_sync_to_async(services.room_create)(host=host)
    in_room = await listen(room.group)
    for locked in (True, False):
        await database_sync_to_async(services.room_set_locked)(room=room, by=host, locked=locked)
        pushed = await in_room.receive()
        assert (pushed["type"], pushed["room"]["code"], pushed["room"]["locked"]) == (
            "room",
            room.code,
            locked,
        )
    fence = await database_sync_to_async(services.virus_create)()
    assert (await pushes.receive())["virus"]["id"] == str(fence.id)  # the public world heard no room
