"""Several nodes: daphne processes sharing one PostgreSQL and one Redis, a real nginx in
front of them, and the spawner's cron line running on every node at once."""

import asyncio
import json
import random
import subprocess

import httpx
import pytest
import websockets

from tests.support import harness, nodes
from tests.support.harness import Client, player

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def cluster(game_env, tmp_path):
    """start(count, **env) -> nodes sharing one database and one Redis, as deployed."""
    started: list[nodes.Node] = []

    def start(count: int = 2, **env) -> list[nodes.Node]:
        nodes.require_postgres()
        started.extend(nodes.start_nodes(count, {**game_env, **env}, tmp_path))
        return started[-count:]

    yield start
    for node in started:
        node.stop()


def created(message) -> bool:
    return message["type"] == "virus.created"


def killed(message) -> bool:
    return message["type"] == "virus.killed"


def change_seqs(client: Client) -> list[int]:
    return [m["seq"] for m in client.messages if m["type"] in ("virus.created", "virus.killed")]


class AdminSession:
    """A staff member using the Django admin on one node."""

    def __init__(self, node: nodes.Node):
        password = "correct-horse-battery-staple"
        node.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            f"User.objects.create_superuser('ops', 'ops@example.com', '{password}')",
        )
        self.client = httpx.Client(base_url=node.url, timeout=10)
        self.client.get("/admin/login/").raise_for_status()
        response = self.post("/admin/login/", {"username": "ops", "password": password, "next": "/admin/"})
        assert response.status_code == 302, response.text

    def post(self, path: str, data: dict) -> httpx.Response:
        token = self.client.cookies["csrftoken"]
        referer = f"{self.client.base_url}{path}"
        return self.client.post(
            path, data={**data, "csrfmiddlewaretoken": token}, headers={"Referer": referer}
        )


