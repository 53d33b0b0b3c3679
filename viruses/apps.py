from django.apps import AppConfig


class VirusesConfig(AppConfig):
    name = "viruses"

    def ready(self):
        from . import checks, signals  # noqa: F401  (connect receivers, register checks)
