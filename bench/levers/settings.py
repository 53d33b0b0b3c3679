"""The project's settings with the channel layer or the middleware varied by BENCH_LEVERS.

- `corelayer`: channels-redis's stock core layer (`RedisChannelLayer`) instead of the
  project's `LocalFanoutRedisChannelLayer` (viruses/live/layers.py).
- `pubsub`: channels-redis's `RedisPubSubChannelLayer`.
- `capacity100`: the core layer's default capacity (100) instead of the project's 1000.
- `pool100`: the default connection pool (100) instead of the project's 2000.
- `nofastlane`: `VIRUS_FASTLANE` off: every consumer relays its group events (fanout.py).
- `apichain`: Django's own session, auth and message middleware for every request, /api/
  included, instead of the project's page-only subclasses (viruses/middleware.py).
- `pyparser`: redis-py's pure-Python reply parser instead of hiredis.
"""

import sys

from bench.levers import enabled

if enabled("pyparser"):
    sys.modules["hiredis"] = None  # redis-py falls back to its Python parser on ImportError
from virusgame.settings import *  # noqa: F403
from virusgame.settings import CHANNEL_LAYERS, MIDDLEWARE

config = CHANNEL_LAYERS["default"].get("CONFIG", {})
if enabled("corelayer"):
    CHANNEL_LAYERS["default"]["BACKEND"] = "channels_redis.core.RedisChannelLayer"
if enabled("pubsub"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": config["hosts"], "prefix": config.get("prefix", "asgi")},
        }
    }
if enabled("capacity100"):
    config["capacity"] = 100
if enabled("nofastlane"):
    VIRUS_FASTLANE = False
if enabled("pool100"):
    for host in config["hosts"]:
        host.pop("max_connections", None)
if enabled("apichain"):
    stock = {
        "SessionsForPages": "django.contrib.sessions.middleware.SessionMiddleware",
        "AuthForPages": "django.contrib.auth.middleware.AuthenticationMiddleware",
        "MessagesForPages": "django.contrib.messages.middleware.MessageMiddleware",
    }
    MIDDLEWARE = [stock.get(m.rpartition(".")[2], m) for m in MIDDLEWARE]
