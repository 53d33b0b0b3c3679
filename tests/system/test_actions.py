"""Actions over the WebSocket (viruses/actions.py through the consumer), on a real daphne
with real WebSocket clients: answers to the sender, pushes to everyone, the HTTP API's rules."""

import asyncio
import uuid

import pytest

from tests.support.harness import player
from viruses.messages import REF_CHARS

pytestmark = pytest.mark.timeout(120)


def change(kind: str, **fields):
    """A predicate for the push of one change."""
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items())


async def test_create_answers_the_sender_and_pushes_the_virus_to_everyone(game):
    async with player(game) as alice, player(game) as bob:
        answer = await alice.act({"type": "create", "ref": "add-1"})
        assert answer["type"] == "ack" and answer["ref"] == "add-1" and answer["status"] == 201
        virus = answer["virus"]
        assert set(virus) == {"id", "kind", "x", "y", "created_at"}
        for client in (alice, bob):  # the sender too: its page draws only from the push
            pushed = await client.seen(change("virus.created"))
            assert pushed["virus"] == virus
        assert [v["id"] for v in game.api().list()["viruses"]] == [virus["id"]]
        assert not [m for m in bob.messages if m["type"] == "ack"]  # the answer is the sender's alone


async def test_kill_answers_204_and_pushes_the_kill_to_everyone(game):
    virus = game.api().create().json()
    async with player(game) as alice, player(game) as bob:
        answer = await alice.act({"type": "kill", "id": virus["id"], "ref": "k"})
        assert answer == {"type": "ack", "ref": "k", "status": 204}
        for client in (alice, bob):
            await client.seen(change("virus.killed", id=virus["id"]))
            assert client.viruses == {}
        assert game.api().list()["viruses"] == []


async def test_two_racing_kills_get_one_ack_one_404_and_one_push(game):
    api = game.api()
    virus = api.create().json()
    async with player(game) as alice, player(game) as bob, player(game) as carol:
        kill = {"type": "kill", "id": virus["id"]}
        answers = await asyncio.gather(alice.act({**kill, "ref": "a"}), bob.act({**kill, "ref": "b"}))
        assert sorted(a["status"] for a in answers) == [204, 404]
        lost = next(a for a in answers if a["status"] == 404)
        assert lost["type"] == "error" and "no such virus" in lost["error"]
        killed = await carol.until(change("virus.killed", id=virus["id"]))
        # The next change is the very next seq: no second push of the same kill in between.
        marker = api.create().json()
        after = await carol.until(lambda m: m["type"].startswith("virus."))
        assert after["type"] == "virus.created" and after["virus"]["id"] == marker["id"]
        assert after["seq"] == killed["seq"] + 1


async def test_create_at_the_alive_cap_answers_409_and_creates_nothing(start_game):
    server = start_game(VIRUS_MAX_ALIVE="1")
    async with player(server) as alice:
        assert (await alice.act({"type": "create", "ref": "1"}))["status"] == 201
        full = await alice.act({"type": "create", "ref": "2"})
        assert (full["type"], full["ref"], full["status"]) == ("error", "2", 409)
        assert "full" in full["error"]
    assert len(server.api().list()["viruses"]) == 1


async def test_actions_take_from_the_http_rate_limit_bucket(start_game):
    server = start_game(VIRUS_RATE_LIMIT="1", VIRUS_RATE_BURST="3")
    api = server.api()
    assert api.create().status_code == 201
    async with player(server, api=api) as alice:  # the same player over HTTP and the socket: one bucket
        assert (await alice.act({"type": "create", "ref": "1"}))["status"] == 201
        assert api.create().status_code == 201  # the third and last token
        limited = await alice.act({"type": "create", "ref": "2"})
        assert (limited["type"], limited["ref"], limited["status"]) == ("error", "2", 429)
        assert "too many" in limited["error"]
        assert api.create().status_code == 429
        virus_id = api.list()["viruses"][0]["id"]
        kill = await alice.act({"type": "kill", "id": virus_id, "ref": "3"})
        assert kill["status"] == 429  # kills count too, as over HTTP
    assert len(api.list()["viruses"]) == 3
    assert "event=ws.rate_limited" in server.read_log()


LONGEST_REF = "r" * REF_CHARS


