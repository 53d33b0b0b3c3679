"""Fair play on real daphne and Redis: two scripted bots beside players who click at human pace.

The farmer creates viruses and kills them; the sniper kills every virus the moment its push
arrives; three humans kill spawner and other players' viruses 200-600 ms after each push.
The rate limit is on, as in production, so nobody can take every virus by speed alone. They
play in the public world (its board) and in a room's timed round (its podium).
"""

import asyncio
import contextlib
import json
import random
import signal
import time

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.support import harness
from tests.support.harness import Api
from tools.gameclient import decode

GAME_SECONDS = 20
ROUND_SECONDS = 15  # the shortest round; it starts once every socket is open
METRICS_TOKEN = "fair-play-metrics-token-0123456789"
HUMANS = 3


class Player:
    """One browser: its cookie (an `Api`) and its socket, read by one task, acting by `ref`."""

    def __init__(self, game, api: Api):
        self.game, self.api = game, api
        self.id = None  # the player's id, from /api/me/
        self.ready = asyncio.Event()  # the socket is open, its snapshot read
        self.refs = 0
        self.answers: dict[str, asyncio.Future] = {}
        self.statuses: list[int] = []
        self.over = None  # the room's "round" message that ended the round

    async def play(self, on_push, seconds: float, room: str | None = None) -> None:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.api.client.cookies.items())}
        url = (
            self.game.ws_url
            if room is None
            else "ws" + self.game.url.removeprefix("http") + f"/ws/rooms/{room}/"
        )
        async with websockets.connect(
            url, origin=self.game.url, max_size=None, additional_headers=headers
        ) as self.ws:
            assert decode(await self.ws.recv())[0]["type"] == "snapshot"
            self.ready.set()
            reader = asyncio.create_task(self._read(on_push))
            await asyncio.sleep(seconds)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def act(self, message: dict) -> dict:
        self.refs += 1
        ref = f"r{self.refs}"
        answered = self.answers[ref] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({**message, "ref": ref}))
        try:
            answer = await asyncio.wait_for(answered, 10)
        finally:
            del self.answers[ref]
        self.statuses.append(answer.get("status"))
        return answer

    async def _read(self, on_push) -> None:
        async for frame in self.ws:
            for message in decode(frame):
                if message["type"] in ("ack", "error") and message.get("ref") in self.answers:
                    self.answers[message["ref"]].set_result(message)
                elif message["type"] == "virus.created":
                    on_push(message)
                elif message["type"] == "round" and message["round"]["state"] == "over":
                    self.over = message


