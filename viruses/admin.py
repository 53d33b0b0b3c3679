import contextlib
import logging
from datetime import UTC

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, Q, When
from django.dispatch import receiver
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from . import errors, services
from .logs import kv
from .models import Connection, Player, Room, Round, RoundScore, Virus
from .selectors import online_counts, stale_before

logger = logging.getLogger(__name__)

# The page draws kind N in this colour (KIND_NAMES in viruses/static/viruses/game.js).
KIND_COLOURS = ("green", "pink", "yellow", "purple", "blue", "orange")
SPAWN_COUNT = 5


class ColourFilter(admin.SimpleListFilter):
    title = "colour"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return list(enumerate(KIND_COLOURS))

    def queryset(self, request, queryset):
        return queryset if self.value() is None else queryset.filter(kind=self.value())


@admin.register(Virus)
class VirusAdmin(admin.ModelAdmin):
    list_display = ["id", "colour", "x", "y", "created_at", "age"]
    list_filter = [ColourFilter, "created_at"]
    search_fields = ["=id"]
    fields = readonly_fields = ["id", "colour", "x", "y", "created_at", "age"]

    @admin.display(description="colour", ordering="kind")
    def colour(self, virus):
        return KIND_COLOURS[virus.kind]

    @admin.display(description="age")
    def age(self, virus):
        return timesince(virus.created_at, timezone.now())

    def has_add_permission(self, request):
        # Viruses are born through the game's rules (alive cap): use the spawn button.
        return False

    def has_change_permission(self, request, obj=None):
        # A moved or recoloured virus would not be pushed: a virus's own page is view-only.
        # The list stays changeable (kills, spawns), and Django returns there after a delete.
        return obj is None and super().has_change_permission(request)

    def has_spawn_permission(self, request):
        return super().has_add_permission(request)

    def get_urls(self):
        spawn = path(
            "spawn/",
            self.admin_site.admin_view(self.spawn_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_spawn",
        )
        return [spawn, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_spawn": self.has_spawn_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @method_decorator(require_POST)
    def spawn_view(self, request):
        """Spawn viruses through the services layer (pushed like any other), up to the cap."""
        if not self.has_spawn_permission(request):
            raise PermissionDenied
        created = 0
        try:
            for _ in range(SPAWN_COUNT):
                services.virus_create()
                created += 1
        except errors.AliveCapReached as exc:
            self.message_user(request, f"Spawned {created}: {exc}.", messages.WARNING)
        else:
            self.message_user(request, f"Spawned {created} viruses.", messages.SUCCESS)
        return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def delete_model(self, request, virus):
        self._kill([virus])

    def delete_queryset(self, request, queryset):
        self._kill(queryset)

    def _kill(self, viruses):
        for virus in viruses.select_related("room") if hasattr(viruses, "select_related") else viruses:
            # Already killed by a player meanwhile: their kill was pushed, nothing to do.
            with contextlib.suppress(errors.VirusNotFound):
                services.virus_kill(virus_id=virus.pk, room=virus.room)


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ["client_address", "server", "connected_at", "last_seen", "alive"]
    list_filter = ["server"]
    search_fields = ["client_address", "user_agent", "channel_name"]

    @admin.display(boolean=True, description="alive")
    def alive(self, connection):
        return connection.last_seen >= stale_before()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SuspectFilter(admin.SimpleListFilter):
    title = "suspect"
    parameter_name = "suspect"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        suspect = Q(refused__gte=settings.VIRUS_SUSPECT_REFUSED)
        return {"yes": queryset.filter(suspect), "no": queryset.exclude(suspect)}.get(self.value(), queryset)


@admin.register(Player)
class PlayerAdmin(admin.ModelAdmin):
    # Fair play (viruses/scoring.py): kills scored and refused by each rule, and the median
    # reaction, so an operator can judge and ban from the list.
    STATS = ["kills_scored", "kills_refused_own", "kills_refused_too_fast", "reaction_median_ms"]
    list_display = ["name", "kills", "today", *STATS, "suspect", "scored_at", "banned", "created_at"]
    list_filter = ["banned", SuspectFilter]
    search_fields = ["name"]
    ordering = ["-kills", "scored_at"]
    fields = readonly_fields = ["id", "name", "kills", "scored_at", "today", *STATS, "banned", "created_at"]
    actions = ["ban", "unban"]

    def get_queryset(self, request):
        refused = F("kills_refused_own") + F("kills_refused_too_fast")
        today = Case(When(today_on=timezone.now().astimezone(UTC).date(), then="today_kills"), default=0)
        return super().get_queryset(request).annotate(refused=refused, today_count=today)

    @admin.display(description="today", ordering="today_count")
    def today(self, player):
        """Kills on the public board since 00:00 UTC."""
        return player.today_count

    @admin.display(boolean=True, description="suspect", ordering="refused")
    def suspect(self, player):
        """Refused kills (own or too fast) at VIRUS_SUSPECT_REFUSED or past it."""
        return player.refused >= settings.VIRUS_SUSPECT_REFUSED

    def has_add_permission(self, request):
        return False  # players come from the game's first visit

    def has_change_permission(self, request, obj=None):
        # Scores and names change through the game only (a saved form could overwrite a kill
        # made meanwhile); bans are list actions.
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Ban selected players (no more actions, off the board)")
    def ban(self, request, queryset):
        changed = services.players_set_banned(player_ids=queryset.values_list("pk", flat=True), banned=True)
        self.message_user(request, f"Banned {changed} players.", messages.SUCCESS)

    @admin.action(description="Unban selected players")
    def unban(self, request, queryset):
        changed = services.players_set_banned(player_ids=queryset.values_list("pk", flat=True), banned=False)
        self.message_user(request, f"Unbanned {changed} players.", messages.SUCCESS)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "host", "online", "alive", "locked", "last_activity"]
    list_filter = ["locked"]
    search_fields = ["=code", "name"]
    list_select_related = ["host"]
    fields = readonly_fields = ["code", "name", "host", "locked", "created_at", "last_activity"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(alive_count=Count("viruses"))

    def get_search_results(self, request, queryset, search_term):
        # Codes are stored in upper case; people type them in any case.
        return super().get_search_results(request, queryset, search_term.strip().upper() or search_term)

    @admin.display(description="online")
    def online(self, room):
        return online_counts([room.pk])[room.pk]

    @admin.display(description="alive", ordering="alive_count")
    def alive(self, room):
        return room.alive_count

    def has_add_permission(self, request):
        return False  # rooms are made by players (POST /api/rooms/)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)


class RoundScoreInline(admin.TabularInline):
    model = RoundScore
    fields = readonly_fields = ["player", "kills", "refused", "scored_at"]
    ordering = ["-kills", "scored_at", "id"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    """Rounds are played from the room's page (viruses/rounds.py); here they are only shown."""

    list_display = ["room", "number", "state", "seconds", "started_at", "ends_at", "ended_at"]
    list_filter = ["state"]
    search_fields = ["=room__code"]
    list_select_related = ["room"]
    fields = readonly_fields = ["room", "number", "state", "seconds", "started_at", "ends_at", "ended_at"]
    inlines = [RoundScoreInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)


@receiver(user_locked_out)
def log_lockout(sender, request, username, ip_address, **kwargs):
    """One short line per refused login (django-axes' own prose lines are silenced)."""
    logger.warning(kv("admin.locked_out", client=ip_address, username=(username or "")[:64]))
