"""Player names keyed by their confusable skeletons (viruses/names.py).

Every player gets both keys. Going through players oldest first (then by id), a player
keeps their name unless it breaks today's rules (invisible, mixed scripts, reserved...) or
looks like the name of an older player; then they are renamed "Player" and the start of
their id, which they can change. The same rows give the same result on every database.
"""

from django.db import migrations, models

from viruses import names


def fallback(player, attempt: int) -> str:
    return f"Player {player.pk.hex[: 6 + attempt]}"


def key_names(apps, schema_editor):
    Player = apps.get_model("viruses", "Player")
    players = list(Player.objects.order_by("created_at", "id"))
    # Out of the way first: a new key may equal an old key of a row not yet updated (a new
    # key holds no space, so these collide with none).
    for player in players:
        player.name_key = f"old {player.pk.hex}"
        player.save(update_fields=["name_key"])
    taken: set[str] = set()
    for player in players:
        try:
            name = names.clean(player.name)
        except names.InvalidName:
            name = None
        attempt = 0
        while name is None or taken & set(names.keys(name)):
            name = fallback(player, attempt)
            attempt += 1
        player.name = name
        player.name_key, player.name_upper_key = names.keys(name)
        taken.update((player.name_key, player.name_upper_key))
        player.save(update_fields=["name", "name_key", "name_upper_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("viruses", "0005_connection_player"),
    ]

    operations = [
        migrations.AddField(
            model_name="player",
            name="name_upper_key",
            field=models.CharField(editable=False, max_length=96, null=True),
        ),
        migrations.RunPython(key_names, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="player",
            name="name_upper_key",
            field=models.CharField(editable=False, max_length=96, unique=True),
        ),
    ]
