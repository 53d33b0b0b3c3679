"""The game's rules, enforced by the only writers."""

import uuid

import pytest
from django.core.exceptions import ValidationError

from viruses import services
from viruses.models import Virus

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
    with pytest.raises(services.AliveCapReached):
        services.virus_create()
    assert Virus.objects.count() == 3


def test_second_kill_of_a_virus_is_not_found():
    virus = services.virus_create()
    services.virus_kill(virus_id=virus.id)
    with pytest.raises(services.VirusNotFound):
        services.virus_kill(virus_id=virus.id)


def test_kill_of_unknown_virus_is_not_found():
    with pytest.raises(services.VirusNotFound):
        services.virus_kill(virus_id=uuid.uuid4())


def test_out_of_range_kind_is_refused():
    with pytest.raises(ValidationError, match="kind"):
        services.virus_create(kind=6)
    assert Virus.objects.count() == 0
