"""Players: a name per browser from the first visit, renames, bans, and scores that last."""

import json
import uuid

import pytest
from django.test import Client

from viruses import players, selectors, services
from viruses.models import Player, Virus

pytestmark = pytest.mark.django_db

MARKUP = "<img src=x onerror=f()>"  # 23 characters: refused for its characters alone


def browser() -> Client:
    """A browser with its own address: loads the page (player cookie, CSRF token) like a person."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=f"test-{uuid.uuid4().hex[:12]}")
    page = client.get("/")
    assert page.status_code == 200
    client.token = page.cookies["csrftoken"].value
    return client


def me(client) -> dict:
    response = client.get("/api/me/")
    assert response.status_code == 200
    return response.json()


def rename(client, name, *, token=True):
    headers = {"x-csrftoken": client.token} if token else {}
    return client.patch(
        "/api/me/", json.dumps({"name": name}), content_type="application/json", headers=headers
    )


def kill(client, virus_id):
    return client.delete(f"/api/viruses/{virus_id}/", headers={"x-csrftoken": client.token})


def test_first_visit_gets_a_friendly_unique_name_that_a_reload_keeps():
    alice = browser()
    first = me(alice)
    assert first["name"].split()[0] in players.ADJECTIVES
    assert (first["kills"], first["rank"], first["banned"]) == (0, None, False)
    alice.get("/")  # a reload
    assert me(alice) == first
    assert me(browser())["id"] != first["id"]
    assert Player.objects.count() == 2


def test_player_cookie_is_signed_http_only_and_a_forged_one_is_ignored():
    alice = browser()
    cookie = alice.cookies[players.COOKIE]
    assert cookie["httponly"] is True
    victim = me(alice)["id"]
    forger = Client()
    forger.cookies[players.COOKIE] = victim  # the id alone, unsigned
    assert me(forger)["id"] != victim


def test_generated_names_never_collide_case_insensitively(monkeypatch):
    monkeypatch.setattr(players, "ADJECTIVES", ("Brave",))
    monkeypatch.setattr(players, "ANIMALS", ("Otter",))
    names = [services.player_create().name for _ in range(5)]
    assert names[0] == "Brave Otter"
    assert len({players.name_key(n) for n in names}) == 5


def test_rename_trims_and_shows_up_on_the_board():
    alice = browser()
    virus = services.virus_create()
    assert kill(alice, virus.id).status_code == 204
    response = rename(alice, "  Captain   Sneeze ")
    assert response.status_code == 200
    assert response.json()["name"] == "Captain Sneeze"
    assert selectors.leaderboard()["top"][0]["name"] == "Captain Sneeze"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        ("    ", "empty"),
        ("x" * 25, "at most 24"),
        (MARKUP, "letters, digits"),
        ('Robert"); DROP', "letters, digits"),
        ("tab\there", None),  # whitespace collapses: accepted as "tab here"
        ("zero\u200bwidth", "letters, digits"),
        ("bell\x07", "letters, digits"),
        (42, "string"),
        (None, "string"),
    ],
)
def test_rename_refuses_bad_names_with_a_clear_error_and_changes_nothing(name, says):
    alice = browser()
    before = me(alice)
    response = rename(alice, name)
    if says is None:
        assert response.status_code == 200
        assert response.json()["name"] == "tab here"
        return
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert me(alice) == before


def test_markup_never_comes_back_as_html():
    alice = browser()
    assert rename(alice, MARKUP).status_code == 400
    assert MARKUP not in alice.get("/").content.decode()
    assert not Player.objects.filter(name__contains="<").exists()


def test_names_are_unique_case_insensitively_also_beyond_ascii():
    alice, bob = browser(), browser()
    assert rename(alice, "Élan Vital").status_code == 200
    taken = rename(bob, "éLAN vital")
    assert taken.status_code == 409
    assert "taken" in taken.json()["error"]
    assert rename(alice, "élan vital").status_code == 200  # one's own name in another case is fine


def test_rename_without_csrf_token_is_refused():
    alice = browser()
    before = me(alice)
    assert rename(alice, "Sneaky", token=False).status_code == 403
    assert me(alice) == before


@pytest.mark.parametrize("body", ["not json", "[1]", '"name"'])
def test_rename_with_a_malformed_body_is_400(body):
    alice = browser()
    response = alice.patch(
        "/api/me/", body, content_type="application/json", headers={"x-csrftoken": alice.token}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 50_000])
def test_a_body_nested_past_the_stack_is_400_json_with_one_log_line_without_the_body(body, caplog):
    alice = browser()
    caplog.clear()
    response = alice.patch(
        "/api/me/", body, content_type="application/json", headers={"x-csrftoken": alice.token}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "http.bad_body" in line] == [
        "event=http.bad_body method=PATCH path=/api/me/ reason=too_deep"
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert all(body[:20] not in line for line in lines)


def test_renames_are_rate_limited_per_player(settings):
    settings.VIRUS_RENAME_RATE, settings.VIRUS_RENAME_BURST = 1, 2
    alice = browser()
    statuses = [rename(alice, f"Name {i}").status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert me(alice)["name"] == "Name 1"
    assert rename(browser(), "Someone Else").status_code == 200  # another player has their own


def test_a_kill_credits_its_player_and_the_score_lasts():
    alice, bob = browser(), browser()
    viruses = [services.virus_create() for _ in range(3)]
    assert [kill(alice, v.id).status_code for v in viruses[:2]] == [204, 204]
    assert kill(bob, viruses[2].id).status_code == 204
    assert kill(bob, viruses[0].id).status_code == 404  # already Alice's: no credit
    assert (me(alice)["kills"], me(bob)["kills"]) == (2, 1)
    assert (me(alice)["rank"], me(bob)["rank"]) == (1, 2)


def test_a_kill_without_player_cookie_credits_nobody():
    virus = services.virus_create()
    anonymous = Client()
    assert anonymous.delete(f"/api/viruses/{virus.id}/").status_code == 204
    assert not Player.objects.filter(kills__gt=0).exists()


def test_leaderboard_ties_go_to_who_got_there_first():
    first, second, third = browser(), browser(), browser()
    for client in (second, first, third, first, second):
        assert kill(client, services.virus_create().id).status_code == 204
    board = browser().get("/api/leaderboard/").json()
    ids = [me(c)["id"] for c in (first, second, third)]
    # Both have 2, but `first` reached 2 before `second` did (`second` scored its first kill earlier).
    assert [(e["rank"], e["id"], e["kills"]) for e in board["top"]] == [
        (1, ids[0], 2),
        (2, ids[1], 2),
        (3, ids[2], 1),
    ]
    assert board["players"] == 3
    assert board["me"]["rank"] is None  # the viewer has not scored


def test_leaderboard_shows_ten_and_the_viewers_own_rank_beyond_them():
    clients = [browser() for _ in range(12)]
    for kills, client in zip(range(12, 0, -1), clients, strict=True):
        for _ in range(kills):
            assert kill(client, services.virus_create().id).status_code == 204
    board = clients[-1].get("/api/leaderboard/").json()
    assert [e["kills"] for e in board["top"]] == list(range(12, 2, -1))
    assert (board["players"], board["me"]["rank"], board["me"]["kills"]) == (12, 12, 1)


def test_a_banned_player_cannot_act_and_leaves_the_board():
    alice, bob = browser(), browser()
    for client in (alice, bob):
        assert kill(client, services.virus_create().id).status_code == 204
    services.players_set_banned(player_ids=[me(alice)["id"]], banned=True)
    virus = services.virus_create()
    refused = kill(alice, virus.id)
    assert refused.status_code == 403
    assert "banned" in refused.json()["error"]
    assert Virus.objects.filter(pk=virus.id).exists()  # nothing happened
    assert alice.post("/api/viruses/", headers={"x-csrftoken": alice.token}).status_code == 403
    assert Virus.objects.count() == 1
    assert rename(alice, "Innocent").status_code == 403
    board = bob.get("/api/leaderboard/").json()
    assert [e["id"] for e in board["top"]] == [me(bob)["id"]]
    assert (board["players"], me(alice)["banned"], me(alice)["rank"]) == (1, True, None)
    services.players_set_banned(player_ids=[me(alice)["id"]], banned=False)
    assert kill(alice, virus.id).status_code == 204
    assert me(alice)["kills"] == 2


def test_wrong_methods_on_the_player_endpoints_are_405():
    alice = browser()
    assert alice.post("/api/me/", headers={"x-csrftoken": alice.token}).status_code == 405
    assert alice.delete("/api/leaderboard/", headers={"x-csrftoken": alice.token}).status_code == 405


def test_new_players_are_rate_limited_per_address_and_the_page_still_loads(settings):
    settings.VIRUS_NEW_PLAYER_RATE, settings.VIRUS_NEW_PLAYER_BURST = 1, 2
    address = f"test-{uuid.uuid4().hex[:12]}"
    statuses = [Client(REMOTE_ADDR=address).get("/api/me/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    page = Client(REMOTE_ADDR=address).get("/")
    assert page.status_code == 200
    assert players.COOKIE not in page.cookies
    assert "Guest" in page.content.decode()
    assert Player.objects.count() == 2
    keeper = Client(REMOTE_ADDR=address)
    keeper.cookies[players.COOKIE] = players.cookie_value(Player.objects.first().pk)
    assert keeper.get("/api/me/").status_code == 200  # a player who kept the cookie is never limited
