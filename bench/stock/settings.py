"""The project's settings with channels-redis left at its defaults."""

from virusgame.settings import *  # noqa: F403
from virusgame.settings import REDIS_PREFIX, REDIS_URLS

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # The one non-default: without it redis-py's 5 s read timeout drops every idle
            # socket with 1011 after ~6 s, and there would be nothing left to measure.
            "hosts": [{"address": url, "socket_timeout": None} for url in REDIS_URLS],
            "prefix": REDIS_PREFIX,
        },
    }
}
