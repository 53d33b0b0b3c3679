"""The project's ASGI application (virusgame.asgi, as shipped) with code paths varied by BENCH_LEVERS.

- `dbhop`: group events go through Channels' own `dispatch`, which runs
  `aclose_old_connections()` (a sync_to_async thread hop) before every handler, as the
  project did before it relayed group events directly (viruses/live/consumers.py).
- `nobatch`: one `group_send` per push, never a batch of the pushes queued meanwhile
  (viruses/broadcast.py, `Pusher`).
- `corepop`: the layer's reader pops with the core layer's `receive_single` (an EVAL, a
  BZPOPMIN, a ZADD and a ZPOPMIN per message) instead of one BZPOPMIN (viruses/live/layers.py).
- `queuebuffer`: the core layer's `BoundedQueue` (an asyncio.Queue) as each channel's receive
  buffer instead of the layer's `Buffer`.
- `threehops`: Django's own `ASGIHandler.handle` (three thread hops per request and a task
  waiting for the disconnect) instead of the handler's one hop (virusgame/handler.py).
- `daphnequeue`: daphne's own `asyncio.Queue` as each connection's input instead of a
  `Buffer` (viruses/live/daphne/transport.py, `lean_inputs`).
- `pformat`: autobahn formats its options for its debug line on every connection, at any
  log level (transport.py, `skip_unlogged_pformat`).
- `copiedoptions`: autobahn copies its options onto every connection's protocol instead of
  reading them from the class (transport.py, `share_protocol_options`).
- `keephandshake`: every socket keeps its handshake's headers for its life (transport.py,
  `Socket.forget_handshake`).
- `twotrips`: `group_send` reads the group, then runs one script per host (two Redis round
  trips) instead of one script doing both (viruses/live/layers.py).
- `asynciowait`: each consumer waits on its two receives with Channels' `await_many_dispatch`
  (`asyncio.wait`) instead of `dispatch_each` (viruses/live/consumers.py).
- `backlog50`: daphne's ports listen with Twisted's backlog of 50 instead of 1024
  (transport.py, `LISTEN_BACKLOG`).
- `coregroupadd`: each `group_add` sends the core layer's ZADD and EXPIRE, two round trips,
  instead of one pipeline for every channel joining meanwhile (viruses/live/layers.py).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.levers.settings")
django.setup(set_prefix=False)  # before the patches import models

from asgiref.sync import sync_to_async  # noqa: E402
from channels.consumer import AsyncConsumer  # noqa: E402
from channels.utils import await_many_dispatch  # noqa: E402
from channels_redis.core import BoundedQueue, RedisChannelLayer  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from bench.levers import enabled  # noqa: E402
from viruses import broadcast  # noqa: E402
from viruses.live import consumers, layers  # noqa: E402
from viruses.live.consumers import VirusConsumer  # noqa: E402
from viruses.live.daphne import transport  # noqa: E402
from viruses.live.layers import LocalFanoutRedisChannelLayer  # noqa: E402
from virusgame.handler import PooledASGIHandler  # noqa: E402

if enabled("dbhop"):
    VirusConsumer.dispatch = AsyncConsumer.dispatch
if enabled("nobatch"):
    broadcast.BATCH_MAX = 1
if enabled("corepop"):
    LocalFanoutRedisChannelLayer._pop = LocalFanoutRedisChannelLayer.receive_single
if enabled("queuebuffer"):
    layers.Buffer = BoundedQueue  # the layer is made later, at its first use
if enabled("threehops"):

    async def get_response_async(self, request):  # the chain is built in sync mode
        return await sync_to_async(self.get_response)(request)

    PooledASGIHandler.handle = ASGIHandler.handle
    PooledASGIHandler.get_response_async = get_response_async
if enabled("daphnequeue"):
    transport.lean_inputs = lambda server, make_queue: None  # called once the reactor runs
if enabled("pformat"):
    transport.skip_unlogged_pformat = lambda: None
if enabled("copiedoptions"):
    transport.share_protocol_options = lambda factory: None
if enabled("keephandshake"):
    transport.Socket.forget_handshake = lambda self, scope: None
if enabled("twotrips"):
    LocalFanoutRedisChannelLayer._one_trip = lambda self: False
if enabled("asynciowait"):
    consumers.dispatch_each = await_many_dispatch
if enabled("backlog50"):
    transport.LISTEN_BACKLOG = 50
if enabled("coregroupadd"):
    LocalFanoutRedisChannelLayer.group_add = RedisChannelLayer.group_add

from virusgame.asgi import application  # noqa: E402, F401
