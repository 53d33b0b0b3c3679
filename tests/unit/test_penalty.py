"""viruses/guards/penalty.py: who is boxed, for how long, and how an address gets out (a fake clock)."""

import pytest

from viruses.guards import penalty

ABUSER, NEIGHBOUR = "203.0.113.7", "203.0.113.8"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def box(clock):
    return penalty.PenaltyBox(first=1, longest=60, clock=clock)


def test_a_strike_boxes_the_address_alone_for_the_first_penalty(box, clock):
    assert box.strike(ABUSER, "ping_flood") == 1
    assert box.refuses(ABUSER) and not box.refuses(NEIGHBOUR)
    clock.now += 1.01
    assert not box.refuses(ABUSER)


def test_sockets_cut_while_boxed_add_nothing_repeats_after_it_double_up_to_the_longest(box, clock):
    assert box.strike(ABUSER, "ping_flood") == 1
    assert box.strike(ABUSER, "ping_flood") is None  # its other sockets, cut at the same time
    served = []
    for _ in range(8):
        clock.now += served[-1] if served else 1  # back as soon as let in, and at it again
        served.append(box.strike(ABUSER, "ping_flood"))
    assert served == [2, 4, 8, 16, 32, 60, 60, 60]


def test_an_address_quiet_for_the_longest_penalty_after_its_box_starts_again_from_the_first(box, clock):
    box.strike(ABUSER, "flood")
    clock.now += 1
    assert box.strike(ABUSER, "flood") == 2
    clock.now += 2 + 61
    assert box.strike(ABUSER, "flood") == 1


def test_a_refused_handshake_holds_the_address_as_long_as_asked_and_never_doubles(box, clock):
    box.hold(ABUSER, 0.5)
    assert box.refuses(ABUSER)
    clock.now += 0.5
    assert not box.refuses(ABUSER)
    box.hold(ABUSER, 0.5)
    clock.now += 0.5
    assert box.strike(ABUSER, "ping_flood") == 1  # holds are no strikes


def test_a_hold_neither_shortens_a_penalty_nor_wipes_the_record(box, clock):
    box.strike(ABUSER, "ping_flood")
    clock.now += 1
    box.strike(ABUSER, "ping_flood")  # 2 s
    box.hold(ABUSER, 0.5)
    clock.now += 1.9
    assert box.refuses(ABUSER)
    clock.now += 0.2
    box.hold(ABUSER, 0.5)
    clock.now += 0.5
    assert box.strike(ABUSER, "ping_flood") == 4


def test_one_ipv6_subscriber_is_one_address_whatever_its_interface_id(box):
    box.strike("2001:db8:1:2::1", "ping_flood")
    assert box.refuses("2001:db8:1:2:abcd::9") and not box.refuses("2001:db8:1:3::1")


def test_off_boxes_nobody(clock):
    box = penalty.PenaltyBox(first=0, longest=60, clock=clock)
    assert box.strike(ABUSER, "ping_flood") is None
    box.hold(ABUSER, 5)
    assert not box.refuses(ABUSER)


def test_an_attacker_rotating_addresses_cannot_grow_the_box_without_bound(box, clock, monkeypatch):
    monkeypatch.setattr(penalty, "MAX_ADDRESSES", 100)
    for i in range(1000):
        box.strike(f"10.0.{i // 250}.{i % 250}", "ping_flood")
    assert len(box.boxes) <= 100
    assert box.refuses("10.0.3.249")  # the newest are kept


def test_out_of_its_box_an_address_is_paced_until_forgotten(box, clock):
    box.strike(ABUSER, "ping_flood")
    clock.now += 1
    burst = penalty.PROBATION_BURST
    assert [box.refuses(ABUSER) for _ in range(burst + 2)] == [False] * burst + [True] * 2
    clock.now += 1 / penalty.PROBATION_RATE
    assert [box.refuses(ABUSER) for _ in range(2)] == [False, True]
    assert not box.refuses(NEIGHBOUR)
    clock.now += 61
    assert not any(box.refuses(ABUSER) for _ in range(10))


def test_a_strike_boxes_the_player_alone_not_the_others_behind_their_address(box, clock):
    assert box.strike(ABUSER, "flood", player="alice") == 1
    assert box.refuses(ABUSER, "alice") and box.refuses(NEIGHBOUR, "alice")  # wherever alice goes
    assert not box.refuses(ABUSER, "bob") and not box.refuses(ABUSER)  # bob, and cookie-less clients
    assert not box.blocks(ABUSER)  # page loads and HTTP from the address go on


def test_only_refused_handshakes_at_an_abusive_pace_block_the_address_at_accept(box, clock):
    for _ in range(penalty.ABUSIVE_BURST):
        box.refused(ABUSER)
    assert not box.blocks(ABUSER)  # a whole class refused at once, say
    box.refused(ABUSER)
    assert box.blocks(ABUSER) and not box.blocks(NEIGHBOUR)
    clock.now += 1.01  # VIRUS_ABUSE_PENALTY
    assert not box.blocks(ABUSER)
    clock.now += 10
    for _ in range(5 * int(penalty.ABUSIVE_RATE)):  # half the abusive pace, for as long as it lasts
        box.refused(ABUSER)
        clock.now += 1 / (2 * penalty.ABUSIVE_RATE)
    assert not box.blocks(ABUSER)
