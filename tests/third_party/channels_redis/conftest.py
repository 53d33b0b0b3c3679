"""Run channels-redis's upstream tests as upstream does: on the tests' own Redis (not
localhost:6379) and without the project's rewrite of channels-redis's log lines; only
against the channels-redis they were taken from."""

import importlib.metadata
import logging
from urllib.parse import urlsplit, urlunsplit

import pytest

from viruses.logs import LayerDropFilter

VENDORED_FROM = "4.3.0"  # the sdist test_core.py comes from (README.md)


def database(url: str, number: int) -> str:
    """Return `url` with Redis database `number` (unix sockets take it as `?db=`)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query=f"db={number}"))
    return urlunsplit(parts._replace(path=f"/{number}"))


@pytest.fixture(autouse=True, scope="session")
def installed_channels_redis():
    """Fail every test here when another channels-redis is installed: they test that version."""
    installed = importlib.metadata.version("channels-redis")
    if installed != VENDORED_FROM:
        pytest.fail(
            f"tests/third_party/channels_redis/ comes from channels-redis {VENDORED_FROM}, but {installed} "
            "is installed: take test_core.py from that version's sdist and redo the edits in README.md",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def test_redis_hosts(redis_server, request, monkeypatch):
    """Replace the module's hard-coded hosts: one database, and ten for the sharding tests."""
    monkeypatch.setattr(request.module, "TEST_HOSTS", [redis_server.url])
    monkeypatch.setattr(
        request.module, "MULTIPLE_TEST_HOSTS", [database(redis_server.url, n) for n in range(10)]
    )


@pytest.fixture(autouse=True)
def upstream_log_lines(monkeypatch):
    """The capacity tests compare channels-redis's own message, which settings.LOGGING rewrites."""
    logger = logging.getLogger("channels_redis.core")
    monkeypatch.setattr(logger, "filters", [f for f in logger.filters if not isinstance(f, LayerDropFilter)])
