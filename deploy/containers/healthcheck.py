"""The containers' health checks, without Django (a check runs every few seconds).

    healthcheck.py             daphne's /healthz answers 200 (the image's HEALTHCHECK)
    healthcheck.py --services  PostgreSQL and Redis accept connections (the spawner's)

daphne is reached where deploy/containers/entrypoint.sh made it listen: DAPHNE_SOCKET, else
TCP port DAPHNE_PORT (8000). Exit status 0 means healthy; the reason otherwise goes to
`docker inspect`'s health log.
"""

import http.client
import os
import socket
import sys
from urllib.parse import urlsplit

TIMEOUT = 4  # s; the HEALTHCHECK's own timeout is 5


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def host_name() -> str:
    """A name Django answers to (the first of DJANGO_ALLOWED_HOSTS): others get 400."""
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = hosts[0].lstrip(".") if hosts else "localhost"
    return "localhost" if host == "*" else host


def daphne() -> str | None:
    path = os.environ.get("DAPHNE_SOCKET")
    if path:
        conn = UnixHTTPConnection(path)
    else:
        port = int(os.environ.get("DAPHNE_PORT", "8000"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    # X-Forwarded-Proto as nginx sends it: with DJANGO_SECURE_SSL_REDIRECT a plain request gets a 301.
    conn.request("GET", "/healthz", headers={"Host": host_name(), "X-Forwarded-Proto": "https"})
    response = conn.getresponse()
    body = response.read(200).decode(errors="replace")
    return None if response.status == 200 else f"/healthz answered {response.status}: {body}"


def services() -> str | None:
    urls = [os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "").split(",")[0]]
    defaults = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6380}
    for url in filter(None, urls):
        parts = urlsplit(url)
        if parts.scheme not in defaults or not parts.hostname:
            continue  # SQLite, a unix socket, Sentinel: nothing to reach by TCP here
        address = (parts.hostname, parts.port or defaults[parts.scheme])
        with socket.create_connection(address, timeout=TIMEOUT):
            pass
    return None


def main() -> int:
    check = services if sys.argv[1:] == ["--services"] else daphne
    try:
        problem = check()
    except OSError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
