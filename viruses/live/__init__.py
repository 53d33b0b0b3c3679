"""The part of the game that runs only inside the ASGI server (daphne, or runserver's).

Design and reading order: docs/architecture.md. The rest of the app (models, services,
signals, broadcast) runs anywhere, cron and shells included, and never imports this
package; changes reach it through one door, the channel layer, fed by `broadcast.push`.
This package imports the app; `live/daphne/` holds every reach into daphne, autobahn and
Twisted internals and is imported only from here.
"""

import math
import sys
from functools import partial


def websocket_application():
    """The WebSocket stack: daphne's protocol exposed (outermost), boxed addresses refused,
    other origins refused (403, cross-site WebSocket hijacking), then the game's routes."""
    from channels.routing import URLRouter
    from django.conf import settings

    from viruses.guards import penalty

    from .daphne.transport import DaphneProtocolMiddleware
    from .origin import SameOriginValidator
    from .routing import websocket_urlpatterns

    return DaphneProtocolMiddleware(
        penalty.RefuseBoxed(
            SameOriginValidator(URLRouter(websocket_urlpatterns), settings.WS_ALLOWED_ORIGINS)
        ),
        gate=penalty.box,
    )


def lifespan_application():
    """The ASGI lifespan protocol, for the servers that speak it (uvicorn, granian; daphne
    does not): shutting down waits for this process's sockets to leave (drain.py)."""
    from .drain import drain

    async def lifespan(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await drain.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return lifespan


def start() -> None:
    """Set up this process as a server: GC tuned for many sockets, RFC close codes for
    protocol errors, lean input queues, drain on SIGTERM."""
    from . import gc_tuning
    from .daphne import transport
    from .drain import drain
    from .layers import Buffer

    if gc_tuning.serving(sys.argv):
        gc_tuning.tune()
    # Each connection's input, unbounded as daphne's own, in the layer's lean buffer.
    transport.set_protocol_options(application_queue=partial(Buffer, math.inf))
    # Under daphne, SIGTERM drains this process instead of dropping its sockets.
    drain.install()