@pytest.mark.parametrize(
    ("sent", "ref", "says"),
    [
        ({"type": "create"}, None, '"ref"'),
        ({"type": "create", "ref": 7}, None, '"ref"'),
        ({"type": "create", "ref": "r" * (REF_CHARS + 1)}, None, '"ref"'),
        ({"type": "kill", "ref": "k1"}, "k1", '"id"'),
        ({"type": "kill", "id": "nope", "ref": "k2"}, "k2", '"id"'),
        ({"type": "kill", "id": ["x"] * 1000, "ref": LONGEST_REF}, LONGEST_REF, '"id"'),
    ],
)
async def test_malformed_actions_are_answered_400_and_the_socket_stays_open(game, sent, ref, says):
    async with player(game) as alice:
        await alice.send(sent)
        error = await alice.until(lambda m: m["type"] == "error")
        assert error.get("ref") == ref  # echoed only when valid: never more than REF_CHARS
        assert error["status"] == 400 and says in error["error"]
        assert len(error["error"]) < 200
        assert (await alice.act({"type": "create", "ref": "after"}))["status"] == 201
    assert "Traceback" not in game.read_log()


async def test_killing_an_unknown_virus_answers_404(game):
    async with player(game) as alice:
        answer = await alice.act({"type": "kill", "id": str(uuid.uuid4()), "ref": "x"})
        assert (answer["type"], answer["status"]) == ("error", 404)


async def test_a_player_clicking_at_the_rate_limit_is_not_cut_off_by_the_flood_limit(start_game):
    # The defaults: 20 clicks at once, then 3 a second. Twice that (sent without waiting for
    # answers) is more messages in 10 s than any other kind of message may take.
    server = start_game(VIRUS_RATE_LIMIT="180", VIRUS_RATE_BURST="20", VIRUS_MAX_ALIVE="1000")
    async with player(server) as alice:
        burst = [{"type": "create", "ref": f"b{i}"} for i in range(20)]
        for message in burst:
            await alice.send(message)
        answers = [await alice.until(lambda m, ref=m["ref"]: m.get("ref") == ref) for m in burst]
        for i in range(10):  # then a click every 0.4 s, a little under the sustained rate
            await asyncio.sleep(0.4)
            answers.append(await alice.act({"type": "create", "ref": f"s{i}"}))
        assert [a["status"] for a in answers] == [201] * 30
        await alice.seen(change("virus.created", seq=30))
    assert "reason=flood" not in server.read_log()


async def test_socket_actions_see_what_other_processes_committed_between_them(game):
    # The sockets' SQLite connection stays open between actions (settings: CONN_MAX_AGE): it
    # must still read the database as it stands, not as it was at its previous action.
    async with player(game) as alice:
        first = await alice.act({"type": "create", "ref": "c"})
        game.manage("spawn_virus")  # cron, another process
        mine = first["virus"]["id"]
        spawned = (await alice.seen(lambda m: m["type"] == "virus.created" and m["virus"]["id"] != mine))[
            "virus"
        ]
        answer = await alice.act({"type": "kill", "id": spawned["id"], "ref": "k1"})
        assert answer["status"] == 204
        game.api().kill(mine)  # HTTP, another thread and connection
        answer = await alice.act({"type": "kill", "id": mine, "ref": "k2"})
        assert answer["status"] == 404
        assert game.api().list()["viruses"] == []


async def test_an_action_retried_with_its_idempotency_key_is_done_once_over_the_socket_and_http(game):
    api = game.api()  # one browser: its page's socket and its HTTP requests are one player's
    async with player(game, api=api) as alice, player(game, api=api) as bob:
        create = {"type": "create", "idempotency_key": "page-1:c1"}
        first = await alice.act({**create, "ref": "1"})
        again = await bob.act({**create, "ref": "2"})  # its next socket, after a restart
        assert first["status"] == again["status"] == 201 and again["ref"] == "2"
        assert again["virus"] == first["virus"]
        # The page's retry over HTTP while its socket is down: the same answer again.
        retried = api.client.post("/api/viruses/", headers={**api.headers(), "Idempotency-Key": "page-1:c1"})
        assert retried.status_code == 201 and retried.json() == first["virus"]
        assert [v["id"] for v in api.list()["viruses"]] == [first["virus"]["id"]]

        kill = {"type": "kill", "id": first["virus"]["id"], "idempotency_key": "page-1:k1"}
        assert (await alice.act({**kill, "ref": "3"}))["status"] == 204
        assert (await alice.act({**kill, "ref": "4"}))["status"] == 204  # the same kill: the same answer
        url = f"/api/viruses/{first['virus']['id']}/"
        assert (
            api.client.delete(url, headers={**api.headers(), "Idempotency-Key": "page-1:k1"}).status_code
            == 204
        )
        # Without the key, or with another one, a kill of a dead virus is what it always was.
        assert (await alice.act({**kill, "idempotency_key": "page-1:k2", "ref": "5"}))["status"] == 404
        assert api.kill(first["virus"]["id"]).status_code == 404
        await bob.seen(change("virus.killed", id=first["virus"]["id"]))
        changes = [m["type"] for m in bob.messages if m["type"] in ("virus.created", "virus.killed")]
        assert changes == ["virus.created", "virus.killed"]  # one push each: nothing applied twice


