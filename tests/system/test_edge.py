"""What a client meets at the edge, on real servers: daphne run with the deploy kit's flags,
and nginx built from the deploy kit's site (server banners, HEAD, 405, request limits)."""

import asyncio

import httpx
import pytest
import websockets

from tests.support import harness, nodes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def edge(game_env, tmp_path):
    """daphne started as the systemd unit starts it, behind nginx with the deploy kit's site."""
    harness.require(nodes.nginx_binary() is not None, "nginx is not installed")
    (tmp_path / "nginx").mkdir()
    node = nodes.Node(game_env, tmp_path / "daphne.log").start()
    try:
        # runs `nginx -t` first; room for 200 sockets at once, each two connections
        proxy = nodes.Nginx(tmp_path / "nginx", [node.port], worker_connections=1024).start()
        yield node, proxy
        proxy.stop()
    finally:
        node.stop()


def test_daphne_sends_no_server_banner_and_answers_head_and_405_as_json(edge):
    node, _ = edge
    with httpx.Client(base_url=node.url, timeout=10) as client:
        for path in ["/", "/api/viruses/", "/healthz"]:
            head = client.head(path)
            assert head.status_code == 200, path
            assert head.content == b"", path
            assert "server" not in head.headers, path
        refused = client.get("/api/viruses/00000000-0000-0000-0000-000000000000/")
    assert refused.status_code == 405 and refused.headers["allow"] == "DELETE"
    assert refused.json() == {"error": "method GET not allowed here"}
    assert "server" not in refused.headers


def test_nginx_hides_its_version(edge):
    _, proxy = edge
    response = httpx.get(proxy.url + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.headers["server"] == "nginx"  # server_tokens off: no version


def test_nginx_limits_api_requests_per_address(edge):
    _, proxy = edge

    # 50/s with a burst of 200 (a class behind one address): 300 requests at once cannot all
    # pass, the first 201 do.
    async def burst():
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            return await asyncio.gather(*(client.get("/api/viruses/") for _ in range(300)))

    statuses = sorted(response.status_code for response in asyncio.run(burst()))
    assert set(statuses) == {200, 429}
    assert statuses.count(200) >= 201
    # The page itself is not under the API's limit.
    assert httpx.get(proxy.url + "/", timeout=10).status_code == 200


async def test_nginx_limits_websocket_handshakes_per_address(edge):
    _, proxy = edge

    # 10/s with a burst of 120 (a class behind one address, twice): 200 at once cannot all pass.
    async def handshake():
        try:
            async with websockets.connect(proxy.ws_url, origin=proxy.url):
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    statuses = await asyncio.gather(*(handshake() for _ in range(200)))
    assert set(statuses) == {101, 429}
    assert statuses.count(101) >= 121
