"""The Python clients' Feed follows the page's rules for applying a socket's messages."""

from tools.gameclient import Feed, decode


def created(seq: int, virus_id: str) -> dict:
    return {"type": "virus.created", "seq": seq, "virus": {"id": virus_id, "kind": 0, "x": 1, "y": 2}}


def killed(seq: int, virus_id: str) -> dict:
    return {"type": "virus.killed", "seq": seq, "id": virus_id}


def snapshot(seq: int, *ids: str, online: int = 1) -> dict:
    viruses = [{"id": i, "kind": 0, "x": 1, "y": 2} for i in ids]
    return {"type": "snapshot", "seq": seq, "viruses": viruses, "online": online}


def fed(*messages: dict, now: float = 0.0) -> Feed:
    feed = Feed(gap_timeout=1.5)
    for message in messages:
        feed.receive(message, now)
    return feed


def test_changes_in_order_are_applied_on_top_of_the_snapshot():
    feed = fed(snapshot(3, "a", online=2), created(4, "b"), killed(5, "a"))
    assert (feed.seq, sorted(feed.viruses), feed.online) == (5, ["b"], 2)
    assert not feed.behind and feed.resync_at is None


def test_changes_the_feed_already_has_are_ignored():
    feed = fed(snapshot(3, "a"), created(3, "old"), killed(2, "a"), created(4, "b"), created(4, "b-again"))
    assert (feed.seq, sorted(feed.viruses)) == (4, ["a", "b"])


def test_a_change_ahead_of_a_hole_waits_until_the_hole_is_filled():
    feed = fed(snapshot(1), created(3, "c"), now=10.0)
    assert (feed.seq, sorted(feed.viruses), feed.behind) == (1, [], True)
    feed.receive(created(2, "b"), now=10.5)
    assert (feed.seq, sorted(feed.viruses), feed.behind) == (3, ["b", "c"], False)
    assert feed.resync_at is None


def test_a_hole_still_open_after_the_gap_timeout_asks_for_a_resync_once_per_timeout():
    feed = fed(snapshot(1), created(3, "c"), now=10.0)
    feed.receive(created(5, "e"), now=11.0)  # the timer runs from the first hole
    assert feed.resync_at == 11.5
    assert not feed.resync_due(11.4) and feed.resync_due(11.5)
    feed.resync_sent(11.5)
    assert not feed.resync_due(12.9) and feed.resync_due(13.0)


def test_a_snapshot_replaces_everything_and_keeps_only_later_changes():
    feed = fed(snapshot(1, "a"), created(3, "c"), created(6, "f"), now=10.0)
    feed.resync_sent(11.5)
    feed.receive(snapshot(4, "x", "c"), now=11.6)
    assert (feed.seq, sorted(feed.viruses), feed.ahead.keys() == {6}) == (4, ["c", "x"], True)
    assert feed.resync_pending is False and feed.resync_at == 11.6 + 1.5  # a new hole: 5 is missing
    feed.receive(created(5, "e"), now=11.7)
    assert (feed.seq, sorted(feed.viruses), feed.behind) == (6, ["c", "e", "f", "x"], False)


def test_changes_before_the_sockets_snapshot_are_kept_for_after_it():
    feed = fed(snapshot(1, "a"))
    feed.reset()  # a new socket
    for message in (created(3, "c"), created(6, "f"), snapshot(4, "a", "c"), created(5, "e")):
        feed.receive(message, now=0.0)
    assert (feed.seq, sorted(feed.viruses)) == (6, ["a", "c", "e", "f"])


def test_presence_updates_the_count_and_unknown_types_are_ignored():
    feed = fed(snapshot(1, online=1), {"type": "presence", "online": 7}, {"type": "ack", "ref": "r"})
    assert (feed.seq, feed.online) == (1, 7)


def test_a_frame_is_one_message_or_an_array_of_them_in_order():
    assert decode('{"type": "presence", "online": 2}') == [{"type": "presence", "online": 2}]
    assert decode(b'[{"type": "a"}, {"type": "b"}]') == [{"type": "a"}, {"type": "b"}]
