"""Settings for the virus game, read from the environment (see README, "Configuration")."""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from viruses import sentinel

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(item, strict=False) for item in env_list(name)]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must list addresses or networks: {exc}") from None


DEBUG = env_bool("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for local development).")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# Origins a WebSocket handshake may come from (viruses/live/origin.py): full origins such as
# https://game.example.com, or host names (any scheme and port). Empty: the page's own
# origin only, as Django's CSRF check wants (scheme, host in ALLOWED_HOSTS, port).
WS_ALLOWED_ORIGINS = env_list("DJANGO_WS_ALLOWED_ORIGINS")

INSTALLED_APPS = [
    # First, so that `runserver` is daphne's ASGI server with WebSocket support.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "viruses",
]

MIDDLEWARE = [
    # First: it counts the API's actions by the answer they got, refusals included.
    "viruses.metrics.count_http_actions",
    # Before anything reads a body: it refuses one over DATA_UPLOAD_MAX_MEMORY_SIZE unread.
    "viruses.middleware.api_answers_json",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Sessions, auth and messages serve the page and the admin; /api/ skips them.
    "viruses.middleware.SessionsForPages",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "viruses.middleware.AuthForPages",
    "viruses.middleware.MessagesForPages",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "viruses.middleware.content_security_policy",
    # Last, as django-axes asks: it turns a lockout found during login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "virusgame.urls"
ASGI_APPLICATION = "virusgame.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: a SQLite file unless DATABASE_URL says otherwise (PostgreSQL in production).
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_health_checks=True,
    )
}
sqlite = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Every thread that uses the database lives as long as its process (the HTTP_THREADS
# request threads of virusgame/handler.py, and Channels' one thread for the consumers), so
# a connection can be kept between requests. SQLite keeps its own for 5 minutes: opening
# one costs more than a write, and closing a file's last one checkpoints the WAL.
# PostgreSQL gets a pool instead (0 here), whose size bounds its connections per process.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 300 if sqlite else 0)
# Threads per process that run HTTP requests' sync code (middleware and views); with
# PostgreSQL keep it below DATABASE_POOL_SIZE, which the consumers' thread also draws on.
HTTP_THREADS = env_int("HTTP_THREADS", 8)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's native pool (psycopg_pool) instead of a connection per thread: connections
    # per process up to DATABASE_POOL_SIZE (mind PostgreSQL's max_connections across
    # processes). A request that waits 1 s for one answers 503, as it does at once without
    # the pool when PostgreSQL is down (and a socket's handshake must finish within
    # daphne's 5 s). With conn_health_checks Django has the pool check each connection it
    # hands out (one empty query): one terminated meanwhile is replaced, not given to a
    # request. 0: no pool.
    pool_size = env_int("DATABASE_POOL_SIZE", 10)
    if pool_size and not DATABASES["default"]["CONN_MAX_AGE"]:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": 1,
            # psycopg_pool retries a lost server for 5 minutes with backoff up to minutes
            # apart: give up after half a second instead, and the next request tries again,
            # so the game is back as soon as PostgreSQL is.
            "reconnect_timeout": 0.5,
        }
if sqlite:
    # The web server and cron write at once: WAL lets readers go on during a write,
    # IMMEDIATE takes the write lock up front (no upgrade deadlocks), and writers wait
    # for each other instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 5,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: Redis when REDIS_URL is set (comma-separated URLs shard across servers,
# or one redis+sentinel:// URL: viruses/sentinel.py), otherwise in memory, which only
# reaches sockets of the same process (see viruses/checks.py).
REDIS_URLS = env_list("REDIS_URL")
if os.environ.get("REDIS_URL", "").strip().startswith("redis+sentinel://"):
    REDIS_URLS = [os.environ["REDIS_URL"].strip()]  # its commas separate sentinels
    try:
        sentinel.parse(REDIS_URLS[0])
    except ValueError as exc:
        raise ImproperlyConfigured(f"REDIS_URL: {exc}") from None
