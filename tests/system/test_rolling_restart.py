"""A rolling restart nobody notices (docs/production.md, section 4): two daphne nodes with the systemd unit's
flags behind the deploy kit's nginx, PostgreSQL, Redis, 200 page-like players (20 of them
creating and killing through the page's path), node A restarted, then node B."""

import asyncio
import json
import re
import signal
import time

import httpx
import pytest
import websockets

from tests.support import harness, nodes
from tests.support.delivery import (
    Player,
    api_state,
    converge,
    db_scalar,
    raise_open_files_limit,
    tracebacks,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

PLAYERS = 200
ACTORS = 20
ADDRESSES = 50  # players come from 127.0.0.2 .. 127.0.0.51, four per address (nginx's per-address limits)
BOUND = 5.0  # s: the bound promised for convergence and the online count
PROBE_ADDRESS = "127.0.0.250"  # the rotation probe's address, to find its requests in a node's log


def stop_timeout() -> float:
    """The unit's TimeoutStopSec: how long systemd lets a node take before SIGKILL."""
    return float(re.search(r"^TimeoutStopSec=(\d+)", nodes.UNIT.read_text(), re.MULTILINE).group(1))


class Actor:
    """A player creating a virus and killing it, again and again, as a keen person does."""

    def __init__(self, player: Player):
        self.player = player
        self.outcomes: list[tuple[str, int, str]] = []  # (action, final status, "socket" | "http")
        self.created: list[str] = []  # ids of viruses answered 201
        self.paused = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            if self.paused.is_set():
                await asyncio.sleep(0.05)
                continue
            status, virus, via = await self.player.act({"type": "create"})
            self.outcomes.append(("create", status, via))
            if status == 201:
                self.created.append(virus["id"])
                status, _, via = await self.player.act({"type": "kill", "id": virus["id"]})
                self.outcomes.append(("kill", status, via))
            await asyncio.sleep(0.5 + self.player.random.random())  # a person's pace, not a script's


async def pause(actors: list[Actor]) -> None:
    """Let each actor finish what it is doing, then stop acting."""
    for actor in actors:
        actor.paused.set()
    done = [a for a in actors if a.outcomes]
    counts = [len(a.outcomes) for a in done]
    await asyncio.sleep(0.1)
    deadline = time.monotonic() + 30
    while any(a.player.answers for a in done) or [len(a.outcomes) for a in done] != counts:
        assert time.monotonic() < deadline, "an action got no final answer within 30 s"
        counts = [len(a.outcomes) for a in done]
        await asyncio.sleep(0.3)


def exit_seconds(node: nodes.Node, signalled: float) -> float:
    node.process.wait(stop_timeout())
    return time.monotonic() - signalled


def caught_up_with(player: Player, seq: int) -> bool:
    on_socket = player.ws is not None and player.closed_at is None  # its snapshot came
    return on_socket and player.seq is not None and player.seq >= seq and not player.feed.behind


def online_rows(env) -> int:
    return db_scalar(env, "SELECT count(*) FROM viruses_connection")


async def restart(node: nodes.Node, env: dict, proxy: nodes.Nginx, players: list[Player], actors, tmp_path):
    """SIGTERM `node`, start its replacement on the same port; return it and the figures."""
    seq_before = (await asyncio.to_thread(api_state, node))["seq"]
    on_node = await asyncio.to_thread(
        db_scalar, env, f"SELECT count(*) FROM viruses_connection WHERE server LIKE '%:{node.process.pid}:%'"
    )
    closes = sum(p.close_codes.count(1012) for p in players)
    started = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    exit_wait = asyncio.create_task(asyncio.to_thread(exit_seconds, node, started))

    def caught_up() -> bool:
        """The node's players were told to go and are back, each on a new socket, with every
        change committed before the restart."""
        told = sum(p.close_codes.count(1012) for p in players) - closes
        behind = [
            (p.name, p.ws is not None, p.closed_at, p.seq, p.feed.behind, p.close_codes[-2:], p.refusals[-2:])
            for p in players
            if not caught_up_with(p, seq_before)
        ]
        online_seen.update(told=told, on_node=on_node, behind=behind[:5], n_behind=len(behind))
        # More than on_node: a handshake under way when the drain began is accepted, then told.
        return told >= on_node and not behind

    back = await until(caught_up, started, "caught up")
    online = await until(
        lambda: online_exact(env, players), started, "online count exact in the database and every page"
    )
    exited = await exit_wait
    log = node.read_log()
    replacement = nodes.Node(env, tmp_path / f"{node.log_path.stem}-new.log", port=node.port).launch()
    await asyncio.to_thread(replacement.wait_ready)
    await wait_in_rotation(proxy, replacement)
    await pause(actors)
    truth, converged = await converge(players, replacement, timeout=BOUND)
    for actor in actors:
        actor.paused.clear()
    return (
        replacement,
        log,
        {
            "exit_s": exited,
            "caught_up_s": back,
            "online_exact_s": online,
            "converged_after_pause_s": converged,
            "on_node": on_node,
            "seq": truth["seq"],
        },
    )


async def until(predicate, started: float, what: str, bound: float = BOUND) -> float:
    """Seconds from `started` until `predicate()` (sync or async) holds; fail past `bound`."""
    return await wait_for(predicate, bound, what, interval=0.05, started=started, detail=lambda: online_seen)


async def online_exact(env, players: list[Player]) -> bool:
    seen = sorted({p.online for p in players})
    rows = await asyncio.to_thread(online_rows, env)
    online_seen.update(pages=seen, rows=rows)  # for the failure message
    return seen == [PLAYERS] and rows == PLAYERS and all(p.ws is not None for p in players)


online_seen: dict = {}


async def wait_in_rotation(proxy: nodes.Nginx, node: nodes.Node) -> None:
    """Until nginx sends requests to `node` again (after its fail_timeout for the refused connects).

    The procedure's step between two nodes (docs/production.md): restarting the other node
    before nginx uses this one again would leave nginx no server for a moment.
    """
    transport = httpx.AsyncHTTPTransport(local_address=PROBE_ADDRESS)
    async with httpx.AsyncClient(base_url=proxy.url, transport=transport, timeout=5) as probe:
        deadline = time.monotonic() + 15
        while f"\n{PROBE_ADDRESS}:" not in node.read_log():
            assert time.monotonic() < deadline, "nginx never sent a request to the restarted node"
            await probe.get("/healthz")
            await asyncio.sleep(0.2)


async def test_a_node_told_to_stop_tells_its_sockets_to_go_and_leaves_no_player_online(game):
    """The drain on one node (any database): 1012 "service restart", rows gone, a prompt exit."""
    sockets = [await websockets.connect(game.ws_url, origin=game.url) for _ in range(3)]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "snapshot"
    assert await asyncio.to_thread(online_rows, game.env) == 3
    started = time.monotonic()
    game.process.send_signal(signal.SIGTERM)
    for ws in sockets:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), BOUND)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, "service restart")
    assert await asyncio.to_thread(exit_seconds, game, started) < stop_timeout()
    assert game.process.returncode == 0
    assert await asyncio.to_thread(online_rows, game.env) == 0
    log = game.read_log()
    assert "event=drain.start sockets=3" in log and "event=drain.done" in log
    assert "Traceback" not in log
    with pytest.raises(OSError):  # nothing listens any more
        await websockets.connect(game.ws_url, origin=game.url, open_timeout=2)


