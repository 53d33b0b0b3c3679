"""System checks for configurations that silently break live updates."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def channel_layer_reaches_other_processes(app_configs, **kwargs):
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only reaches sockets of the same process: "
                "viruses spawned by cron or changed in a shell or another server are not "
                "pushed to browsers.",
                hint="Set REDIS_URL (make run starts a local Redis for you).",
                id="viruses.W001",
            )
        ]
    return []
