"""The private surface: every internal of daphne, autobahn, Twisted and channels-redis the server uses.

Verified against daphne 4.2.3, autobahn 26.11.1, Twisted 26.10.0 and channels-redis 4.3.0
(`VERIFIED`; a test checks they are requirements.lock's). `SURFACE` lists
each reach once: a module's name, a class's method (with the parameters it is called with,
when it is called or replaced), or an attribute set on instances, which is looked for among
the names the code of the class and its bases uses. `missing()` returns what is gone;
the same list backs the start-up guard (transport.DaphneProtocolMiddleware), the system
checks (checks.py: viruses.E010 when a reach is gone, viruses.W010 when an installed
version differs) and the fast test, tests/unit/test_daphne_surface.py.

After an upgrade (a pin raised in requirements.txt, or `make lock LOCK_ARGS=--upgrade`; any
make target then installs the new lock), run
`.venv/bin/pytest tests/unit/test_daphne_surface.py`: each reach that is gone fails there
by name, in seconds. Fix the code that uses it (transport.py, layers.py), run the system
tests (tests/system/), then set `VERIFIED` to the new versions.

Where a reach still fails at run time, the code falls back to the plain path and says so
once per process and reach (`failed`: event `server.private_reach_failed`), counted in
`virusgame_private_reach_failures`.
"""

import functools
import importlib
import importlib.metadata
import inspect
import logging
from dataclasses import dataclass

from viruses import metrics
from viruses.logs import kv

