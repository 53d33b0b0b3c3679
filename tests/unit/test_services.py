"""The game's rules, enforced by the only writers."""

import itertools
import math
import random
import uuid

import pytest
from django.core.exceptions import ValidationError

from viruses import errors, services
from viruses.models import Player, SignalBypassError, Virus

pytestmark = pytest.mark.django_db


def test_server_places_viruses_inside_the_playground():
    viruses = [services.virus_create() for _ in range(30)]
    for virus in viruses:
        assert 0 <= virus.kind < Virus.KINDS
        assert services.MARGIN <= virus.x <= 100 - services.MARGIN
        assert services.MARGIN <= virus.y <= 100 - services.MARGIN
    assert len({v.kind for v in viruses}) > 1


def test_alive_cap_refuses_and_creates_nothing(settings):
    settings.VIRUS_MAX_ALIVE = 3
    for _ in range(3):
        services.virus_create()
    with pytest.raises(errors.AliveCapReached):
        services.virus_create()
    assert Virus.objects.count() == 3


def test_alive_cap_holds_for_viruses_placed_by_hand(settings):
    settings.VIRUS_MAX_ALIVE = 2
    services.virus_create()
    services.virus_create(x=50, y=50)
    with pytest.raises(errors.AliveCapReached):
        services.virus_create(x=20, y=20)
    with pytest.raises(errors.AliveCapReached):
        services.virus_create(y=20)
    assert Virus.objects.count() == 2


def test_second_kill_of_a_virus_is_not_found():
    virus = services.virus_create()
    services.virus_kill(virus_id=virus.id)
    with pytest.raises(errors.VirusNotFound):
        services.virus_kill(virus_id=virus.id)


def test_kill_of_unknown_virus_is_not_found():
    with pytest.raises(errors.VirusNotFound):
        services.virus_kill(virus_id=uuid.uuid4())


def test_out_of_range_kind_is_refused():
    with pytest.raises(ValidationError, match="kind"):
        services.virus_create(kind=6)
    assert Virus.objects.count() == 0


@pytest.mark.parametrize(
    ("write", "name"),
    [
        (lambda: Virus.objects.update(kind=0), "update"),
        (lambda: Virus.objects.filter(kind__gte=0).update(x=50), "update"),
        (lambda: Virus.objects.bulk_create([Virus(kind=1, x=10, y=10)]), "bulk_create"),
        (lambda: Virus.objects.bulk_update(list(Virus.objects.all()), ["kind"]), "bulk_update"),
    ],
)
def test_bulk_writes_that_fire_no_signals_refuse_to_run(write, name):
    virus = services.virus_create(kind=3, x=20, y=30)
    with pytest.raises(SignalBypassError, match=rf"{name}\(\) fires no post_save/post_delete signal"):
        write()
    virus.refresh_from_db()
    assert (virus.kind, virus.x, Virus.objects.count()) == (3, 20, 1)


def pairwise_gaps(viruses) -> list[float]:
    return [math.hypot(a.x - b.x, a.y - b.y) for a, b in itertools.combinations(viruses, 2)]


def test_new_viruses_keep_their_distance_while_there_is_room():
    random.seed(20)
    viruses = [services.virus_create() for _ in range(20)]
    assert min(pairwise_gaps(viruses)) >= services.SPACING


def test_a_crowded_dish_still_takes_every_virus_each_in_the_emptiest_spot_found(settings):
    settings.VIRUS_MAX_ALIVE = 150
    random.seed(150)
    viruses = [services.virus_create() for _ in range(150)]
    assert Virus.objects.count() == 150
    assert all(services.MARGIN <= v.x <= 100 - services.MARGIN for v in viruses)
    # Uniformly random spots put the closest two of 150 about 0.3 % apart, often on top of each other.
    assert min(pairwise_gaps(viruses)) >= 2.5


@pytest.mark.parametrize("crowd", [0, 1, 30, 150, 1000])
def test_place_takes_the_first_spot_far_enough_else_the_emptiest_tried(crowd):
    draw = random.Random(crowd)
    alive = [(round(draw.uniform(0, 100), 2), round(draw.uniform(0, 100), 2)) for _ in range(crowd)]
    random.seed(crowd)
    spots = [(services._coordinate(), services._coordinate()) for _ in range(services.CANDIDATES)]

    def gap(spot):  # to the nearest living virus, by brute force
        return min((math.dist(spot, other) for other in alive), default=math.inf)

    expected = next((spot for spot in spots if gap(spot) >= services.SPACING), max(spots, key=gap))
    random.seed(crowd)
    assert services.place(alive) == expected


def test_a_virus_finds_the_one_free_corner_of_a_full_dish():
    random.seed(3)
    # A dish with one free corner: the new virus goes there.
    crowd = [
        services.virus_create(x=x, y=y)
        for x in range(10, 95, 10)
        for y in range(10, 95, 10)
        if x < 60 or y < 60
    ]
    virus = services.virus_create()
    assert min(math.hypot(virus.x - c.x, virus.y - c.y) for c in crowd) >= services.SPACING


def test_a_players_create_and_kill_take_one_statement_per_step(django_assert_num_queries):
    player = services.player_create()
    # Savepoint (the test's transaction holds the BEGIN), counter lock, actor, alive viruses,
    # insert, seq, release: the cost of a create under the lock that every writer waits for.
    with django_assert_num_queries(7):
        virus = services.virus_create(by=player.pk)
    # Savepoint, counter lock, actor, target, delete, seq, credit, release.
    with django_assert_num_queries(8):
        services.virus_kill(virus_id=virus.id, by=player.pk)


def test_a_kill_credits_the_player_as_they_are_now_and_a_player_who_is_gone_acts_as_nobody():
    player = services.player_create()
    services.virus_kill(virus_id=str(services.virus_create().id), by=str(player.pk))
    player.refresh_from_db()
    assert player.kills == 1 and player.scored_at is not None
    gone = uuid.uuid4()
    virus = services.virus_create(by=gone)
    services.virus_kill(virus_id=virus.id, by=gone)
    assert list(Player.objects.values_list("kills", flat=True)) == [1]
    assert not Virus.objects.exists()


def test_the_rows_read_under_the_lock_are_the_orms_to_the_last_field():
    player = services.player_create()
    services.virus_kill(virus_id=services.virus_create(by=player).id, by=player)
    services.players_set_banned(player_ids=[player.pk], banned=True)
    virus = services.virus_create()
    for model, pk in ((Player, player.pk), (Virus, virus.pk)):
        fields = [field.attname for field in model._meta.concrete_fields]
        read, orm = services._get(model, str(pk)), model.objects.get(pk=pk)
        assert [getattr(read, name) for name in fields] == [getattr(orm, name) for name in fields]
        assert [type(getattr(read, name)) for name in fields] == [type(getattr(orm, name)) for name in fields]
        assert not read._state.adding and read._state.db == orm._state.db
    assert services._get(Player, uuid.uuid4()) is None
    with pytest.raises(ValidationError):
        services._get(Virus, "not-a-uuid")
