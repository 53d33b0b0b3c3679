import contextlib

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.timesince import timesince

from . import services
from .models import Connection, Virus
from .selectors import stale_before


@admin.register(Virus)
class VirusAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "x", "y", "created_at", "age"]
    list_filter = ["kind", "created_at"]
    search_fields = ["=id"]
    readonly_fields = ["id", "kind", "x", "y", "created_at"]
    actions = ["spawn_five"]

    @admin.display(description="age")
    def age(self, virus):
        return timesince(virus.created_at, timezone.now())

    def has_add_permission(self, request):
        # Viruses are born through the game's rules (alive cap): use the spawn action.
        return False

    def delete_model(self, request, virus):
        self._kill([virus])

    def delete_queryset(self, request, queryset):
        self._kill(queryset)

    def _kill(self, viruses):
        for virus in viruses:
            # Already killed by a player meanwhile: their kill was pushed, nothing to do.
            with contextlib.suppress(services.VirusNotFound):
                services.virus_kill(virus_id=virus.pk)

    @admin.action(description="Spawn five viruses")
    def spawn_five(self, request, queryset):
        created = 0
        try:
            for _ in range(5):
                services.virus_create()
                created += 1
        except services.AliveCapReached as exc:
            self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"Spawned {created} viruses.")


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
