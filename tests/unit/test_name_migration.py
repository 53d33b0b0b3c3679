"""The migration to look-alike keys: every player keyed, fakes and blanks renamed, oldest first."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from viruses import names

BEFORE, AFTER = ("viruses", "0005_connection_player"), ("viruses", "0006_player_name_skeletons")


@pytest.mark.django_db(transaction=True)
def test_existing_players_get_keys_and_look_alikes_and_blanks_of_older_names_are_renamed():
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    Player = executor.loader.project_state([BEFORE]).apps.get_model("viruses", "Player")
    start = timezone.now() - timedelta(days=1)
    rows = [
        ("Brave Stoat", 0),
        ("\u0412r\u0430v\u0435 St\u043e\u0430t", 1),  # Cyrillic look-alike, newer: renamed
        ("BraveStoat", 2),  # newer still: renamed
        ("\u3164", 3),  # a Hangul filler: renamed
        ("Guest", 4),  # the page's own word: renamed
        ("\u0930\u093e\u0939\u0941\u0932", 5),  # Hindi: kept
    ]
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"player-{i}") for i in range(len(rows))]
    for pk, (name, minutes) in zip(ids, rows, strict=True):
        Player.objects.create(id=pk, name=name, name_key=name.casefold(), created_at=start)
        Player.objects.filter(pk=pk).update(created_at=start + timedelta(minutes=minutes))
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        Player = executor.loader.project_state([AFTER]).apps.get_model("viruses", "Player")
        after = {p.pk: p for p in Player.objects.all()}
        shown = [after[pk].name for pk in ids]
        assert shown[0] == "Brave Stoat" and shown[5] == rows[5][0]
        assert shown[1:5] == [f"Player {pk.hex[:6]}" for pk in ids[1:5]]
        for player in after.values():
            assert (player.name_key, player.name_upper_key) == names.keys(player.name)
            assert names.clean(player.name) == player.name
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
