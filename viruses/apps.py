"""The app's wiring point: signal receivers, system checks, log counting."""

from django.apps import AppConfig


class VirusesConfig(AppConfig):
    name = "viruses"

    def ready(self):
        from . import checks, metrics, signals  # noqa: F401  (receivers, checks, log counting)
