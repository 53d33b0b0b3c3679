"""The stock Channels consumer: group events carry dicts, each client re-encodes with send_json.

Socket actions the tutorial way: `receive_json` calls the service in `database_sync_to_async`
and answers with `send_json`; no flood limit (a stock consumer has none).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")
django_asgi_app = get_asgi_application()

from channels.consumer import AsyncConsumer  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.urls import path  # noqa: E402

from viruses import broadcast, errors, messages, services  # noqa: E402
from viruses.live.consumers import VirusConsumer  # noqa: E402
from viruses.live.daphne.transport import DaphneProtocolMiddleware  # noqa: E402
from viruses.live.origin import SameOriginValidator  # noqa: E402


def _event(kind: str, message: dict) -> dict:
    """A stock group event: the message as a dict, encoded later by every consumer."""
    return {"type": kind, "message": message}


async def apush(event: dict, group: str = broadcast.GROUP) -> bool:
    """A stock push: `group_send` of the dict event (the project's logs read its text)."""
    try:
        await get_channel_layer().group_send(group, event)
    except Exception:
        return False
    return True


messages._event = _event
broadcast.apush = apush
broadcast.BATCH_MAX = 1  # a stock push is one group_send per change


class StockConsumer(VirusConsumer, AsyncJsonWebsocketConsumer):
    # Channels' own dispatch (aclose_old_connections() before every handler), whatever the
    # project's consumer does instead.
    dispatch = AsyncConsumer.dispatch

    receive = AsyncJsonWebsocketConsumer.receive

    async def relay(self, event):
        await self.send_json(event["message"])

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        ref = content.get("ref") if kind in ("create", "kill") else None
        try:
            if kind == "create":
                virus = await database_sync_to_async(services.virus_create)()
                await self.send_json(
                    {"type": "ack", "ref": ref, "status": 201, "virus": messages.virus_json(virus)}
                )
            elif kind == "kill":
                await database_sync_to_async(services.virus_kill)(virus_id=content.get("id"))
                await self.send_json({"type": "ack", "ref": ref, "status": 204})
            elif kind == "resync":
                await self.send_snapshot()
            else:
                await self.send_json({"type": "error", "error": "unknown message type"})
        except (errors.GameError, ValidationError) as exc:
            status = getattr(exc, "status", 404)
            await self.send_json({"type": "error", "ref": ref, "status": status, "error": str(exc)})

    virus_created = virus_killed = presence = leaderboard = relay


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DaphneProtocolMiddleware(
            SameOriginValidator(
                URLRouter([path("ws/viruses/", StockConsumer.as_asgi())]), settings.WS_ALLOWED_ORIGINS
            )
        ),
    }
)
