"""The app's wiring point: signal receivers, system checks, log counting."""

from django.apps import AppConfig


class VirusesConfig(AppConfig):
    name = "viruses"

    def ready(self):
        from . import checks, metrics, signals  # noqa: F401  (receivers, checks, log counting)
        from .live.daphne import checks as server_checks  # noqa: F401  (the private surface's checks)
