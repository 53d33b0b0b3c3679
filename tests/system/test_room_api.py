"""The rooms' HTTP contract: status codes, CSRF, the host's rights, isolation from the public world."""

import pytest
from django.test import Client

from tests.support import inprocess
from viruses import services
from viruses.models import Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser():
    """A browser with its page loaded: the CSRF cookie and a player."""
    return inprocess.browser()


def send(client, method, path, body=None):
    return getattr(client, method)(
        path, data=body, content_type="application/json", headers={"x-csrftoken": client.token}
    )


def new_room(client, name=None) -> dict:
    answer = send(client, "post", "/api/rooms/", {} if name is None else {"name": name})
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_creating_a_room_answers_201_with_the_room_its_creator_hosting_it(browser):
    room = new_room(browser, "Class 4B")
    me = browser.get("/api/me/").json()
    assert room == {
        "code": room["code"],
        "name": "Class 4B",
        "url": f"/r/{room['code']}/",
        "host": {"id": me["id"], "name": me["name"]},
        "online": 0,
        "alive": 0,
        "locked": False,
        "max_players": 100,
    }
    assert browser.get(f"/api/rooms/{room['code'].lower()}/").json() == room
    assert new_room(browser)["name"]  # no name: a generated one


@pytest.mark.parametrize("body", [{"name": "x" * 41}, {"name": "<script>"}, {"name": 5}, [1]])
def test_a_bad_name_is_a_400_and_creates_nothing(browser, body):
    assert send(browser, "post", "/api/rooms/", body).status_code == 400
    assert not Room.objects.exists()


def test_creating_a_room_needs_a_player_and_the_csrf_token(browser):
    assert browser.post("/api/rooms/", content_type="application/json").status_code == 403
    stranger = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.9")
    stranger.get("/api/viruses/")  # the CSRF cookie, but no page: no player
    stranger.token = stranger.cookies["csrftoken"].value if "csrftoken" in stranger.cookies else "x"
    assert send(stranger, "post", "/api/rooms/", {}).status_code == 403
    assert not Room.objects.exists()


def test_one_player_creates_five_rooms_in_a_minute_then_is_told_to_wait(browser):
    answers = [send(browser, "post", "/api/rooms/", {}) for _ in range(30)]
    statuses = [answer.status_code for answer in answers]
    created = statuses.index(429)
    assert created >= 5 and set(statuses[:created]) == {201}
    assert int(answers[created]["Retry-After"]) >= 1
    assert Room.objects.count() == statuses.count(201)


def test_only_the_host_locks_and_unlocks(browser):
    room = new_room(browser)
    other = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.10")
    other.get("/")
    other.token = other.cookies["csrftoken"].value
    path = f"/api/rooms/{room['code']}/"
    assert send(other, "patch", path, {"locked": True}).status_code == 403
    assert send(browser, "patch", path, {"locked": "yes"}).status_code == 400
    assert send(browser, "patch", path, {"locked": True}).json()["locked"] is True
    assert send(browser, "patch", path, {"locked": False}).json()["locked"] is False


@pytest.mark.parametrize(
    "path",
    ["/api/rooms/ZZZZZ/", "/api/rooms/ZZZZZ/viruses/", "/api/rooms/zzzzz/leaderboard/", "/api/rooms/0O1IL/"],
)
def test_an_unknown_room_is_a_json_404(browser, path):
    answer = browser.get(path)
    assert answer.status_code == 404 and "error" in answer.json()


def test_a_rooms_viruses_and_board_are_its_own_and_a_kill_from_elsewhere_is_a_404(browser):
    room, other = new_room(browser), new_room(browser)
    base, elsewhere = f"/api/rooms/{room['code']}", f"/api/rooms/{other['code']}"
    public = services.virus_create()
    virus = send(inprocess.browser(), "post", f"{base}/viruses/").json()  # another player's: it scores
    assert browser.get(f"{base}/viruses/").json() == {"seq": 1, "viruses": [virus]}
    assert browser.get("/api/viruses/").json()["viruses"] == [services_json(public)]
    assert browser.get(f"{elsewhere}/viruses/").json() == {"seq": 0, "viruses": []}
    for path in (
        f"/api/viruses/{virus['id']}/",
        f"{elsewhere}/viruses/{virus['id']}/",
        f"{base}/viruses/{public.id}/",
    ):
        assert send(browser, "delete", path).status_code == 404
    assert send(browser, "delete", f"{base}/viruses/{virus['id']}/").status_code == 204
    assert send(browser, "delete", f"{base}/viruses/{virus['id']}/").status_code == 404
    board = browser.get(f"{base}/leaderboard/").json()
    assert [row["kills"] for row in board["top"]] == [1] and board["me"]["kills"] == 1
    assert browser.get("/api/leaderboard/").json()["top"] == []
    assert browser.get(f"{elsewhere}/leaderboard/").json()["top"] == []
    assert browser.get(f"/api/rooms/{room['code']}/").json()["alive"] == 0


def services_json(virus) -> dict:
    from viruses import messages

    return messages.virus_json(virus)


def test_a_rooms_page_plays_in_the_room_and_an_unknown_code_gets_a_friendly_404(browser):
    room = new_room(browser, "Projector Room")
    page = browser.get(f"/r/{room['code'].lower()}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-room="{room["code"]}"' in html and "Projector Room" in html
    assert 'id="add-virus"' in html and 'id="playground"' in html
    missing = browser.get("/r/ZZZZZ/")
    assert missing.status_code == 404 and "No such room" in missing.content.decode()
