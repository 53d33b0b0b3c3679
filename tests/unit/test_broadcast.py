"""viruses/broadcast.py: in a server process pushes leave from its event loop, in order (those
queued meanwhile as one batch), and the writer's answer never waits for them."""

import asyncio

import pytest

from tools.gameclient import decode
from viruses import broadcast, messages

pytestmark = pytest.mark.timeout(120)


async def test_pushes_handed_over_from_a_writer_thread_leave_in_the_order_given(pushes, monkeypatch):
    pusher = broadcast.Pusher(asyncio.get_running_loop())
    monkeypatch.setattr(broadcast, "_pusher", pusher)

    def commit_fifty():  # as writers do: on_commit callbacks, in a thread, in commit order
        for seq in range(1, 51):
            broadcast.push(messages.killed_event(seq=seq, virus_id=f"v{seq}"))

    try:
        await asyncio.to_thread(commit_fifty)
        seqs = []
        while len(seqs) < 50:
            received = await pushes.receive()
            seqs += [m["seq"] for m in received] if isinstance(received, list) else [received["seq"]]
        assert seqs == list(range(1, 51))
    finally:
        pusher.task.cancel()


async def test_pushes_queued_meanwhile_leave_as_batches_in_order(pushes, monkeypatch):
    pusher = broadcast.Pusher(asyncio.get_running_loop())
    monkeypatch.setattr(broadcast, "_pusher", pusher)
    total = 2 * broadcast.BATCH_MAX + 20
    try:
        for seq in range(1, total + 1):  # all queued before the pusher runs again
            pusher._put(messages.killed_event(seq=seq, virus_id=f"v{seq}"))
        pusher._put(messages.presence_event(online=3))
        await broadcast.flush()
        batches = [await pushes.receive() for _ in range(3)]
        assert [len(batch) for batch in batches] == [broadcast.BATCH_MAX, broadcast.BATCH_MAX, 21]
        received = [m for batch in batches for m in batch]
        assert [m.get("seq") for m in received] == [*range(1, total + 1), None]
        assert received[-1] == {"type": "presence", "online": 3}
    finally:
        pusher.task.cancel()


def test_a_frame_of_queued_group_events_splices_batches_in_order():
    one, two, three = (messages.killed_event(seq=seq, virus_id=f"v{seq}") for seq in (1, 2, 3))
    frame = messages.frame_of([one, messages.batch_event([two, three]), messages.presence_event(online=1)])
    assert [m.get("seq") for m in decode(frame)] == [1, 2, 3, None]
    batch = messages.batch_event([one, two])
    assert messages.frame_of([batch]) == batch["text"] == messages.frame_text([one["text"], two["text"]])
