"""ASGI entry point: HTTP goes to Django, WebSockets to the game's consumer."""

import os

from virusgame.handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "virusgame.settings")
# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from viruses.broadcast import PushFromLoop  # noqa: E402
from viruses.drain import drain  # noqa: E402
from viruses.penalty import RefuseBoxed  # noqa: E402
from viruses.routing import websocket_urlpatterns  # noqa: E402
from viruses.transport import DaphneProtocolMiddleware  # noqa: E402

# PushFromLoop: writers hand their pushes to the event loop instead of waiting for Redis.
application = PushFromLoop(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Handshakes from other origins are refused with 403 (cross-site WebSocket hijacking).
            # Outermost: it needs daphne's own `send`, before any middleware wraps it.
            # Then addresses in the penalty box are refused before anything else runs.
            "websocket": DaphneProtocolMiddleware(
                RefuseBoxed(OriginValidator(URLRouter(websocket_urlpatterns), settings.WS_ALLOWED_ORIGINS))
            ),
        }
    )
)

# Under daphne, SIGTERM drains this process instead of dropping its sockets (drain.py).
drain.install()
