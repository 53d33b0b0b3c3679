"""ASGI entry point: HTTP goes to Django, WebSockets to the game's consumer, the lifespan
(uvicorn's and granian's start and shutdown) to the game's server part."""

import os

from virusgame.handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "virusgame.settings")
# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from viruses import live  # noqa: E402
from viruses.broadcast import PushFromLoop  # noqa: E402

# PushFromLoop: writers hand their pushes to the event loop instead of waiting for Redis.
application = PushFromLoop(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": live.websocket_application(),
            "lifespan": live.lifespan_application(),
        }
    )
)

live.start()
