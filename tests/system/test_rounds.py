"""A round ends exactly once at `ends_at`, decided by the server, with two daphne processes on
PostgreSQL and the spawner all racing to end it."""

import json
import subprocess
import uuid
from datetime import datetime

import pytest

from tests.support import harness, nodes
from tests.support.harness import player

pytestmark = pytest.mark.timeout(120)

ROUND_SECONDS = 15  # the shortest round there is


@pytest.fixture
def spawner(game_env, tmp_path):
    """`spawn_virus --all-rooms` in a loop, as `make run` and compose run it."""
    log_path = tmp_path / "spawner.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [harness.PYTHON, "manage.py", "spawn_virus", "--all-rooms", "--count", "1", "--every", "30"],
            cwd=harness.ROOT,
            env=game_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield log_path
    process.terminate()
    process.wait(10)


def round_over(number: int):
    return lambda m: m["type"] == "round" and m["round"]["state"] == "over" and m["round"]["number"] == number


async def squash(client, count: int) -> None:
    """Kill `count` viruses as they appear (one another player got first does not count)."""
    done = 0
    while done < count:
        created = await client.until(lambda m: m["type"] == "virus.created")
        answer = await client.act({"type": "kill", "id": created["virus"]["id"], "ref": uuid.uuid4().hex})
        done += answer.get("status") == 204


def fresh_round_board(node, code: str, number: int) -> dict:
    """The round's board as a fresh query in another process reads it."""
    script = (
        "import json; from django.conf import settings; from viruses import selectors; "
        "from viruses.models import Round; "
        f"r = Round.objects.get(room__code={code!r}, number={number}); "
        "print(json.dumps(selectors.round_board(r, settings.VIRUS_ROOM_MAX_PLAYERS)))"
    )
    return json.loads(node.manage("shell", "-c", script).stdout.splitlines()[-1])


async def test_a_round_ends_once_at_ends_at_on_two_nodes_with_the_spawner_and_its_board_is_final(
    start_node, spawner
):
    nodes.require_postgres()
    a, b = start_node(), start_node()
    host_api = a.api()
    code = host_api.client.post("/api/rooms/", json={}, headers=host_api.headers()).json()["code"]
    apis = [host_api, a.api(), b.api(), b.api()]
    path = f"/ws/rooms/{code}/"
    async with (
        player(a, api=apis[0], path=path) as host,
        player(a, api=apis[1], path=path) as carol,
        player(b, api=apis[2], path=path) as bob,
        player(b, api=apis[3], path=path) as dave,
    ):
        everyone = [host, carol, bob, dave]
        await host.until(lambda m: m["type"] == "presence" and m["online"] == 4)
        started = host_api.client.post(
            f"/api/rooms/{code}/round/", json={"seconds": ROUND_SECONDS}, headers=host_api.headers()
        )
        assert started.status_code == 201, started.text
        ends_at = datetime.fromisoformat(started.json()["ends_at"])
        for client in everyone:
            await client.until(lambda m: m["type"] == "round" and m["round"]["state"] == "running")
        await squash(bob, 3)  # players on both nodes score while it runs
        await squash(carol, 1)

        overs = [await client.until(round_over(1), timeout=ROUND_SECONDS + 10) for client in everyone]
        received = datetime.now().astimezone()
        # A fence: one more change reaches every socket; no second "over" came before it.
        fence = host_api.client.post(f"/api/rooms/{code}/viruses/", headers=host_api.headers()).json()
        for client in everyone:
            await client.until(lambda m: m["type"] == "virus.created" and m["virus"]["id"] == fence["id"])
            assert [m for m in client.messages if round_over(1)(m)] == [overs[0]]

    ended_at = datetime.fromisoformat(overs[0]["now"])  # the server's clock as it announced the end
    assert ends_at <= ended_at <= received
    assert (ended_at - ends_at).total_seconds() < 5, "the server, not a later action, ends the round"
    board = overs[0]["board"]
    assert [(e["kills"]) for e in board["top"]] == [3, 1] and board["scope"] == "round"
    assert board == fresh_round_board(a, code, 1)
    logs = [a.read_log(), b.read_log(), spawner.read_text()]
    assert sum(log.count("event=round.over") for log in logs) == 1, "exactly one trigger ended it"