# Distribution name -> the version this package was verified against.
VERIFIED = {"daphne": "4.2.3", "autobahn": "26.11.1", "twisted": "26.10.0", "channels-redis": "4.3.0"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reach:
    """One internal the code relies on: `module`, then a dotted `name` inside it."""

    module: str
    name: str
    params: tuple[str, ...] | None = None  # the callable's leading parameters, as we call it
    instance: bool = False  # the last part is set on instances (`self.<name>`), not on the class
    says: str | None = None  # text its source must still contain (a log message we parse)

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"

    def problem(self) -> str | None:
        """Return why this reach fails in the installed packages, or None."""
        try:
            found = importlib.import_module(self.module)
        except ImportError as exc:
            return f"{self} is gone: {exc}"
        *owners, last = self.name.split(".")
        for part in owners:
            if not hasattr(found, part):
                return f"{self} is gone: {found.__name__} has no {part}"
            found = getattr(found, part)
        if self.instance:
            if not (hasattr(found, last) or _sets(found, last)):
                return f"{self} is gone: neither {found.__name__} nor its bases use .{last}"
            return None
        if not hasattr(found, last):
            return f"{self} is gone"
        found = getattr(found, last)
        if self.params is not None:
            names = tuple(inspect.signature(found).parameters)
            if names[: len(self.params)] != self.params:
                expected = ", ".join(self.params)
                return f"{self} changed: its parameters are ({', '.join(names)}), not ({expected})"
        if self.says is not None and self.says not in inspect.getsource(found):
            return f"{self} no longer says {self.says!r}"
        return None


def _sets(cls: type, name: str) -> bool:
    return any(name in _names(klass) for klass in cls.__mro__)


@functools.cache
def _names(cls: type) -> frozenset[str]:
    """The attribute names the code of `cls`'s own methods uses (instances get theirs there).

    From the bytecode: a class's source needs its whole module parsed, a second for these.
    """
    names: set[str] = set()
    codes = []
    for member in vars(cls).values():
        member = getattr(member, "fget", member)  # a property's getter
        member = getattr(member, "__func__", member)  # a classmethod's or staticmethod's function
        if inspect.isfunction(member):
            codes.append(member.__code__)
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(const for const in code.co_consts if inspect.iscode(const))  # nested functions
    return frozenset(names)


DAPHNE_WS = "daphne.ws_protocol"  # daphne's WebSocketProtocol: autobahn's server protocol on Twisted
TCP = "twisted.internet.tcp"
LAYER = "channels_redis.core"

SURFACE = (
    # transport.DaphneProtocolMiddleware: the protocol behind daphne's own `send`.
    Reach("daphne.server", "Server.handle_reply", params=("self", "protocol", "message")),
    Reach(DAPHNE_WS, "WebSocketProtocol.server", instance=True),
    # transport.lean_inputs: daphne's per-connection application, with a lean input queue.
    Reach("daphne.server", "Server.create_application", params=("self", "protocol", "scope")),
    Reach("daphne.server", "Server.application", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.application_queue", instance=True),
    # transport.skip_unlogged_pformat: autobahn's per-connection debug line.
    Reach("autobahn.websocket.protocol", "pformat"),
    Reach(
        "autobahn.websocket.protocol",
        "WebSocketProtocol._connectionMade",
        says="attrs=pformat(configAttrLog)",
    ),
    Reach("txaio", "get_global_log_level"),
    # transport.share_protocol_options: autobahn copies no option the protocol class has.
    Reach(DAPHNE_WS, "WebSocketProtocol.CONFIG_ATTRS"),
    Reach(
        "autobahn.websocket.protocol",
        "WebSocketProtocol._connectionMade",
        says="if not hasattr(self, configAttr)",
    ),
    # transport.Socket.forget_handshake: the handshake's request, kept by autobahn.
    Reach(DAPHNE_WS, "WebSocketProtocol.http_headers", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.http_request_data", instance=True),
    # transport.gate_accepts: the listener refuses boxed addresses at accept.
    Reach("daphne.server", "Server.proxy_forwarded_address_header", instance=True),
    Reach("daphne.server", "Server.http_factory", instance=True),
    Reach("daphne.http_protocol", "HTTPFactory.buildProtocol", params=("self", "addr")),
    # transport.Socket: close codes, the ping limit, the fastlane's frames.
    Reach("autobahn.exception", "Disconnected"),
    Reach(DAPHNE_WS, "WebSocketProtocol.onPing", params=("self", "payload")),
    Reach(DAPHNE_WS, "WebSocketProtocol.sendCloseFrame", params=("self", "code", "reasonUtf8")),
    Reach(DAPHNE_WS, "WebSocketProtocol.sendData", params=("self", "data")),
    Reach(DAPHNE_WS, "WebSocketProtocol.STATE_OPEN"),
    Reach(DAPHNE_WS, "WebSocketProtocol.state", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.send_queue", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol._perMessageCompress", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.maskServerFrames", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.autoFragmentSize", instance=True),
    Reach(DAPHNE_WS, "WebSocketProtocol.transport"),
    # transport.Socket.write_frame and SendBuffer: Twisted's TCP transport and its buffers.
    Reach(TCP, "Connection"),
    Reach(TCP, "Connection.writeSomeData", params=("self", "data")),
    Reach(TCP, "Connection.write"),
    Reach(TCP, "Connection._tempDataBuffer", instance=True),
    Reach(TCP, "Connection.dataBuffer"),
    Reach(TCP, "Connection.connected"),
    Reach(TCP, "Connection.disconnecting"),
    Reach(TCP, "Connection.loseConnection"),
    Reach(TCP, "Connection.producer"),
    Reach(TCP, "Connection.registerProducer", params=("self", "producer", "streaming")),
    Reach(TCP, "Connection.unregisterProducer", params=("self",)),
    # transport.on_sigterm, stop_reactor, Listeners (drain.py): daphne's reactor and connections.
    Reach("twisted.internet.asyncioreactor", "AsyncioSelectorReactor.getReaders"),
    Reach("twisted.internet.asyncioreactor", "AsyncioSelectorReactor.callWhenRunning"),
    Reach("twisted.internet.asyncioreactor", "AsyncioSelectorReactor.callFromThread"),
    Reach("twisted.internet.asyncioreactor", "AsyncioSelectorReactor.stop"),
    Reach("twisted.internet.asyncioreactor", "AsyncioSelectorReactor.running", instance=True),
    Reach(TCP, "Port.factory"),
    Reach(TCP, "Port.socket", instance=True),  # Listeners.deepen_backlog
    Reach(TCP, "Port.backlog", instance=True),
    Reach(TCP, "Port.stopListening"),
    Reach(TCP, "Connection.protocol", instance=True),
    Reach("daphne.server", "Server.connections", instance=True),
    Reach("daphne.http_protocol", "WebRequest"),
    Reach("daphne.http_protocol", "WebRequest.channel", instance=True),
    Reach("daphne.http_protocol", "WebRequest.startedWriting"),
    Reach("daphne.http_protocol", "WebRequest.responseHeaders", instance=True),
    Reach("twisted.web.http", "HTTPChannel.requests", instance=True),
    Reach("twisted.web.http", "HTTPChannel.persistent"),
    Reach("twisted.web.http", "_GenericHTTPChannelProtocol._channel", instance=True),
    # layers.LocalFanoutRedisChannelLayer: the core layer's internals it builds on.
    Reach(LAYER, "RedisChannelLayer.create_pool", params=("self", "index")),
    Reach(LAYER, "RedisChannelLayer.deserialize", params=("self", "message")),
    Reach(LAYER, "RedisChannelLayer.brpop_timeout"),
    Reach(LAYER, "RedisChannelLayer.connection", params=("self", "index")),
    Reach(LAYER, "RedisChannelLayer.consistent_hash", params=("self", "value")),
    Reach(LAYER, "RedisChannelLayer._group_key", params=("self", "group")),
    Reach(
        LAYER,
        "RedisChannelLayer._map_channel_keys_to_connection",
        params=("self", "channel_names", "message"),
    ),
    Reach(LAYER, "RedisChannelLayer.non_local_name", params=("self", "name")),
    Reach(LAYER, "RedisChannelLayer.require_valid_group_name", params=("self", "name")),
    Reach(LAYER, "RedisChannelLayer.require_valid_channel_name", params=("self", "name")),
    Reach(LAYER, "RedisChannelLayer.hosts", instance=True),
    Reach(LAYER, "RedisChannelLayer.expiry", instance=True),
    Reach(LAYER, "RedisChannelLayer.group_expiry", instance=True),
    Reach(LAYER, "RedisChannelLayer.client_prefix", instance=True),
    Reach(LAYER, "RedisChannelLayer.receive_buffer", instance=True),
    Reach(LAYER, "RedisChannelLayer.prefix", instance=True),
    Reach(LAYER, "RedisChannelLayer.capacity", instance=True),
    # group_send in one trip: what decides whether the script can build the core layer's payloads.
    Reach(LAYER, "RedisChannelLayer.ring_size", instance=True),
    Reach(LAYER, "RedisChannelLayer.channel_capacity", instance=True),
    Reach(LAYER, "RedisChannelLayer._serializer", instance=True),
    Reach("channels_redis.serializers", "MsgPackSerializer.as_bytes"),
    Reach("channels_redis.serializers", "BaseMessageSerializer.crypter", instance=True),
    Reach("channels_redis.serializers", "BaseMessageSerializer.random_prefix_length", instance=True),
    # viruses.logs.LayerDropFilter turns this line into layer.drop (and its metric).
    Reach(LAYER, "RedisChannelLayer.group_send", says="%s of %s channels over capacity in group %s"),
    # consumers.py replaces Channels' dispatch (without its per-message connection clean-up).
    Reach("channels.consumer", "AsyncConsumer.dispatch", params=("self", "message")),
    Reach("channels.consumer", "get_handler_name", params=("message",)),
    # consumers.VirusConsumer.serve is Channels' __call__ with another wait: the state it sets.
    Reach("channels.consumer", "AsyncConsumer.__call__", params=("self", "scope", "receive", "send")),
    Reach("channels.consumer", "AsyncConsumer.channel_layer_alias"),
    Reach("channels.consumer", "AsyncConsumer.channel_receive", instance=True),
    Reach("channels.consumer", "AsyncConsumer.base_send", instance=True),
)


def missing(surface=SURFACE) -> list[str]:
    """Return one line for each reach of `surface` the installed packages no longer have."""
    return [problem for reach in surface if (problem := reach.problem()) is not None]


def unverified() -> dict[str, tuple[str, str | None]]:
    """Return {package: (verified, installed)} for each package installed at another version."""
    drift = {}
    for name, verified in VERIFIED.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != verified:
            drift[name] = (verified, installed)
    return drift


_said: set[str] = set()


def failed(reach: str, effect: str) -> None:
    """Count a reach that failed at run time; log it the first time in this process."""
    metrics.private_reach_failed(reach)
    if reach not in _said:
        _said.add(reach)
        logger.warning(kv("server.private_reach_failed", reach=reach, effect=effect))