@pytest.mark.parametrize("world", ["public", "round"])
async def test_neither_a_farming_bot_nor_an_instant_killer_makes_the_top_three(start_game, world):
    # A dish that never fills: a refused create (409) would keep the farmer from playing.
    game = start_game(
        VIRUS_MIN_REACTION_MS="150", VIRUS_RATE_LIMIT="180", VIRUS_RATE_BURST="20", VIRUS_MAX_ALIVE="500"
    )
    apis = [await Api(game.url, asynchronous=True).start() for _ in range(2 + HUMANS)]
    everyone = [Player(game, api) for api in apis]
    for player in everyone:
        player.id = (await player.api.get("/api/me/")).json()["id"]
    farmer, sniper, *humans = everyone
    host = humans[0]
    room = None
    if world == "round":
        answer = await host.api.client.post("/api/rooms/", json={"name": "Bots"}, headers=host.api.headers())
        room = answer.json()["code"]
    rng = random.Random(25)
    tasks = set()

    async def quietly(coroutine) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):  # the game ended meanwhile
            await coroutine

    def later(coroutine) -> None:
        task = asyncio.create_task(quietly(coroutine))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def farm() -> None:
        await farmer.ready.wait()
        deadline = time.monotonic() + GAME_SECONDS - 1
        while time.monotonic() < deadline:
            created = await farmer.act({"type": "create"})
            if created.get("status") == 201:
                await farmer.act({"type": "kill", "id": created["virus"]["id"]})
            else:  # 429: wait for a token as a script would
                await asyncio.sleep(0.3)

    def snipe(push: dict) -> None:
        # Not the farmer's own: which of the two kills it first is a race the test cannot decide.
        if (push.get("by") or {}).get("id") != farmer.id:
            later(sniper.act({"type": "kill", "id": push["virus"]["id"]}))

    def human(me: Player):
        async def click(virus_id: str, delay: float) -> None:
            await asyncio.sleep(delay)
            await me.act({"type": "kill", "id": virus_id})

        def on_push(push: dict) -> None:
            if (push.get("by") or {}).get(
                "id"
            ) != me.id and rng.random() < 0.4:  # a person goes for some viruses, not all
                later(click(push["virus"]["id"], rng.uniform(0.2, 0.6)))

        return on_push

    async def start_round() -> None:
        for player in everyone:
            await player.ready.wait()
        assert (await host.act({"type": "round.start", "seconds": ROUND_SECONDS}))["status"] == 201

    spawn = ("--count", "6", "--spread", "1", "--every", "1") + (("--room", room) if room else ())
    spawner = await asyncio.create_subprocess_exec(
        *(harness.PYTHON, "manage.py", "spawn_virus", *spawn),
        cwd=harness.ROOT,
        env=game.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.gather(
            farmer.play(lambda push: None, GAME_SECONDS, room),
            sniper.play(snipe, GAME_SECONDS, room),
            *(person.play(human(person), GAME_SECONDS, room) for person in humans),
            farm(),
            *([start_round()] if room else []),
        )
    finally:
        spawner.send_signal(signal.SIGINT)
        _, errors = await asyncio.wait_for(spawner.communicate(), 10)
        for task in tasks:
            task.cancel()
        board = (await apis[-1].get("/api/leaderboard/")).json()
        for api in apis:
            await api.close()

    assert b"Traceback" not in errors, errors.decode()
    if room:  # the podium: the first three of the round's final board, as every page got it
        assert all(player.over == host.over for player in everyone) and host.over is not None
        board = host.over["board"]
    top = [entry["id"] for entry in board["top"][:3]]
    assert len(top) == 3 and set(top) <= {person.id for person in humans}, top
    assert farmer.statuses.count(204) >= 3 and sniper.statuses.count(204) >= 20  # both really played

    stats = json.loads(
        game.manage(
            "shell",
            "-c",
            "import json; from viruses.models import Player; print(json.dumps({str(p.pk): [p.kills_scored, "
            "p.kills_refused_own, p.kills_refused_too_fast] for p in Player.objects.all()}))",
        ).stdout.splitlines()[-1]
    )
    farmed, sniped = stats[farmer.id], stats[sniper.id]
    assert farmed == [0, farmer.statuses.count(204), 0]  # every kill of its own: refused, none scored
    assert sniped[2] > 0 and sniped[2] > sniped[0], sniped  # mostly refused as too fast
    for person in humans:
        assert stats[person.id][0] > 0 and stats[person.id][1:] == [0, 0], stats[person.id]


async def test_over_http_an_own_and_a_too_fast_kill_answer_204_kill_for_everyone_and_score_nothing(
    start_game,
):
    game = start_game(VIRUS_MIN_REACTION_MS="150", METRICS_TOKEN=METRICS_TOKEN)
    async with (
        Api(game.url, asynchronous=True) as alice,
        Api(game.url, asynchronous=True) as bob,
        harness.player(game) as observer,
    ):
        killed = {}

        async def kill(api: Api, virus_id: str) -> None:
            assert (await api.kill(virus_id)).status_code == 204
            message = await observer.until(lambda m: m["type"] == "virus.killed" and m["id"] == virus_id)
            killed[virus_id] = message["scored"]

        own = (await alice.create()).json()["id"]
        await asyncio.sleep(0.3)  # slow enough: only the creator rule refuses it
        await kill(alice, own)
        fast = (await bob.create()).json()["id"]
        await kill(alice, fast)  # at once: faster than anyone sees it
        fair = (await bob.create()).json()["id"]
        await asyncio.sleep(0.3)
        await kill(alice, fair)

        assert killed == {own: False, fast: False, fair: True}
        assert (await alice.list())["viruses"] == []  # all three are gone, for everyone
        assert (await alice.get("/api/me/")).json()["kills"] == 1
        metrics = await alice.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        refused = {
            sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
            if sample.name == "virusgame_kills_refused_total"
        }
        assert refused == {"own": 1, "too_fast": 1}