async def test_a_rolling_restart_behind_nginx_goes_unnoticed(game_env, tmp_path):
    harness.require(nodes.nginx_binary() is not None, "nginx is not installed")
    nodes.require_postgres()
    raise_open_files_limit(8192)
    env = {**game_env, "VIRUS_MAX_ALIVE": "1000"}
    a, b = started = nodes.start_nodes(2, env, tmp_path)
    (tmp_path / "nginx").mkdir()
    proxy = nodes.Nginx(tmp_path / "nginx", [a.port, b.port], worker_connections=4096).start()
    players: list[Player] = []
    actors: list[Actor] = []
    try:
        for i in range(PLAYERS):
            address = f"127.0.0.{2 + i % ADDRESSES}"
            api = None
            if i < ACTORS:  # the page's HTTP side: its cookies, CSRF token, and the retries
                api = await harness.Api(proxy.url, asynchronous=True, local_address=address).start()
            players.append(Player(proxy, name=f"p{i}", seed=i, local_addr=address, api=api))
        await asyncio.gather(*(p.start(timeout=60) for p in players))
        actors = [Actor(p) for p in players[:ACTORS]]
        for actor in actors:
            actor.task = asyncio.create_task(actor.run())
        await until(lambda: online_exact(env, players), time.monotonic(), "everyone online", bound=60)
        await asyncio.sleep(2)  # playing

        new_a, log_a, first = await restart(a, env, proxy, players, actors, tmp_path)
        started.append(new_a)
        await asyncio.sleep(1)
        new_b, log_b, second = await restart(b, env, proxy, players, actors, tmp_path)
        started.append(new_b)
        await asyncio.sleep(1)
        await pause(actors)
        truth, _ = await converge(players, new_a, timeout=BOUND)

        outcomes = [o for actor in actors for o in actor.outcomes]
        creates = sum(1 for kind, status, _ in outcomes if (kind, status) == ("create", 201))
        kills = sum(1 for kind, status, _ in outcomes if (kind, status) == ("kill", 204))
        over_http = sum(1 for *_, via in outcomes if via == "http")
        reconnects = [s for p in players for s in p.reconnects]
        figures = {
            "restart A": first,
            "restart B": second,
            "actions": len(outcomes),
            "answered over HTTP after a lost socket answer": over_http,
            "reconnects": len(reconnects),
            "max reconnect s (close to snapshot)": round(max(reconnects), 3),
        }
        print("\nrolling restart:")
        for name, value in figures.items():
            if isinstance(value, dict):
                value = {k: round(v, 2) if isinstance(v, float) else v for k, v in value.items()}
            print(f"  {name}: {value}")

        # Zero actions lost, refused with a 5xx or applied twice: every change committed is
        # one answered success (seq counts commits), each create made a virus of its own.
        assert [o for o in outcomes if o[1] not in (201, 204)] == []
        assert truth["seq"] == creates + kills
        created = [v for actor in actors for v in actor.created]
        assert len(created) == len(set(created)) == creates
        # Nobody needed a reload: every player came back by itself (1012: at once) and the
        # rest of the contract held: a fresh snapshot on each socket, a live socket now.
        assert all(p.ws is not None for p in players)
        assert {code for p in players for code in p.close_codes} <= {1012}
        restarted = [p.close_codes.count(1012) for p in players]
        assert sum(restarted) >= first["on_node"] + second["on_node"]
        assert [p.connects for p in players] == [1 + n for n in restarted]
        for log, figures_of in ((log_a, first), (log_b, second)):
            assert "event=drain.done" in log and "event=drain.timeout" not in log
            assert figures_of["exit_s"] < stop_timeout()
            # `until` samples between other work: what it measured must be within the bound too.
            assert figures_of["caught_up_s"] <= BOUND and figures_of["online_exact_s"] <= BOUND, figures_of
        assert tracebacks(new_a, new_b) == []
        assert "Traceback" not in log_a + log_b
    finally:
        for actor in actors:
            actor.task.cancel()
        await asyncio.gather(*(actor.task for actor in actors), return_exceptions=True)
        # Concurrently and bounded: 200 closing handshakes one after another can take minutes.
        await asyncio.wait_for(asyncio.gather(*(p.stop() for p in players), return_exceptions=True), 30)
        for player in players:
            if player.api:
                await player.api.close()
        proxy.stop()
        for node in started:
            node.stop()