async def test_a_refused_action_is_not_remembered_and_a_bad_key_is_a_400(game):
    api = game.api()
    async with player(game) as alice:
        kill = {"type": "kill", "id": str(uuid.uuid4()), "idempotency_key": "k"}
        assert (await alice.act({**kill, "ref": "1"}))["status"] == 404
        assert (await alice.act({**kill, "ref": "2"}))["status"] == 404  # asked again, not replayed
        bad = await alice.act({"type": "create", "ref": "3", "idempotency_key": "x" * (REF_CHARS + 1)})
        assert bad["type"] == "error" and bad["status"] == 400 and bad["ref"] == "3"
        assert (await alice.act({"type": "create", "ref": "4", "idempotency_key": 7}))["status"] == 400
    response = api.client.post("/api/viruses/", headers={**api.headers(), "Idempotency-Key": "x" * 65})
    assert response.status_code == 400 and "idempotency key" in response.json()["error"]
    assert api.list()["viruses"] == []


async def test_a_key_sent_again_with_another_action_or_virus_is_a_422_and_changes_nothing(game):
    api = game.api()
    async with player(game, api=api) as alice:
        created = await alice.act({"type": "create", "ref": "1", "idempotency_key": "page-1:a1"})
        virus = created["virus"]["id"]
        reused = await alice.act({"type": "kill", "id": virus, "ref": "2", "idempotency_key": "page-1:a1"})
        assert reused["type"] == "error" and reused["status"] == 422 and reused["ref"] == "2"
        assert "idempotency key" in reused["error"]
        answer = api.client.delete(
            f"/api/viruses/{virus}/", headers={**api.headers(), "Idempotency-Key": "page-1:a1"}
        )
        assert answer.status_code == 422 and "idempotency key" in answer.json()["error"]
        assert [v["id"] for v in api.list()["viruses"]] == [virus]  # the virus lives: no false success

        other = api.create().json()["id"]
        kill = {"type": "kill", "id": virus, "ref": "3", "idempotency_key": "page-1:k1"}
        assert (await alice.act(kill))["status"] == 204
        wrong = await alice.act({**kill, "id": other, "ref": "4"})  # the same key, another virus
        assert wrong["status"] == 422
        create = api.client.post("/api/viruses/", headers={**api.headers(), "Idempotency-Key": "page-1:k1"})
        assert create.status_code == 422
        assert [v["id"] for v in api.list()["viruses"]] == [other]
        # Fence: one more change, and the only pushes were the two creates and the one kill.
        fence = api.create().json()["id"]
        await alice.seen(change("virus.created", virus={**api.list()["viruses"][-1]}))
        changes = [
            (m["type"], m.get("id") or m["virus"]["id"])
            for m in alice.messages
            if m["type"].startswith("virus.")
        ]
        assert changes == [
            ("virus.created", virus),
            ("virus.created", other),
            ("virus.killed", virus),
            ("virus.created", fence),
        ]


async def test_sockets_without_a_player_cookie_do_not_share_keys(game):
    async with player(game) as first, player(game) as second:  # one address, no cookie
        create = {"type": "create", "idempotency_key": "script:c1"}
        one = await first.act({**create, "ref": "1"})
        two = await second.act({**create, "ref": "1"})
        assert one["status"] == two["status"] == 201
        assert one["virus"]["id"] != two["virus"]["id"]  # each got its own virus
        again = await first.act({**create, "ref": "2"})
        assert again["virus"] == one["virus"]  # a retry on its own socket is still done once
    assert len(game.api().list()["viruses"]) == 2
