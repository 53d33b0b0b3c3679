"""Players: a name per browser from the first visit, renames, bans, and scores that last."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.support.inprocess import browser
from viruses import names, players, selectors, services
from viruses.models import Player, Virus

pytestmark = pytest.mark.django_db

MARKUP = "<img src=x onerror=f()>"  # 23 characters: refused for its characters alone


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
    created = [services.player_create().name for _ in range(5)]
    assert created[0] == "Brave Otter"
    assert len({names.keys(n) for n in created}) == 5


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
        ("zero\u200bwidth", "invisible"),
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


@pytest.mark.parametrize(
    "look_alike",
    [
        "\u0412r\u0430v\u0435 St\u043e\u0430t",  # Cyrillic В, а, е, о
        "\u0392rave Stoat",  # Greek capital beta
        "BraveStoat",
        "Brave Stoat.",
        "BRAVE ST0AT",  # a zero for the O
        "brave_stoat",
    ],
)
def test_a_look_alike_of_a_players_name_is_taken(look_alike):
    alice, bob = browser(), browser()
    assert rename(alice, "Brave Stoat").status_code == 200
    before = me(bob)
    taken = rename(bob, look_alike)
    assert taken.status_code == 409
    assert "taken" in taken.json()["error"]
    assert me(bob) == before


def test_look_alikes_in_lower_case_are_taken_too():
    alice, bob = browser(), browser()
    assert rename(alice, "Moose").status_code == 200
    assert rename(bob, "rnoose").status_code == 409  # "rn" reads as "m"
    assert rename(bob, "Mouse").status_code == 200


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("P\u0430ypal", "one script"),  # a Cyrillic а among Latin letters
        ("\u0397ello W\u043erld", "one script"),
        ("\u3164", "invisible"),  # Hangul filler, which NFKC turns into U+1160
        ("\uffa0", "invisible"),  # halfwidth Hangul filler
        ("\u115f", "invisible"),
        ("\u1160\u1160", "invisible"),
        ("Brave\u200dOtter", "invisible"),  # zero-width joiner
        ("Brave\u2060Otter", "invisible"),  # word joiner
        ("\u2800", "letters, digits"),  # Braille blank
        ("...", "letter or digit"),
        ("\u5b57" * 13, "too wide"),  # 26 columns
        ("\u5b57" * 24, "at most 24"),
        ("Guest", "reserved"),
        ("admin", "reserved"),
        ("Lab Spawner", "reserved"),
        ("LAB-SPAWNER", "reserved"),
        ("Spawner", "reserved"),
        ("System", "reserved"),
        ("Moderator", "reserved"),
        ("G.U.E.S.T", "reserved"),
        ("Adrnin", "reserved"),  # "rn" reads as "m"
        ("Z\u0337\u0322\u031b", "combining marks"),  # zalgo: three marks on one letter
        ("Z\u0337\u0322a\u0334\u0315l\u0336\u0321\u0358go", "combining marks"),
        ("\u0301Otter", "follow a letter"),  # an accent on nothing
        ("Otter \u0301", "follow a letter"),
        ("Otte\u093f", "follow a letter"),  # a Devanagari vowel sign on a Latin letter
        ("1\u0301", "follow a letter"),
        ("\u0661\u0662 3", "numbering system"),  # Arabic-Indic and ASCII digits
    ],
)
def test_names_that_fake_hide_or_crowd_are_refused_with_a_clear_error(name, says):
    alice = browser()
    before = me(alice)
    response = rename(alice, name)
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert me(alice) == before


@pytest.mark.parametrize(
    "name",
    [
        "\u0930\u093e\u0939\u0941\u0932",  # Hindi राहुल: vowel signs are marks (Mc, Mn)
        "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd",  # Tamil தமிழ்
        "\u0939\u094d\u0930\u0940\u0902",  # Hindi ह्रीं: two marks on one letter
        "\u0e01\u0e35\u0e49",  # Thai กี้
        "\u5c71\u7530\u305f\u308d\u3046",  # Japanese: Han and Hiragana
        "\uae40\ucca0\uc218",  # Korean
        "\u5b57" * 12,  # 24 columns
        "Zo\u00eb 42",
        "\u0396\u03c9\u03ae",  # Greek, all of it
        "\u0645\u062d\u0645\u062f",  # Arabic
        "Guest Star",
    ],
)
def test_names_of_any_script_are_accepted(name):
    alice = browser()
    response = rename(alice, name)
    assert response.status_code == 200
    assert response.json()["name"] == name


def test_a_player_ranks_after_a_minimum_of_play(settings):
    settings.VIRUS_RANK_MIN_KILLS, settings.VIRUS_RANK_MIN_SECONDS = 3, 300
    veteran, newcomer = browser(), browser()
    age(veteran, seconds=600)
    for _ in range(3):
        assert kill(veteran, services.virus_create().id).status_code == 204
    for _ in range(5):
        assert kill(newcomer, services.virus_create().id).status_code == 204
    board = newcomer.get("/api/leaderboard/").json()
    assert [e["id"] for e in board["top"]] == [me(veteran)["id"]]  # the newcomer has more kills, not the time
    assert (board["players"], board["me"]["rank"], board["me"]["kills"]) == (1, None, 5)
    age(newcomer, seconds=300)
    board = newcomer.get("/api/leaderboard/").json()
    assert [e["id"] for e in board["top"]] == [me(newcomer)["id"], me(veteran)["id"]]
    assert board["me"]["rank"] == 1


def test_players_minted_at_once_from_one_address_rank_only_once_each_has_played(settings):
    settings.VIRUS_RANK_MIN_KILLS, settings.VIRUS_RANK_MIN_SECONDS = 2, 300
    address = f"test-{uuid.uuid4().hex[:12]}"
    school = [Client(enforce_csrf_checks=True, REMOTE_ADDR=address) for _ in range(12)]
    for pupil in school:
        pupil.token = pupil.get("/").cookies["csrftoken"].value
        for _ in range(2):
            assert kill(pupil, services.virus_create().id).status_code == 204
    assert selectors.leaderboard() == {"top": [], "players": 0}  # minted just now: nobody ranks
    for pupil in school:
        age(pupil, seconds=300)  # a lesson's play later, every pupil behind the one address ranks
    board = selectors.leaderboard()
    assert board["players"] == 12
    assert {e["id"] for e in board["top"]} <= {me(p)["id"] for p in school}


def age(client, *, seconds: int) -> None:
    """Make the client's player `seconds` older, as if they had joined that long ago."""
    joined = timezone.now() - timedelta(seconds=seconds)
    Player.objects.filter(pk=me(client)["id"]).update(created_at=joined)


def test_the_admin_keeps_its_session_while_the_api_skips_it_and_still_checks_csrf(admin_user):
    """/api/ runs without the session, auth and message middleware (viruses/middleware.py)."""
    staff = Client(enforce_csrf_checks=True)
    token = staff.get("/admin/login/").cookies["csrftoken"].value
    login = {"username": admin_user.username, "password": "password", "csrfmiddlewaretoken": token}
    assert staff.post("/admin/login/?next=/admin/", login).status_code == 302
    assert "sessionid" in staff.cookies
    assert staff.get("/admin/").status_code == 200  # the session, the user and the admin's messages
    assert staff.post("/api/viruses/").status_code == 403  # a staff session is no CSRF token
    created = staff.post("/api/viruses/", headers={"x-csrftoken": staff.cookies["csrftoken"].value})
    assert created.status_code == 201
    assert "sessionid" not in created.cookies
