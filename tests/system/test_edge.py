"""What a client meets at the edge, on real servers: daphne run with the deploy kit's flags,
and nginx built from the deploy kit's site (server banners, HEAD, 405, request limits)."""

import asyncio
import contextlib
import json
import socket

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
    # pass, the first 201 do. At once: nginx counts arrivals, so every request gets its own
    # connection (a pool of 100 would let answers pace the rest under the limit on a busy machine).
    async def burst():
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30, limits=limits) as client:
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


def raw_get(server, target: str, headers: str = "") -> tuple[int, bytes]:
    """GET by hand (httpx refuses such requests itself): the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{headers}Connection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # answered and closed before all was sent
            sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


OVERSIZE = [
    ("url", "/api/viruses/?" + "a" * 60 * 1024, "", 414),
    ("header", "/api/viruses/", "X-Big: " + "b" * 200 * 1024 + "\r\n", 431),
    ("headers", "/api/viruses/", "".join(f"X-Many-{i}: {'c' * 1000}\r\n" for i in range(40)), 431),
]


@pytest.mark.parametrize(("what", "target", "headers", "status"), OVERSIZE, ids=[o[0] for o in OVERSIZE])
@pytest.mark.parametrize("via", ["nginx", "daphne"])
def test_an_oversize_url_or_header_is_answered_414_or_431(edge, via, what, target, headers, status):
    node, proxy = edge
    answer, body = raw_get(proxy if via == "nginx" else node, target, headers)
    assert answer == status
    if status == 431 or via == "daphne":  # nginx's 414 is its own page
        assert json.loads(body)["error"]
    assert "Traceback" not in node.read_log()


def test_a_body_over_nginx_s_limit_is_answered_413_in_json(edge):
    _, proxy = edge
    response = httpx.post(proxy.url + "/api/viruses/", content=b"x" * 100_000, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]
