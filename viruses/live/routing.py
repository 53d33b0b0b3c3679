"""WebSocket routes: the game's socket, a room's, and a refusal for every other path."""

import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from viruses.logs import kv

from .consumers import RoomConsumer, VirusConsumer

logger = logging.getLogger(__name__)


class NoRoute(AsyncWebsocketConsumer):
    """Refuse the handshake (403) for a path with no socket; without it, a 500 and a traceback."""

    async def connect(self):
        logger.info(kv("ws.no_route", path=self.scope["path"][:64]))
        await self.close()


websocket_urlpatterns = [
    path("ws/viruses/", VirusConsumer.as_asgi()),
    path("ws/rooms/<str:code>/", RoomConsumer.as_asgi()),
    re_path(r"", NoRoute.as_asgi()),  # last: every other path
]