REDIS_SENTINEL = bool(REDIS_URLS) and sentinel.is_sentinel_url(REDIS_URLS[0])
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "virusgame")  # to share one Redis between games
_layer_connection = {
    # redis-py's default 5 s read timeout would kill idle consumers, whose blocking reads
    # wait longer than that.
    "socket_timeout": None,
    "socket_connect_timeout": 2,
}
if REDIS_URLS:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's core layer with one Redis reader per process for all of its
            # sockets (viruses/live/layers.py): same Redis data, a fraction of the fan-out cost.
            "BACKEND": "viruses.live.layers.LocalFanoutRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    # A connect burst needs many at once: redis-py's default of 100 failed
                    # handshakes. Without the sentinels, a bounded pool that makes a burst
                    # wait (viruses/live/layers.py) instead of keeping a connection per socket.
                    sentinel.layer_host(url, **_layer_connection, max_connections=2000)
                    if REDIS_SENTINEL
                    else {"address": url, **_layer_connection, "max_connections": 64, "pool_wait": 10}
                    for url in REDIS_URLS
                ],
                "prefix": REDIS_PREFIX,
                "capacity": 1000,
                # Members left by a crashed server drop out after this; live consumers
                # re-add themselves on every heartbeat (viruses/live/presence.py).
                "group_expiry": 300,
            },
        }
    }
    CACHES = {
        "default": {
            # Through the sentinels, the spawner's lock also waits for a replica to hold it.
            "BACKEND": (
                "viruses.sentinel.SentinelRedisCache"
                if REDIS_SENTINEL
                else "django.core.cache.backends.redis.RedisCache"
            ),
            "LOCATION": REDIS_URLS[:1],
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin login throttling (django-axes): after DJANGO_LOGIN_FAILURE_LIMIT wrong passwords for
# one user name from one address, that pair is refused (429) for DJANGO_LOGIN_LOCKOUT_MINUTES,
# even with the right password. Per pair, so a stranger cannot lock the real admin out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("DJANGO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DJANGO_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client address is REMOTE_ADDR, which daphne --proxy-headers takes from nginx.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "virusgame.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# HTTPS, for production behind a TLS-terminating proxy (see docs/production.md).
if env_bool("DJANGO_BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The page reads the token from its <meta> tag: scripts never need the cookie.
CSRF_COOKIE_HTTPONLY = True
# Addresses or networks (monitors, the balancer) that /healthz tells which part is down;
# others get only {"status": "ok" | "down"}. Empty: everyone gets the details.
HEALTHZ_DETAILS_FROM = env_networks("DJANGO_HEALTHZ_DETAILS_FROM")
# /metrics (viruses/metrics.py): off (404) unless one of these is set. A scraper then needs
# `Authorization: Bearer <METRICS_TOKEN>` and/or an address in METRICS_ALLOW_FROM (both, if both are set).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (a random one is best)")
METRICS_ALLOW_FROM = env_networks("METRICS_ALLOW_FROM")
# Set on the game's HTML pages (viruses/middleware.py); the admin keeps its own inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# The game.
VIRUS_MAX_ALIVE = env_int("VIRUS_MAX_ALIVE", 100)
# Rate limits (viruses/guards/ratelimit.py), token buckets per player or client address; 0 = off.
# Creates + kills: VIRUS_RATE_LIMIT per minute sustained, up to VIRUS_RATE_BURST at once.
VIRUS_RATE_LIMIT = env_int("VIRUS_RATE_LIMIT", 180)
VIRUS_RATE_BURST = env_int("VIRUS_RATE_BURST", 20)
# Full snapshots (GET /api/viruses/, WebSocket connects and resyncs): per second, and at once.
VIRUS_SNAPSHOT_RATE = env_int("VIRUS_SNAPSHOT_RATE", 2)
VIRUS_SNAPSHOT_BURST = env_int("VIRUS_SNAPSHOT_BURST", 30)
# Renames per player: per minute sustained, and at once (every attempt counts, refused ones too).
VIRUS_RENAME_RATE = env_int("VIRUS_RENAME_RATE", 4)
VIRUS_RENAME_BURST = env_int("VIRUS_RENAME_BURST", 3)
# New players per client address (first visits without the cookie): per minute, and at once.
VIRUS_NEW_PLAYER_RATE = env_int("VIRUS_NEW_PLAYER_RATE", 30)
VIRUS_NEW_PLAYER_BURST = env_int("VIRUS_NEW_PLAYER_BURST", 60)
# A player ranks (the board, a rank) after this many kills and this many seconds since their
# first visit: players minted in bulk cannot fill the board at once (viruses/selectors.py).
VIRUS_RANK_MIN_KILLS = env_int("VIRUS_RANK_MIN_KILLS", 10)
VIRUS_RANK_MIN_SECONDS = env_int("VIRUS_RANK_MIN_SECONDS", 300)
# Fair play (viruses/scoring.py): a kill sooner than this after the virus appeared scores
# nothing (no human sees, aims and clicks that fast once the push's travel is counted).
VIRUS_MIN_REACTION_MS = env_int("VIRUS_MIN_REACTION_MS", 150)
# The admin marks a player as suspect from this many refused kills (own or too fast).
VIRUS_SUSPECT_REFUSED = env_int("VIRUS_SUSPECT_REFUSED", 20)
# New rooms per player, and per client address (a school's teachers share one): per minute
# sustained, and at once. The defaults let a teacher open a room for each of several classes.
VIRUS_ROOM_CREATE_RATE = env_int("VIRUS_ROOM_CREATE_RATE", 5)
VIRUS_ROOM_CREATE_BURST = env_int("VIRUS_ROOM_CREATE_BURST", 10)
VIRUS_ROOM_ADDRESS_RATE = env_int("VIRUS_ROOM_ADDRESS_RATE", 20)
VIRUS_ROOM_ADDRESS_BURST = env_int("VIRUS_ROOM_ADDRESS_BURST", 30)
# A player with more refused kills than this in a round (viruses/selectors.py) is left off its
# board and podium.
VIRUS_ROUND_REFUSED_LIMIT = env_int("VIRUS_ROUND_REFUSED_LIMIT", 5)
# Open sockets per room (all nodes together); more are closed with 4409 "room full".
VIRUS_ROOM_MAX_PLAYERS = env_int("VIRUS_ROOM_MAX_PLAYERS", 100)
# A room with no socket and no change for this long is removed by `manage.py prune_rooms`.
VIRUS_ROOM_IDLE_HOURS = env_int("VIRUS_ROOM_IDLE_HOURS", 24)
# Seconds between a server's presence heartbeats; its sockets stop counting as online
# 3 heartbeats after it dies (SIGKILL, power loss) and its group memberships are dropped.
VIRUS_PRESENCE_HEARTBEAT = env_int("VIRUS_PRESENCE_HEARTBEAT", 15)
# Seconds a daphne process may take to leave on SIGTERM (viruses/live/drain.py): its sockets
# told to reconnect elsewhere (1012), requests in flight answered, its presence removed.
# Keep it under systemd's TimeoutStopSec (deploy/systemd/virusgame@.service).
VIRUS_DRAIN_TIMEOUT = env_int("VIRUS_DRAIN_TIMEOUT", 10)
# Under daphne, group events are framed once and written to every socket by the channel
# layer's reader (viruses/live/fanout.py) instead of through one consumer task per socket.
VIRUS_FASTLANE = env_bool("VIRUS_FASTLANE", True)
# Open WebSockets per client address (all nodes together); more are closed with 1008. 0 = no cap.
# Sized for a school behind one address: 60 pupils with a few tabs each, far under an abuser's.
VIRUS_MAX_CONNECTIONS_PER_ADDRESS = env_int("VIRUS_MAX_CONNECTIONS_PER_ADDRESS", 200)
# A player (else a cookie-less address) cut for abuse (a 1008 for a ping or message flood)
# gets no new socket from this daphne process for this many seconds, doubled per repeat up to
# the maximum; an address whose refused handshakes come at an abusive pace is blocked at
# accept for this long (viruses/guards/penalty.py). 0 = off.
VIRUS_ABUSE_PENALTY = env_int("VIRUS_ABUSE_PENALTY", 1)
VIRUS_ABUSE_PENALTY_MAX = env_int("VIRUS_ABUSE_PENALTY_MAX", 60)
# daphne's --websocket-max-message-size (its default: 1 MiB). It caps what the server sends
# as well as what it receives, so a snapshot of VIRUS_MAX_ALIVE viruses must fit in it
# (system check viruses.E001); the app refuses client messages over 64 KiB by itself.
VIRUS_WS_MAX_MESSAGE_SIZE = env_int("VIRUS_WS_MAX_MESSAGE_SIZE", 1024 * 1024)

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # key=value lines (viruses/logs.py): ts=... level=INFO logger=viruses.live.consumers event=ws.connect ...
    "formatters": {
        "kv": {
            "format": "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        },
    },
    "filters": {"layer_drops": {"()": "viruses.logs.LayerDropFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "kv"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # channels-redis logs messages dropped for full channels at INFO: rewritten as
        # event=layer.drop lines.
        "channels_redis.core": {"filters": ["layer_drops"]},
        "django.db.backends": {"level": "INFO"},
        # Django's defaults give these loggers handlers of their own (plain text, DEBUG
        # only): without this every such line would be printed twice, once as key=value.
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": [], "propagate": True},
        # `runserver` prints its own access log line; this one would repeat it.
        "django.channels.server": {"level": "WARNING"},
        # django-axes logs every attempt in prose, with the client's user name; the lockout
        # is logged once as event=admin.locked_out (viruses/admin.py).
        "axes": {"level": "ERROR"},
    },
}
CSRF_FAILURE_VIEW = "viruses.views.csrf_failure"
