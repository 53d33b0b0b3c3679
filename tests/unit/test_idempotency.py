"""viruses/guards/idempotency.py: an action retried with its key is done once, in Redis and in memory."""

import asyncio
import logging
import threading
import uuid

import pytest

from viruses import errors
from viruses.guards import idempotency
from viruses.logs import parse
from viruses.shared import redis_client

ADDRESS, NEIGHBOUR = "203.0.113.7", "203.0.113.8"
VIRUS = {"id": "00000000-0000-0000-0000-000000000001", "kind": 0, "x": 1, "y": 1, "created_at": "x"}


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Act:
    """An action that counts its runs and answers 201 with a virus, or raises `refusal`."""

    def __init__(self, refusal: Exception | None = None):
        self.runs = 0
        self.refusal = refusal

    def __call__(self) -> idempotency.Answer:
        self.runs += 1
        if self.refusal is not None:
            raise self.refusal
        return 201, {**VIRUS, "run": self.runs}

    async def aio(self) -> idempotency.Answer:
        return self()


@pytest.fixture(params=["memory", "redis"])
def store(request, settings, monkeypatch):
    """The keys in this process (on a clock the test moves) or in the tests' Redis."""
    settings.REDIS_URLS = [request.getfixturevalue("redis_server").url] if request.param == "redis" else []
    settings.REDIS_PREFIX = f"t{uuid.uuid4().hex[:8]}"
    clock = Clock()
    monkeypatch.setattr(idempotency, "clock", clock)
    monkeypatch.setattr(idempotency, "_memory", idempotency.MemoryKeys())
    return request.param, clock


def once(key, act, *, address=ADDRESS, player=None):
    return idempotency.once(key, action="create", address=address, player=player, act=act)


def aonce(key, act, *, player=None):
    return idempotency.aonce(key, action="create", socket="chan!1", address=ADDRESS, player=player, act=act)


def test_a_repeat_of_a_key_gets_the_first_answer_and_does_not_act_again(store):
    act = Act()
    first = once("page-1:c1", act)
    assert first == (201, {**VIRUS, "run": 1})
    assert once("page-1:c1", act) == first
    assert act.runs == 1
    assert once("page-1:c2", act)[1]["run"] == 2  # another key is another action


def test_actions_without_a_key_act_every_time(store):
    act = Act()
    once(None, act)
    once(None, act)
    assert act.runs == 2


def test_a_refused_action_is_forgotten_so_its_retry_acts(store):
    refused = Act(errors.AliveCapReached("the playground is full"))
    with pytest.raises(errors.AliveCapReached):
        once("k", refused)
    act = Act()
    assert once("k", act)[0] == 201
    assert once("k", act)[1]["run"] == 1
    assert act.runs == 1


def test_a_key_belongs_to_the_player_else_to_the_address(store):
    act = Act()
    once("k", act, player="alice")
    assert once("k", act, player="alice", address=NEIGHBOUR)[1]["run"] == 1  # the same player elsewhere
    assert once("k", act, player="bob")[1]["run"] == 2  # nobody replays another's
    assert once("k", act)[1]["run"] == 3  # an address without a player is someone else again
    assert once("k", act, address=NEIGHBOUR)[1]["run"] == 4
    assert once("k", act)[1]["run"] == 3


def test_a_repeat_while_the_first_attempt_runs_waits_for_its_answer(store, monkeypatch):
    kind = idempotency.MemoryKeys if store[0] == "memory" else idempotency.RedisKeys
    saw_pending = threading.Event()
    get = kind.get

    def spying_get(self, name):
        value = get(self, name)
        if value is not None and value.startswith(idempotency.PENDING):
            saw_pending.set()
        return value

    monkeypatch.setattr(kind, "get", spying_get)
    release, answers, act = threading.Event(), [], Act()

    def slow():
        release.wait(10)
        return act()

    first = threading.Thread(target=lambda: answers.append(once("k", slow)))
    first.start()
    repeat = threading.Thread(target=lambda: answers.append(once("k", act)))
    repeat.start()
    assert saw_pending.wait(10)  # the repeat found the first attempt still running
    release.set()
    first.join(10)
    repeat.join(10)
    assert answers == [(201, {**VIRUS, "run": 1})] * 2 and act.runs == 1


def test_a_repeat_that_outwaits_the_first_attempt_is_told_409_in_progress(store, monkeypatch):
    monkeypatch.setattr(idempotency, "WAIT", 0)
    inner = []

    def first():
        with pytest.raises(errors.InProgress) as refused:
            once("k", Act())  # the retry arrives while this one still runs
        inner.append(refused.value)
        return 204, None

    assert once("k", first) == (204, None)
    assert inner[0].status == 409 and "in progress" in str(inner[0])


def test_a_success_is_remembered_for_ttl_seconds(store):
    kind, clock = store
    act = Act()
    once("k", act)
    if kind == "memory":
        clock.now += idempotency.TTL - 1
        assert once("k", act)[1]["run"] == 1
        clock.now += 2
        assert once("k", act)[1]["run"] == 2  # expired: the key is claimed anew
    else:
        name = idempotency._name("k", ADDRESS, None)
        assert 0 < redis_client(idempotency.store_url()).ttl(name) <= idempotency.TTL


@pytest.mark.parametrize("key", ["x" * (idempotency.KEY_CHARS + 1), 7, ["k"]])
def test_a_malformed_key_is_a_400(key):
    with pytest.raises(errors.BadRequest) as refused:
        idempotency.valid_key(key)
    assert refused.value.status == 400 and "idempotency key" in str(refused.value)


def test_an_empty_or_missing_key_is_no_key_and_a_long_one_is_kept():
    assert idempotency.valid_key(None) is None and idempotency.valid_key("") is None
    assert idempotency.valid_key("k" * idempotency.KEY_CHARS) == "k" * idempotency.KEY_CHARS


async def test_aonce_replays_like_once_wherever_the_repeat_arrives(store):
    act = Act()
    first = await aonce("k", act.aio, player="alice")
    assert await aonce("k", act.aio, player="alice") == first
    assert await asyncio.to_thread(once, "k", act, player="alice") == first  # over HTTP
    assert act.runs == 1
    refused = Act(errors.VirusNotFound("no such virus"))
    with pytest.raises(errors.VirusNotFound):
        await aonce("k2", refused.aio, player="alice")
    assert (await aonce("k2", act.aio, player="alice"))[0] == 201


async def test_an_action_cancelled_midway_keeps_its_key_claimed(store, monkeypatch):
    monkeypatch.setattr(idempotency, "WAIT", 0)
    started, act = asyncio.Event(), Act()

    async def stuck():
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(aonce("k", stuck))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(errors.InProgress):  # it may have committed: never done twice
        await aonce("k", act.aio)
    assert act.runs == 0


async def test_redis_down_fails_open_acting_every_time_with_one_line_each(settings, unused_tcp_port, caplog):
    settings.REDIS_URLS = [f"redis://127.0.0.1:{unused_tcp_port}/0"]
    caplog.set_level(logging.WARNING, "viruses.guards.idempotency")
    act = Act()
    assert (await asyncio.to_thread(once, "k", act))[1]["run"] == 1
    assert (await asyncio.to_thread(once, "k", act))[1]["run"] == 2
    assert (await aonce("k", act.aio))[1]["run"] == 3
    events = [parse(r.getMessage()) for r in caplog.records]
    assert [e["event"] for e in events] == ["idempotency.unavailable"] * 3
    assert events[0]["error"] == "ConnectionError"