async def test_a_client_on_one_node_gets_changes_made_through_another_node_cron_and_admin(cluster):
    a, b = cluster(2)
    api_b = b.api()
    async with player(a) as alice, player(b) as bob:
        await alice.until(lambda m: m["type"] == "presence" and m["online"] == 2)

        first = api_b.create().json()  # through node B's API
        assert (await alice.until(created))["virus"] == first
        second = a.api().create().json()  # and the other way round
        assert (await bob.until(lambda m: created(m) and m["seq"] == 2))["virus"] == second
        assert api_b.kill(first["id"]).status_code == 204
        assert (await alice.until(killed))["id"] == first["id"]

        spawned = await asyncio.to_thread(b.manage, "spawn_virus", "--count", "2")  # cron on node B
        assert spawned.stdout.count("Spawned") == 2
        await alice.until(lambda m: created(m) and m["seq"] == 5)

        admin = await asyncio.to_thread(AdminSession, b)
        response = await asyncio.to_thread(
            admin.post, f"/admin/viruses/virus/{second['id']}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        assert (await alice.until(killed))["id"] == second["id"]
        response = await asyncio.to_thread(admin.post, "/admin/viruses/virus/spawn/", {})  # the spawn button
        assert response.status_code == 302
        await alice.until(lambda m: created(m) and m["seq"] == 11)
        await bob.until(lambda m: created(m) and m["seq"] == 11)

        # Both clients saw every change exactly once, in order, and agree with the database.
        listed = a.api().list()
        for client in (alice, bob):
            assert change_seqs(client) == list(range(change_seqs(client)[0], 12))
            assert client.viruses.keys() == {v["id"] for v in listed["viruses"]}
        assert listed["seq"] == 11

        status = json.loads((await asyncio.to_thread(a.manage, "game_status", "--json")).stdout)
        assert status["online"] == 2 and status["seq"] == 11 and status["viruses"] == 7
        assert sorted((s["state"], s["connections"]) for s in status["servers"]) == [("alive", 1)] * 2


def spawn_on_nodes(env: dict[str, str], count: int, *args: str) -> list[subprocess.CompletedProcess]:
    """Start the same spawn_virus command on `count` "nodes" at once, as cron does."""
    procs = [
        subprocess.Popen(
            [harness.PYTHON, "manage.py", "spawn_virus", *args],
            cwd=harness.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


async def test_the_same_cron_line_on_two_nodes_spawns_once_per_window(game):
    # A window length of its own (days long), so the window cannot turn during the test and
    # no earlier run's lock applies: what is tested is two nodes starting the same tick.
    window = str(random.randrange(10**5, 10**6))
    async with player(game) as alice:
        results = await asyncio.to_thread(
            spawn_on_nodes, game.env, 2, "--count", "3", "--spread", "1", "--once-per", window
        )
        outputs = sorted(r.stdout for r in results)
        assert [o.count("Spawned") for o in outputs] == [0, 3], outputs
        assert "skipping" in outputs[0]
        await alice.until(lambda m: created(m) and m["seq"] == 3)
        assert len(game.api().list()["viruses"]) == 3

        # The next tick of the same window spawns nothing on either node...
        again = await asyncio.to_thread(spawn_on_nodes, game.env, 2, "--count", "3", "--once-per", window)
        assert all("skipping" in r.stdout and "Spawned" not in r.stdout for r in again)
        # ...and a new window spawns its three, once.
        window = str(int(window) + 1)
        fresh = await asyncio.to_thread(spawn_on_nodes, game.env, 2, "--count", "3", "--once-per", window)
        assert sorted(r.stdout.count("Spawned") for r in fresh) == [0, 3]
        await alice.until(lambda m: created(m) and m["seq"] == 6)
    assert len(game.api().list()["viruses"]) == 6


def test_http_rate_limit_counts_across_nodes(cluster):
    a, b = cluster(2, VIRUS_RATE_LIMIT="4", VIRUS_RATE_BURST="4")
    on_a, on_b = a.api("203.0.113.7"), b.api("203.0.113.7")  # behind nginx
    # One player on both nodes: the action bucket is the player's, wherever they connect.
    on_b.client.cookies.delete("player")
    on_b.client.cookies.set("player", on_a.client.cookies["player"])
    statuses = [api.create().status_code for api in (on_a, on_b, on_a, on_b)]
    assert statuses == [201] * 4
    for api in (on_a, on_b):
        refused = api.create()
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 15  # one token at 4 per minute
        assert "error" in refused.json()
    # Kills count too, and another player is not affected.
    victim = a.api("198.51.100.9").create()
    assert victim.status_code == 201
    assert on_b.kill(victim.json()["id"]).status_code == 429
    assert b.api("198.51.100.9").kill(victim.json()["id"]).status_code == 204
    assert len(a.api().list()["viruses"]) == 4


def connection_addresses(node: nodes.Node) -> list[str]:
    code = (
        "import json; from viruses.models import Connection; "
        "print(json.dumps(sorted(Connection.objects.values_list('client_address', flat=True))))"
    )
    return json.loads(node.manage("shell", "-v", "0", "-c", code).stdout)


def browse_through_proxy(proxy: nodes.Nginx, upstream: list[nodes.Node]) -> None:
    """The page, a static file and the API through nginx, as a browser uses them."""
    # A browser on another address than the proxy's: 127.0.0.2, trying to spoof its own.
    browser = httpx.Client(
        base_url=proxy.url,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        headers={"X-Forwarded-For": "6.6.6.6"},
        timeout=10,
    )
    page = browser.get("/")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    stylesheet = next(part.split('"')[0] for part in page.text.split('href="')[1:] if ".css" in part)
    assert browser.get(stylesheet).status_code == 200
    for _ in range(4):
        assert browser.get("/api/viruses/").status_code == 200
    for node in upstream:
        log = node.read_log()
        assert '"GET /api/viruses/"' in log, "nginx spreads requests over both nodes"
        # daphne's access log shows the browser's address, not nginx's nor the spoofed one.
        assert "\n127.0.0.2:0 - - [" in log
        assert "6.6.6.6" not in log

    # The API through the proxy, CSRF as a browser does it (Origin and Referer of the page).
    write = {"X-CSRFToken": browser.cookies["csrftoken"], "Origin": proxy.url, "Referer": proxy.url + "/"}
    virus = browser.post("/api/viruses/", headers=write)
    assert virus.status_code == 201, virus.text
    assert browser.delete(f"/api/viruses/{virus.json()['id']}/", headers=write).status_code == 204
    assert (
        browser.post("/api/viruses/", headers={**write, "Origin": "https://evil.example"}).status_code == 403
    )


async def test_nginx_proxies_http_and_websockets_to_both_nodes(cluster, tmp_path):
    harness.require(nodes.nginx_binary() is not None, "nginx is not installed")
    nodes.require_postgres()
    proxy_port = harness.free_port()
    proxy_origin = f"http://127.0.0.1:{proxy_port}"
    # nginx passes Host without the port ($host), so the browser's Origin (with the port)
    # must be trusted explicitly; on port 443 "https://<host>" matches the host by itself.
    a, b = cluster(2, DJANGO_CSRF_TRUSTED_ORIGINS=proxy_origin, DJANGO_BEHIND_TLS_PROXY="true")
    (tmp_path / "nginx").mkdir()
    proxy = nodes.Nginx(tmp_path / "nginx", [a.port, b.port], port=proxy_port).start()
    try:
        await asyncio.to_thread(browse_through_proxy, proxy, [a, b])

        # Two WebSockets through nginx (least_conn: one per node), pushes made via each node.
        def through_proxy():
            return websockets.connect(
                proxy.ws_url,
                origin=proxy.url,
                additional_headers={"X-Forwarded-For": "6.6.6.6"},
                local_addr=("127.0.0.2", 0),
            )

        async with through_proxy() as ws1, through_proxy() as ws2:
            alice, bob = Client(ws1), Client(ws2)
            for client in (alice, bob):
                assert (await client.recv())["type"] == "snapshot"
            status = json.loads((await asyncio.to_thread(a.manage, "game_status", "--json")).stdout)
            assert sorted(s["connections"] for s in status["servers"]) == [1, 1], status
            made = [(await asyncio.to_thread(node.api().create)).json()["id"] for node in (a, b)]
            for client in (alice, bob):
                for virus_id in made:
                    await client.until(lambda m, v=virus_id: created(m) and m["virus"]["id"] == v)
            # daphne --proxy-headers took the client address from nginx's X-Forwarded-For,
            # which nginx overwrote: neither the proxy's 127.0.0.1 nor the spoofed 6.6.6.6.
            assert await asyncio.to_thread(connection_addresses, a) == ["127.0.0.2", "127.0.0.2"]
            direct = {"X-Forwarded-For": "203.0.113.5"}
            async with websockets.connect(b.ws_url, origin=b.url, additional_headers=direct) as ws3:
                await ws3.recv()
                addresses = await asyncio.to_thread(connection_addresses, a)
                assert addresses == ["127.0.0.2", "127.0.0.2", "203.0.113.5"]
    finally:
        proxy.stop()
    assert "[error]" not in proxy.read_log(), proxy.read_log()
