"""An idempotency key is bound to its action and target: reused for another, it answers 422."""

import json
import uuid

import pytest
from django.test import Client

from viruses import errors
from viruses.guards import idempotency
from viruses.models import Virus

pytestmark = pytest.mark.django_db


def browser() -> Client:
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=f"test-{uuid.uuid4().hex[:12]}")
    client.token = client.get("/").cookies["csrftoken"].value
    return client


def send(client, method: str, path: str, key: str):
    return getattr(client, method)(path, headers={"x-csrftoken": client.token, "idempotency-key": key})


def test_a_kill_with_the_key_of_a_create_is_a_422_and_the_virus_lives():
    alice = browser()
    created = send(alice, "post", "/api/viruses/", "k1")
    assert created.status_code == 201
    virus = created.json()["id"]
    reused = send(alice, "delete", f"/api/viruses/{virus}/", "k1")
    assert reused.status_code == 422
    assert "another action" in reused.json()["error"]
    assert Virus.objects.filter(pk=virus).exists()
    assert send(alice, "post", "/api/viruses/", "k1").json() == created.json()  # its own repeat still replays
    assert Virus.objects.count() == 1


def test_a_kill_key_sent_again_for_another_virus_is_a_422():
    alice = browser()
    first, second = (send(alice, "post", "/api/viruses/", key).json()["id"] for key in ("c1", "c2"))
    assert send(alice, "delete", f"/api/viruses/{first}/", "k").status_code == 204
    assert send(alice, "delete", f"/api/viruses/{second}/", "k").status_code == 422
    assert send(alice, "delete", f"/api/viruses/{first}/", "k").status_code == 204  # the same kill: replayed
    assert list(Virus.objects.values_list("pk", flat=True)) == [uuid.UUID(second)]


def test_another_action_finds_the_first_still_running_and_is_refused_not_kept_waiting():
    name = idempotency._name("k", "test-address", None)
    assert idempotency._keys().claim(name, idempotency._pending("create"))
    acted = []
    with pytest.raises(errors.KeyReused):
        idempotency.once(
            "k", action="kill x", address="test-address", player=None, act=lambda: acted.append(1)
        )
    assert acted == []
    idempotency._keys().forget(name)


def test_an_answer_kept_before_keys_were_bound_is_still_replayed():
    name = idempotency._name("old", "test-address", None)
    idempotency._keys().keep(name, json.dumps([201, {"id": "v"}]))
    answer = idempotency.once("old", action="create", address="test-address", player=None, act=lambda: None)
    assert answer == (201, {"id": "v"})
