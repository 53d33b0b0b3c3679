"""System checks of the private surface: what the server reaches into is there, at the versions verified."""

from django.core.checks import Error, Warning, register

from . import surface

HINT = (
    "Verify and adapt viruses/live/daphne/ (surface.py names every internal it uses): "
    ".venv/bin/pytest tests/unit/test_daphne_surface.py, then the system tests."
)


@register()
def private_surface_is_there(app_configs, **kwargs):
    return [
        Error(
            f"{problem}: the server relies on it (backpressure, close codes, the fastlane, the drain "
            "or the channel layer).",
            hint=HINT,
            id="viruses.E010",
        )
        for problem in surface.missing()
    ]


@register()
def private_surface_was_verified(app_configs, **kwargs):
    return [
        Warning(
            (f"{name} {installed} is installed" if installed else f"{name} is not installed")
            + f", but viruses/live/daphne/ relies on its internals as of {name} {verified}.",
            hint=HINT + " Then set surface.VERIFIED.",
            id="viruses.W010",
        )
        for name, (verified, installed) in surface.unverified().items()
    ]
