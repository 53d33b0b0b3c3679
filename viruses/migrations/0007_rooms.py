# Rooms: worlds of their own (viruses, change counter, scores, connections per room).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('viruses', '0006_player_name_skeletons'),
    ]

    operations = [
        migrations.CreateModel(
            name='Room',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.CharField(editable=False, max_length=5, unique=True)),
                ('name', models.CharField(max_length=40)),
                ('locked', models.BooleanField(default=False, help_text='A locked room takes no new players.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_activity', models.DateTimeField(db_index=True)),
                ('host', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='rooms_hosted', to='viruses.player')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.AddField(
            model_name='changecounter',
            name='room',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='counter', to='viruses.room'),
        ),
        migrations.AddField(
            model_name='connection',
            name='room',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='viruses.room'),
        ),
        migrations.AddField(
            model_name='virus',
            name='room',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='viruses', to='viruses.room'),
        ),
        migrations.CreateModel(
            name='Score',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kills', models.PositiveIntegerField(default=0)),
                ('scored_at', models.DateTimeField(blank=True, null=True)),
                ('player', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scores', to='viruses.player')),
                ('room', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scores', to='viruses.room')),
            ],
            options={
                'ordering': ['-kills', 'scored_at', 'id'],
                'indexes': [models.Index(fields=['room', '-kills', 'scored_at', 'id'], name='score_board')],
                'constraints': [models.UniqueConstraint(fields=('room', 'player'), name='score_room_player')],
            },
        ),
    ]
