"""The project's ASGI application with the consumer varied by BENCH_LEVERS.

- `dbhop`: group events go through Channels' own `dispatch`, which runs
  `aclose_old_connections()` (a sync_to_async thread hop) before every handler, as the
  project did before it relayed group events directly (viruses/live/consumers.py).
- `nobatch`: one `group_send` per push, never a batch of the pushes queued meanwhile
  (viruses/broadcast.py, `Pusher`).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.levers.settings")
django_asgi_app = get_asgi_application()

from channels.consumer import AsyncConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from bench.levers import enabled  # noqa: E402
from viruses import broadcast  # noqa: E402
from viruses.live.consumers import VirusConsumer  # noqa: E402
from viruses.live.daphne.transport import DaphneProtocolMiddleware  # noqa: E402
from viruses.live.origin import SameOriginValidator  # noqa: E402

if enabled("nobatch"):
    broadcast.BATCH_MAX = 1


class LeverConsumer(VirusConsumer):
    if enabled("dbhop"):
        dispatch = AsyncConsumer.dispatch


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DaphneProtocolMiddleware(
            SameOriginValidator(
                URLRouter([path("ws/viruses/", LeverConsumer.as_asgi())]), settings.WS_ALLOWED_ORIGINS
            )
        ),
    }
)
