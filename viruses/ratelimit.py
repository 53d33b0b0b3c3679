"""Per-client limit on creates and kills, shared by every server through the cache."""

import logging
import time

from django.conf import settings
from django.core.cache import cache

WINDOW = 60  # seconds; VIRUS_RATE_LIMIT counts actions per window

logger = logging.getLogger(__name__)


def retry_after(client: str) -> int:
    """Count one action by `client`; return 0 if allowed, else seconds until it is."""
    limit = settings.VIRUS_RATE_LIMIT
    if limit <= 0:
        return 0
    now = time.time()
    window = int(now // WINDOW)
    key = f"virus-rate:{client}:{window}"
    try:
        cache.add(key, 0, timeout=WINDOW + 5)
        count = cache.incr(key)
    except Exception as exc:
        # The game must stay playable when the cache (Redis) is down: fail open, loudly.
        logger.warning("rate limit not enforced, cache unavailable: %s", exc)
        return 0
    if count <= limit:
        return 0
    return max(1, int((window + 1) * WINDOW - now))
