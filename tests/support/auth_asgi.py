"""The game behind Channels' AuthMiddlewareStack, whose SessionMiddleware wraps `send`.

Served by daphne in tests/system/test_transport.py: backpressure and RFC close codes must work
whatever middleware sits between daphne and the consumer.
"""
# ruff: noqa: I001 (Django is set up by importing virusgame.asgi first)

from virusgame.asgi import django_asgi_app

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from viruses.live.origin import SameOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from viruses.live.routing import websocket_urlpatterns  # noqa: E402
from viruses.live.daphne.transport import DaphneProtocolMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DaphneProtocolMiddleware(
            SameOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.WS_ALLOWED_ORIGINS
            )
        ),
    }
)
