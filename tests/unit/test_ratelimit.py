"""Token buckets: bursts for people, a sustained rate for scripts, in Redis and in memory."""

import uuid

import pytest

from viruses.guards import ratelimit
from viruses.logs import parse


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "memory"])
def buckets(request, settings, monkeypatch):
    """The action bucket at 20 at once, then 3/s, on a clock the test moves."""
    settings.REDIS_URLS = [request.getfixturevalue("redis_server").url] if request.param == "redis" else []
    settings.REDIS_PREFIX = f"t{uuid.uuid4().hex[:8]}"
    settings.VIRUS_RATE_LIMIT, settings.VIRUS_RATE_BURST = 180, 20
    clock = Clock()
    monkeypatch.setattr(ratelimit, "clock", clock)
    return clock


def clicks(clock: Clock, *, per_second: float, seconds: float, address: str = "203.0.113.7") -> int:
    """Click at a steady pace for a while; return how many were allowed."""
    allowed = 0
    for _ in range(round(per_second * seconds)):
        allowed += ratelimit.retry_after("action", address) is None
        clock.now += 1 / per_second
    return allowed


def test_a_burst_of_twenty_passes_then_the_wait_is_one_token(buckets):
    assert [ratelimit.retry_after("action", "203.0.113.7") for _ in range(20)] == [None] * 20
    assert ratelimit.retry_after("action", "203.0.113.7") == pytest.approx(1 / 3)
    buckets.now += 1 / 3
    assert ratelimit.retry_after("action", "203.0.113.7") is None


def test_a_person_clicking_ten_a_second_then_keeps_three_a_second(buckets):
    # 20 at once plus 3/s refill: about 28 clicks before the first refusal at 10/s.
    first = clicks(buckets, per_second=10, seconds=2.8)
    assert first == 28
    sustained = clicks(buckets, per_second=10, seconds=60)
    assert 179 <= sustained <= 181


def test_no_double_allowance_across_a_minute_boundary(buckets):
    buckets.now = 1_000_019.0  # 59 s into a clock minute
    assert clicks(buckets, per_second=500, seconds=2) <= 20 + 2 * 3 + 1


def test_ipv6_addresses_share_a_bucket_per_64(buckets):
    assert clicks(buckets, per_second=1000, seconds=0.02, address="2001:db8:1:2::1") == 20
    assert ratelimit.retry_after("action", "2001:db8:1:2:ffff:ffff:ffff:ffff") is not None
    assert ratelimit.retry_after("action", "2001:db8:1:3::1") is None


def test_players_behind_one_address_have_buckets_of_their_own(buckets):
    for _ in range(20):
        ratelimit.retry_after("action", "198.51.100.1", player="alice")
    assert ratelimit.retry_after("action", "198.51.100.1", player="alice") is not None
    assert ratelimit.retry_after("action", "198.51.100.1", player="bob") is None
    assert ratelimit.retry_after("action", "198.51.100.1") is None


async def test_consumers_take_from_the_same_bucket(buckets):
    for _ in range(20):
        assert await ratelimit.aretry_after("action", "203.0.113.9") is None
    assert ratelimit.retry_after("action", "203.0.113.9") is not None


def test_client_keys():
    assert (
        ratelimit.client_key("2001:db8::1") == ratelimit.client_key("2001:db8::abcd:1") == "a:2001:db8::/64"
    )
    assert ratelimit.client_key("::ffff:192.0.2.1") == "a:192.0.2.1"
    assert ratelimit.client_key("192.0.2.1") != ratelimit.client_key("192.0.2.2")
    assert ratelimit.client_key("not an address") == "a:not an address"
    assert ratelimit.client_key("192.0.2.1", player="p1") == "p:p1"


def test_rate_zero_turns_the_bucket_off(buckets, settings):
    settings.VIRUS_RATE_LIMIT = 0
    assert clicks(buckets, per_second=1000, seconds=0.1) == 100


def test_redis_trouble_fails_open_with_one_line(settings, unused_tcp_port, caplog):
    settings.REDIS_URLS = [f"redis://127.0.0.1:{unused_tcp_port}/0"]
    settings.VIRUS_RATE_LIMIT, settings.VIRUS_RATE_BURST = 60, 1
    assert [ratelimit.retry_after("action", "192.0.2.1") for _ in range(3)] == [None] * 3
    lines = [parse(r.getMessage()) for r in caplog.records if r.name == "viruses.guards.ratelimit"]
    assert len(lines) == 3
    assert lines[0] == {"event": "ratelimit.unavailable", "bucket": "action", "error": "ConnectionError"}


@pytest.mark.django_db
def test_snapshots_share_one_bucket_and_get_429_with_retry_after(client, settings, monkeypatch):
    settings.REDIS_URLS, settings.REDIS_PREFIX = [], f"t{uuid.uuid4().hex[:8]}"
    settings.VIRUS_SNAPSHOT_RATE, settings.VIRUS_SNAPSHOT_BURST = 2, 3
    monkeypatch.setattr(ratelimit, "clock", Clock())
    # A WebSocket connect or resync takes from the same bucket as the GET.
    assert ratelimit.retry_after("snapshot", "127.0.0.1") is None
    assert [client.get("/api/viruses/").status_code for _ in range(3)] == [200, 200, 429]
    refused = client.get("/api/viruses/")
    assert refused["Retry-After"] == "1"
    assert "too many" in refused.json()["error"]


@pytest.mark.django_db
def test_a_players_actions_take_from_their_own_bucket_wherever_they_connect_from(buckets):
    from viruses import actions, errors

    alice, bob = uuid.uuid4(), uuid.uuid4()

    def kill(address: str, by) -> str:
        try:
            actions.kill(virus_id=uuid.uuid4(), address=address, by=by)
        except errors.RateLimited:
            return "429"
        except errors.VirusNotFound:
            return "404"  # a token was taken, then the kill was tried
        return "204"

    assert [kill("198.51.100.1", alice) for _ in range(20)] == ["404"] * 20
    assert kill("198.51.100.1", alice) == "429"
    assert kill("198.51.100.1", bob) == "404"  # behind the same address: untouched
    assert kill("198.51.100.1", None) == "404"  # a cookie-less client there: the address's bucket
    assert kill("192.0.2.50", alice) == "429"  # another address: still alice's bucket
