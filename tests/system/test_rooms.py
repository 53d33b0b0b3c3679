"""Rooms over real daphne and Redis: each its own world, over the socket and over HTTP."""

import pytest
import websockets

from tests.support.harness import Api, close_code, player

pytestmark = pytest.mark.timeout(120)


def create_room(api: Api, name: str) -> dict:
    answer = api.client.post("/api/rooms/", json={"name": name}, headers=api.headers())
    assert answer.status_code == 201, answer.text
    return answer.json()


def is_created(message):
    return message["type"] == "virus.created"


async def test_a_change_in_one_room_never_reaches_another_room_or_the_public_one(game):
    host = Api(game.url).start()
    a, b = create_room(host, "Room A"), create_room(host, "Room B")
    async with (
        player(game, api=host, path=f"/ws/rooms/{a['code']}/") as in_a,
        player(game, path=f"/ws/rooms/{b['code'].lower()}/") as in_b,
        player(game) as public,
    ):
        assert in_a.messages[0]["room"]["code"] == a["code"] and "room" not in public.messages[0]
        # Each world counts its own sockets: one each.
        assert [c.messages[0]["online"] for c in (in_a, in_b, public)] == [1, 1, 1]
        answer = await in_a.act({"type": "create", "ref": "a1"})
        assert answer["status"] == 201
        created = await in_a.seen(is_created)
        assert (created["seq"], created["virus"]["id"]) == (1, answer["virus"]["id"])
        over_http = host.client.post(f"/api/rooms/{a['code']}/viruses/", headers=host.headers()).json()
        assert (await in_a.until(is_created))["virus"]["id"] == over_http["id"]
        # Fences: B's and the public world's next change is their own, numbered from 1.
        fence_b = host.client.post(f"/api/rooms/{b['code']}/viruses/", headers=host.headers()).json()
        fence_public = host.create().json()
        for client, fence in ((in_b, fence_b), (public, fence_public)):
            created = await client.until(is_created)
            assert (created["seq"], created["virus"]["id"]) == (1, fence["id"])
            assert not [m for m in client.messages if m["type"] == "virus.killed"]
        # Over HTTP too: B and the public world list only their own, and cannot kill A's.
        assert [v["id"] for v in host.get(f"/api/rooms/{b['code']}/viruses/").json()["viruses"]] == [
            fence_b["id"]
        ]
        assert [v["id"] for v in host.list()["viruses"]] == [fence_public["id"]]
        for path in (
            f"/api/viruses/{over_http['id']}/",
            f"/api/rooms/{b['code']}/viruses/{over_http['id']}/",
        ):
            assert host.client.delete(path, headers=host.headers()).status_code == 404
        await public.send({"type": "kill", "id": over_http["id"], "ref": "p1"})
        assert (await public.until(lambda m: m.get("ref") == "p1"))["status"] == 404


async def test_a_room_refuses_unknown_codes_4404_full_4409_and_strangers_when_locked_4403(start_game):
    game = start_game(VIRUS_ROOM_MAX_PLAYERS="1")
    host = Api(game.url).start()
    room = create_room(host, "Tiny")
    base = "ws" + game.url.removeprefix("http")
    async with websockets.connect(f"{base}/ws/rooms/ZZZZZ/", origin=game.url) as ws:
        assert await close_code(ws) == 4404
    async with (
        player(game, api=host, path=f"/ws/rooms/{room['code']}/"),
        websockets.connect(f"{base}/ws/rooms/{room['code']}/", origin=game.url) as ws,
    ):
        assert await close_code(ws) == 4409
    locked = host.client.patch(f"/api/rooms/{room['code']}/", json={"locked": True}, headers=host.headers())
    assert locked.json()["locked"] is True
    stranger = Api(game.url).start()
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in stranger.client.cookies.items())}
    async with websockets.connect(
        f"{base}/ws/rooms/{room['code']}/", origin=game.url, additional_headers=cookie
    ) as ws:
        assert await close_code(ws) == 4403
    async with player(game, api=host, path=f"/ws/rooms/{room['code']}/") as back:
        assert back.messages[0]["room"]["locked"] is True
    assert stranger.get(f"/r/{room['code']}/").status_code == 200  # the page loads, and says why
    assert stranger.get("/r/ZZZZZ/").status_code == 404
