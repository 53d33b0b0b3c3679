"""A school behind one address (NAT), with the default limits, on a real daphne and behind the
deploy kit's nginx: every pupil loads the page and plays, and one pupil flooding is cut alone."""

import asyncio
import json

import httpx
import pytest

from tests.support import harness, nodes
from tests.support.delivery import Player, raise_open_files_limit, wait_for
from viruses.live.consumers import flood_limit

pytestmark = pytest.mark.timeout(240)

SCHOOL = "127.0.0.77"  # one loopback address of its own: every pupil's connections come from it
PUPILS = 60
# The settings' defaults, which the suite's environment turns off for other tests.
DEFAULTS = {"VIRUS_RATE_LIMIT": "180", "VIRUS_SNAPSHOT_RATE": "2", "VIRUS_ABUSE_PENALTY": "1"}


async def page_load(api: harness.Api) -> int:
    """GET / as a browser reloading the page: its status, 0 when the connection failed."""
    try:
        return (await api.client.get("/")).status_code
    except httpx.TransportError:
        return 0


async def join(server, index: int) -> Player | str:
    """A pupil's first visit (the page, then its socket with the page's cookie); why not, if not."""
    api = harness.Api(server.url, asynchronous=True, connections=2, local_address=SCHOOL)
    try:
        await api.start()
        return await Player(server, name=f"pupil-{index}", local_addr=SCHOOL, api=api).start(timeout=30)
    except (httpx.HTTPError, TimeoutError) as exc:
        await api.close()
        return f"{type(exc).__name__}: {exc}"


async def play(pupil: Player) -> list[tuple[int, str]]:
    """Create a virus and kill it, as the page does; each answer's status and path."""
    status, virus, path = await pupil.act({"type": "create"})
    answers = [(status, path)]
    if status == 201:
        status, _, path = await pupil.act({"type": "kill", "id": virus["id"]})
        answers.append((status, path))
    return answers


async def a_school_plays_and_its_flooder_is_cut_alone(server, log) -> dict:
    raise_open_files_limit()
    joined = await asyncio.gather(*(join(server, i) for i in range(PUPILS)))
    pupils = [p for p in joined if isinstance(p, Player)]
    try:
        refused = [p for p in joined if not isinstance(p, Player)]
        assert not refused, f"{len(pupils)} of {PUPILS} joined; refused: {refused[:3]}"
        played = await asyncio.gather(*(play(p) for p in pupils))
        assert all(a == [(201, "socket"), (204, "socket")] for a in played), played

        flooder, others = pupils[0], pupils[1:]
        flooder_id = (await flooder.api.get("/api/me/")).json()["id"]
        for _ in range(flood_limit() + 1):
            await flooder.ws.send(json.dumps({"type": "hello"}))  # each answered with an error

        async def cut() -> bool:
            return 1008 in flooder.close_codes

        await wait_for(cut, 30, "the flooder closed with 1008")
        played = await asyncio.gather(*(play(p) for p in others))
        loads = await asyncio.gather(*(page_load(p.api) for p in pupils))
        assert all(a == [(201, "socket"), (204, "socket")] for a in played), played
        assert loads == [200] * PUPILS, loads
        assert all(p.close_codes == [] for p in others), [p.close_codes for p in others if p.close_codes]
        penalties = [line for line in log().splitlines() if "event=ws.penalty " in line]
        assert len(penalties) == 1 and f"client={SCHOOL} " in penalties[0], penalties
        assert f"player={flooder_id}" in penalties[0]
        assert any("403" in refusal for refusal in flooder.refusals), flooder.refusals  # boxed: it alone
        return {"joined": len(pupils), "played": len(others) + 1, "page_loads": loads.count(200)}
    finally:
        for pupil in pupils:
            await pupil.stop()
            await pupil.api.close()


async def test_sixty_pupils_behind_one_address_all_play_and_a_flooder_among_them_is_cut_alone(start_game):
    game = start_game(**DEFAULTS)
    figures = await a_school_plays_and_its_flooder_is_cut_alone(game, game.read_log)
    assert "Traceback" not in game.read_log()
    print(f"one address, bare daphne: {figures}")


async def test_the_same_school_plays_through_the_deploy_kits_nginx(start_node, tmp_path):
    harness.require(nodes.nginx_binary() is not None, "nginx is not installed")
    node = start_node(**DEFAULTS)  # the unit's flags: --proxy-headers
    (tmp_path / "nginx").mkdir()
    proxy = nodes.Nginx(tmp_path / "nginx", [node.port], worker_connections=1024).start()
    try:
        figures = await a_school_plays_and_its_flooder_is_cut_alone(proxy, node.read_log)
    finally:
        proxy.stop()
    assert "Traceback" not in node.read_log()
    print(f"one address, through nginx: {figures}")
