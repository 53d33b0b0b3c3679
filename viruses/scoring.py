"""Fair scoring: whether a kill scores, and the reaction times an operator judges players by.

Two rules, in every world and on both paths (services.virus_kill applies the verdict):
a kill of a virus its own killer created scores nothing (farming: click +, then the virus),
and neither does a kill less than VIRUS_MIN_REACTION_MS after the virus was committed (no
human sees, aims and clicks that fast once the push's travel is counted). Such kills still kill.

Reaction times are kept per player as a histogram of fixed buckets on the player row, which
the kill already reads and saves under the world's lock: a constant-size update, no row per
kill and nothing to prune. Its median is as precise as its bucket, which is enough to tell
a script (tens of ms) from a person (hundreds).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

OWN, TOO_FAST = "own", "too_fast"
REASONS = (OWN, TOO_FAST)
# Upper bounds (ms) of the reaction buckets; one more bucket holds everything slower.
BUCKETS_MS = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 3000, 5000, 10000)


@dataclass(frozen=True)
class Verdict:
    """What a kill earns: `scored`, else the rule that refused it (`reason`, None: nobody to credit)."""

    scored: bool
    reason: str | None
    reaction_ms: int


def judge(virus, killer, now: datetime) -> Verdict:
    """Judge `killer`'s kill of `virus` at `now` (`killer` None: the spawner, the admin, the shell)."""
    reaction_ms = max(0, round((now - virus.created_at).total_seconds() * 1000))
    if killer is None:
        return Verdict(False, None, reaction_ms)
    if virus.creator_id is not None and virus.creator_id == killer.pk:
        return Verdict(False, OWN, reaction_ms)
    if reaction_ms < settings.VIRUS_MIN_REACTION_MS:
        return Verdict(False, TOO_FAST, reaction_ms)
    return Verdict(True, None, reaction_ms)


def record(player, verdict: Verdict) -> list[str]:
    """Count `verdict` in `player`'s fair-play stats (not saved); return the fields changed."""
    if verdict.scored:
        player.kills_scored += 1
        counted = "kills_scored"
    else:
        counted = f"kills_refused_{verdict.reason}"
        setattr(player, counted, getattr(player, counted) + 1)
    histogram = list(player.reaction_histogram or ()) + [0] * (len(BUCKETS_MS) + 1)
    histogram = histogram[: len(BUCKETS_MS) + 1]
    histogram[_bucket(verdict.reaction_ms)] += 1
    player.reaction_histogram = histogram
    player.reaction_median_ms = median_ms(histogram)
    return [counted, "reaction_histogram", "reaction_median_ms"]


def median_ms(histogram: list[int]) -> int | None:
    """The median reaction, as the upper bound of its bucket (the last bucket: its lower bound)."""
    total, seen = sum(histogram), 0
    for i, count in enumerate(histogram):
        seen += count
        if total and 2 * seen >= total:
            return BUCKETS_MS[min(i, len(BUCKETS_MS) - 1)]
    return None


def _bucket(reaction_ms: int) -> int:
    return next((i for i, bound in enumerate(BUCKETS_MS) if reaction_ms < bound), len(BUCKETS_MS))
