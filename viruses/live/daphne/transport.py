"""The one owner of every reach into daphne, autobahn and Twisted.

ASGI gives an application `send` and nothing else. The game also needs backpressure from the
client's socket and RFC 6455 close codes (1008, 1009, 1013) that autobahn refuses from an
application. Both need daphne's `WebSocketProtocol`, reachable only through daphne's own
`send`, which is `partial(Server.handle_reply, protocol)` before any middleware wraps it
(Channels' `SessionMiddleware` and `AuthMiddlewareStack` do). So the WebSocket stack is
wrapped, outermost, in `DaphneProtocolMiddleware`, which puts the protocol (None under other
servers and in-process tests) into `scope["extensions"]["daphne.protocol"]`; `Socket` reads
it from there however many layers sit in between, and refuses to start without it. The
fastlane (fanout.py) also writes ready-made frames (`text_frame`) through it, straight to
the socket when Twisted has nothing buffered for it (`Socket.write_frame`). On the first
WebSocket it finds, the middleware also makes daphne's listening socket refuse the addresses
its `gate` blocks at accept (`gate_accepts`; the game's gate is the penalty box). Policy is
handed in, never imported: this package knows daphne, not the game's rules.
"""

import asyncio
import logging
import struct
import sys
import time
import types
from functools import partial

from autobahn.exception import Disconnected
from django.core.exceptions import ImproperlyConfigured

from viruses.logs import kv

from . import surface

PROTOCOL_KEY = "daphne.protocol"
# A client that stops reading is closed (1013) once this much more waits for it on top of
# full kernel and Twisted buffers, or once its socket has not drained for this long.
SLOW_READER_BYTES = 1024 * 1024
SLOW_READER_SECONDS = 10.0
NORMAL_CLOSE = 1000
# Pings a client may send per PING_WINDOW seconds. Browsers send none; each costs a pong
# (work, and buffered bytes if the client does not read them).
PING_LIMIT = 30
PING_WINDOW = 10.0

# autobahn's options for every WebSocket daphne accepts, on top of daphne's own.
PROTOCOL_OPTIONS = {
    # A client that breaks RFC 6455 (a reserved close code or opcode, an unmasked frame, a
    # message over daphne's --websocket-max-message-size) gets a close frame with the RFC's
    # code (1002, 1007, 1009) instead of autobahn's default, a TCP reset that tells it nothing.
    "failByDrop": False,
}

# Connections the kernel queues for daphne before it accepts them. Twisted listens with 50:
# a storm of connects overflows it, the kernel drops the extra SYNs and those clients retry
# a second later (docs/performance.md#lever-listen-backlog). uvicorn listens with 2048,
# granian with 1024. The kernel caps it at net.core.somaxconn (4096 since Linux 5.4).
LISTEN_BACKLOG = 1024

# Why autobahn fails a connection, by the close code it sends.
PROTOCOL_FAILURES = {1002: "protocol_error", 1007: "invalid_payload", 1009: "too_big"}

logger = logging.getLogger(__name__)


def set_protocol_options(*, application_queue=None) -> bool:
    """Give daphne's WebSocket factory `PROTOCOL_OPTIONS` and its listening sockets
    `LISTEN_BACKLOG` before it accepts a connection.

    Under daphne only (False elsewhere). The application is imported before daphne builds
    its factory and listens (`Server.run`), so both are set once the reactor starts, as the
    first thing it runs, before it reads any socket. `application_queue`, if given, makes
    each connection's input queue instead of daphne's `asyncio.Queue` (`lean_inputs`).
    """
    if "daphne.server" not in sys.modules:
        return False
    from twisted.internet import reactor

    def apply() -> None:
        listeners = Listeners()
        server = listeners.server
        if server is None:  # not listening (daphne failed to bind): nothing to configure
            return
        listeners.deepen_backlog(LISTEN_BACKLOG)
        server.ws_factory.setProtocolOptions(**PROTOCOL_OPTIONS)
        share_protocol_options(server.ws_factory)
        answer_oversize_requests(server.http_factory)
        if application_queue is not None:
            lean_inputs(server, application_queue)
        skip_unlogged_pformat()

    reactor.callWhenRunning(apply)
    return True


def share_protocol_options(factory) -> None:
    """Give `factory`'s protocol class the factory's autobahn options, once for every connection.

    autobahn's `_connectionMade` copies its ~29 options from the factory onto each new
    protocol unless the protocol already has them: as class attributes, every connection's
    instance dict holds 72 names instead of 101, and a dict's table doubles past 85 (1.6 KB
    instead of 3.3 KB per socket, docs/performance.md#lever-shared-options). Call it after
    the factory's last `setProtocolOptions`.
    """
    protocol = factory.protocol
    for name in protocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        # A function on a class would bind to each protocol (perMessageCompressionAccept).
        setattr(protocol, name, staticmethod(value) if isinstance(value, types.FunctionType) else value)


def lean_inputs(server, make_queue) -> None:
    """daphne's `Server.create_application`, with `make_queue()` as each connection's input.

    daphne gives every connection an `asyncio.Queue` (four deques and an Event: 3 KB) that
    holds a message for a moment and then waits, empty, for the life of the socket: the
    largest object an idle socket has (docs/performance.md#lever-lean-inputs). daphne only
    calls its `put_nowait` and tests its truth (so no `__len__`), the application its `get`.
    """

    def create_application(protocol, scope):
        # daphne 4.2.3's own, but for the queue.
        assert "application_instance" not in server.connections[protocol]
        inputs = make_queue()
        scope.setdefault("asgi", {"version": "3.0"})
        send = partial(server.handle_reply, protocol)
        instance = server.application(scope=scope, receive=inputs.get, send=send)
        if protocol not in server.connections:
            return None
        server.connections[protocol]["application_instance"] = asyncio.ensure_future(
            instance, loop=asyncio.get_event_loop()
        )
        return inputs

    server.create_application = create_application


def skip_unlogged_pformat() -> None:
    """Make autobahn format its options for its per-connection debug line only when it logs it.

    Every new WebSocket runs `pformat()` over its ~30 options for `log.debug("\n{attrs}",
    attrs=pformat(...))`, at any log level: 5 % of daphne's CPU in a connect storm
    (docs/performance.md#lever-unlogged-pformat).
    """
    import autobahn.websocket.protocol as ws
    import txaio
    from txaio.interfaces import log_levels

    pformat = ws.pformat
    debug = log_levels.index("debug")

    def pformat_if_logged(obj) -> str:
        if log_levels.index(txaio.get_global_log_level()) < debug:
            return "(not formatted: autobahn logs above debug)"
        return pformat(obj)

    ws.pformat = pformat_if_logged


class DaphneProtocolMiddleware:
    """Expose daphne's protocol of each WebSocket in its scope; put it outermost.

    `gate`, if given, returns the object whose `blocks(address)` daphne's listener asks at
    accept (`gate_accepts`); it is called once, on the first WebSocket.
    """

    _asgi_single_callable = True  # a plain method returning the inner coroutine (below)

    def __init__(self, inner, *, gate=None):
        self.inner = inner
        self.gate = gate
        self.gated = gate is None  # daphne's listener asks the gate (gate_accepts)
        _check_daphne()

    def __call__(self, scope, receive, send):
        # Not async: the inner application's coroutine is returned, not awaited, so an idle
        # socket holds no frame of this middleware (docs/performance.md#lever-flat-stack).
        if scope["type"] == "websocket":
            protocol = daphne_protocol(send)
            if protocol is not None and not self.gated:
                self.gated = True
                gate_accepts(protocol.server, self.gate())
            # In place, not copied: the server made this scope for this connection alone and
            # reads nothing back from it; a copy would stay with the socket (0.5 KB).
            if scope.get("extensions") is None:
                scope["extensions"] = {}
            scope["extensions"][PROTOCOL_KEY] = protocol
        return self.inner(scope, receive, send)


def answer_oversize_requests(factory) -> None:
    """Answer 414 / 431 to a request line or headers over Twisted's limits, in JSON.

    Twisted's HTTPChannel hangs up without a word on a line over `MAX_LENGTH` (16 KiB) and
    answers a bare 400 to headers over `totalHeadersSize` (16 KiB in all).
    """
    build = factory.buildProtocol

    def build_answering(addr):
        protocol = build(addr)
        channel = getattr(protocol, "_channel", protocol)  # Twisted's generic HTTP wrapper
        if channel is not None:
            bad_request = channel._respondToBadRequestAndDisconnect
            channel.lineLengthExceeded = lambda line: _refuse_oversize(channel)
            channel._respondToBadRequestAndDisconnect = lambda: (
                _refuse_oversize(channel)
                if channel._receivedHeaderSize > channel.totalHeadersSize
                else bad_request()
            )
        return protocol

    factory.buildProtocol = build_answering


OVERSIZE_ANSWERS = {
    414: (b"URI Too Long", b'{"error": "the URL is too long"}\n'),
    431: (b"Request Header Fields Too Large", b'{"error": "the request headers are too large"}\n'),
}
OVERSIZE_LINGER = 2.0  # s to read and drop what the client still sends before closing


def _refuse_oversize(channel) -> None:
    # Still on the request line (Twisted's name-mangled flag): the URL is too long.
    status = 414 if getattr(channel, "_HTTPChannel__first_line", 0) else 431
    reason, body = OVERSIZE_ANSWERS[status]
    logger.info(kv("http.too_large", part="url" if status == 414 else "headers", status=status))
    transport = channel.transport
    transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )
    # Closing with the rest of the request unread would reset the connection, and the
    # client could lose the answer: read and drop it for a moment, as nginx lingers.
    channel.dataReceived = channel.lineReceived = lambda data: None  # lines already buffered too
    from twisted.internet import reactor

    if hasattr(transport, "loseWriteConnection"):
        transport.loseWriteConnection()
        reactor.callLater(OVERSIZE_LINGER, transport.loseConnection)
    else:
        transport.loseConnection()


def gate_accepts(server, box) -> None:
    """Make daphne's listening socket close connections from addresses `box` blocks at once.

    Twisted closes an accepted socket whose factory builds no protocol (tcp.Port.doRead):
    no byte is read, parsed or answered. Only where daphne's peer is the client: with
    --proxy-headers it is the proxy (whose limit_req then paces handshakes), and
    the game's handshake check (guards/penalty.py, RefuseBoxed) refuses boxed players instead.
    """
    if not box.on:
        return
    if server.proxy_forwarded_address_header:
        logger.info(kv("server.accept_gate", state="off", reason="proxy_headers"))
        return
    factory = server.http_factory
    build = factory.buildProtocol
    blocks = box.blocks

    def build_unless_blocked(addr):
        host = getattr(addr, "host", None)  # a unix socket's peer has none: a proxy
        if host is not None and blocks(host):
            return None
        return build(addr)

    factory.buildProtocol = build_unless_blocked
    logger.info(kv("server.accept_gate", state="on"))


def daphne_protocol(send):
    """Return the protocol behind daphne's own `send`, or None when another server calls us."""
    func = getattr(send, "func", None)
    name = (getattr(func, "__module__", ""), getattr(func, "__qualname__", ""))
    if not (isinstance(send, partial) and name == ("daphne.server", "Server.handle_reply")):
        if _serving():  # daphne's send changed: the game still runs, without what needs the protocol
            surface.failed("daphne.server.Server.handle_reply", "no backpressure, close codes or fastlane")
        return None
    protocol = send.args[0] if send.args else None
    if not hasattr(protocol, "sendCloseFrame"):
        raise RuntimeError(
            "daphne's send is not partial(handle_reply, protocol): update viruses/live/daphne/transport.py"
        )
    return protocol


def _serving() -> bool:
    """Whether Twisted's reactor runs in this process: under daphne, not in a test."""
    return bool(getattr(sys.modules.get("twisted.internet.reactor"), "running", False))


def _check_daphne() -> None:
    """Under daphne, fail at start-up rather than per socket if an internal it relies on is gone."""
    if "daphne.server" not in sys.modules:  # another server: nothing to check
        return
    gone = surface.missing()
    if gone:
        raise ImproperlyConfigured(
            "an internal of daphne, autobahn, Twisted or channels-redis is gone (update "
            "viruses/live/daphne/surface.py and the code using it): " + "; ".join(gone)
        )
    if drift := surface.unverified():
        versions = ",".join(f"{name}={installed}" for name, (_, installed) in drift.items())
        logger.warning(kv("server.unverified_versions", installed=versions, checks="viruses.W010"))


class Socket:
    """One client's WebSocket: send, close with any RFC code, and tell a reader that is stuck.

    `send` is the ASGI send the consumer got (possibly wrapped by middleware); the daphne
    protocol, when there is one, comes from the scope (module docstring).
    """

    # Slots, here and in the two classes below: one of each per socket, or three per socket.
    __slots__ = (
        "protocol", "client", "_send", "on_abuse", "outbox", "open", "cut", "pings",
        "refused_pings", "_sends_directly", "_answer_ping", "_fail_connection",
    )  # fmt: skip

    def __init__(self, scope, send, *, on_abuse=None):
        extensions = scope.get("extensions") or {}
        if PROTOCOL_KEY not in extensions:
            raise ImproperlyConfigured(
                "the WebSocket application must be wrapped in transport.DaphneProtocolMiddleware (outermost)"
            )
        self.protocol = extensions[PROTOCOL_KEY]
        self.client = scope["client"][0] if scope.get("client") else None
        self._send = send
        self.on_abuse = on_abuse  # on_abuse(client, reason) when this socket is cut for abuse
        self.outbox = SendBuffer()
        self.open = False
        self.cut = False  # closed by the fastlane (close_now): nothing more is sent
        self.pings = SlidingWindow(PING_LIMIT, PING_WINDOW)
        self.refused_pings = False
        self._sends_directly: bool | None = None
        if self.protocol is not None:
            # autobahn answers pings itself, below ASGI: the app's own limits never see them.
            self._answer_ping = self.protocol.onPing
            self.protocol.onPing = self._on_ping
            # autobahn fails a connection that breaks the protocol below ASGI too (PROTOCOL_OPTIONS).
            self._fail_connection = self.protocol._fail_connection
            self.protocol._fail_connection = self._on_protocol_failure

    def _on_ping(self, payload: bytes) -> None:
        """autobahn's `onPing` for this socket: pong only within the limit, and to a reader."""
        if self.refused_pings:
            return
        if self.pings.exceeded():
            self._refuse_pings("ping_flood")
        elif self.outbox.paused_at is not None:
            # The client is not reading what it is sent: a pong would only pile up here.
            self._refuse_pings("ping_unread")
        else:
            self._answer_ping(payload)

    def _on_protocol_failure(self, code: int = 1001, reason: str = "going away") -> None:
        """autobahn's `_fail_connection` for this socket: log the first failure, fail, and
        put the close frame on the wire at once."""
        if not self.protocol.failedByMe:
            # autobahn's reason stays out: it may quote what the client sent.
            cause = PROTOCOL_FAILURES.get(code, "protocol_failure")
            logger.warning(kv("ws.close", reason=cause, client=self.client, code=code))
        self._fail_connection(code, reason)
        transport = getattr(self.protocol, "transport", None)
        if self.sends_directly and transport.connected and not transport.disconnecting:
            # A bad close frame fails the connection and is then taken as the client's reply
            # to our close, and autobahn aborts at once (a reset), which would throw away the
            # close frame still in Twisted's buffer.
            transport.doWrite()

    def _refuse_pings(self, reason: str) -> None:
        self.refused_pings = True
        logger.warning(kv("ws.close", reason=reason, client=self.client, limit=PING_LIMIT))
        if self.on_abuse is not None:
            self.on_abuse(self.client, reason)
        self.protocol.sendCloseFrame(code=1008)
        # Hang up rather than wait for the client's close: autobahn would read and parse
        # every frame the abuser already sent (megabytes of pings, until its close handshake
        # times out a second later), and that CPU is everybody else's latency. Twisted stops
        # reading now and closes once the close frame is written.
        self.protocol.transport.loseConnection()

    def opened(self) -> None:
        """Start watching the socket's buffer; call once the handshake is accepted."""
        self.open = True
        self.outbox.watch(self.protocol)

    def forget_handshake(self, scope) -> None:
        """Drop the handshake's headers, which nothing reads once the consumer has connected.

        autobahn keeps the request's raw bytes and its parsed headers, daphne its cleaned
        copy (the scope's `headers`, shared by every copy of the scope), for the life of
        the socket (docs/performance.md#lever-forget-handshake). Under daphne only.
        """
        protocol = self.protocol
        if protocol is None:
            return
        if isinstance(scope.get("headers"), list):
            scope["headers"].clear()  # in place: the router's copies of the scope share it
        if isinstance(getattr(protocol, "http_headers", None), dict):
            protocol.http_headers.clear()  # in place: autobahn's ConnectionRequest shares it
        protocol.http_request_data = b""

    async def send(self, text: str) -> bool:
        """Send one text frame; False when the client has already gone (a disconnect follows)."""
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Disconnected:
            return False
        return True

    @property
    def sends_directly(self) -> bool:
        """Whether `write_frame` may try the socket before Twisted's buffer (plain TCP only)."""
        if self._sends_directly is None:
            from twisted.internet.tcp import Connection  # here: once daphne has installed its reactor

            transport = getattr(self.protocol, "transport", None)
            self._sends_directly = isinstance(transport, Connection) and hasattr(transport, "_tempDataBuffer")
            if isinstance(transport, Connection) and not self._sends_directly:
                surface.failed(
                    f"{surface.TCP}.Connection._tempDataBuffer", "fastlane writes wait for Twisted"
                )
        return self._sends_directly

    def takes_frames(self) -> bool:
        """Whether `write_frame` may write ready-made frames to this socket (`text_frame`).

        Only under daphne, once open, and only as autobahn would frame them itself: no
        compression, unmasked, unfragmented (daphne's settings).
        """
        protocol = self.protocol
        if not (self.open and protocol is not None and protocol.state == protocol.STATE_OPEN):
            return False
        if not hasattr(protocol, "_perMessageCompress"):  # compression unknown: let autobahn frame
            surface.failed(f"{surface.DAPHNE_WS}.WebSocketProtocol._perMessageCompress", "no fastlane")
            return False
        return (
            protocol._perMessageCompress is None
            and not protocol.maskServerFrames
            and not protocol.autoFragmentSize
        )

    def write_frame(self, frame: bytes) -> bool:
        """Write a frame made by `text_frame` now, in order with every other send; False once closing."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return False
        if protocol.send_queue:  # autobahn has frames waiting to go out before this one
            protocol.sendData(frame)
            return True
        transport = protocol.transport
        if self.sends_directly and _idle(transport):
            # Nothing waits in Twisted's buffer: send at once, as asyncio's own transports
            # do. Through `write` Twisted registers the socket for writability and back for
            # each message, most of a delivery's cost (docs/performance.md#lever-direct-write).
            sent = transport.writeSomeData(frame)
            if isinstance(sent, int):
                if sent == len(frame):
                    return True
                frame = frame[sent:]
        transport.write(frame)  # the rest, or the error, Twisted's way
        return True

    def close_now(self, code: int, reason: str = "", hang_up: bool = False) -> None:
        """Send a close frame with an RFC code at once (an open socket under daphne only).

        `hang_up`: close the connection once the frame is written instead of waiting for the
        client's reply, which a busy server would read late: the client is gone at once.
        """
        self.cut = True
        if reason:
            self.protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode())
        else:
            self.protocol.sendCloseFrame(code=code)
        if hang_up:
            self.protocol.transport.loseConnection()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close with `code` (None or True, as Channels' `send(close=True)` passes: 1000)."""
        if code is None or code is True:
            code = NORMAL_CLOSE
        if self.open and self.protocol is not None and code != NORMAL_CLOSE and not 3000 <= code <= 4999:
            # autobahn refuses application close codes other than 1000 and 3000-4999: the app
            # would crash and the client get 1011. Send the frame ourselves, as daphne does
            # for its own 1011.
            self.protocol.sendCloseFrame(code=code)
            return
        message = {"type": "websocket.close", "code": code}
        if reason:
            message["reason"] = reason
        await self._send(message)


def _idle(transport) -> bool:
    """Twisted's transport is open and has nothing buffered (abstract.FileDescriptor)."""
    return (
        transport.connected
        and not transport.disconnecting
        and not transport._tempDataBuffer
        and not transport.dataBuffer
    )


def text_frame(text: str) -> bytes:
    """`text` as one WebSocket text frame, exactly as autobahn frames a server's message.

    RFC 6455 5.2: FIN and opcode 1, then the length (7 bits, or 126 and 16 bits, or 127 and
    64 bits), no mask (servers never mask), then the payload. The same bytes go to every
    client, so a group event is framed once for all of them.
    """
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


PRODUCER_API = ("producer", "registerProducer", "unregisterProducer")  # Twisted's transports


class SendBuffer:
    """Tells whether a client drains its socket, through Twisted's producer API.

    `send()` never blocks: daphne hands every message to a Twisted transport that buffers
    without limit, so a client that stops reading would grow the server's memory for as long
    as changes happen. Registered as a streaming producer, this object is paused by Twisted
    once 64 KiB wait in its buffer (the kernel's buffers being full already) and resumed when
    everything has been written. Other ASGI servers: nothing is watched (`stuck` is False).
    """

    __slots__ = ("paused_at", "backlog")

    def __init__(self):
        self.paused_at: float | None = None
        self.backlog = 0  # bytes sent since the transport paused us

    def watch(self, protocol) -> None:
        if protocol is None:
            return
        transport = getattr(protocol, "transport", None)
        if not all(hasattr(transport, name) for name in PRODUCER_API):
            surface.failed(f"{surface.TCP}.Connection.registerProducer", "no backpressure: slow readers stay")
            return
        if transport.producer is not None:
            # The HTTP channel that did the upgrade, idle since: it would only stop
            # reading from the socket, so the client's close or pong would go unread.
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    def pauseProducing(self) -> None:  # Twisted IPushProducer
        if self.paused_at is None:
            self.paused_at = time.monotonic()

    def resumeProducing(self) -> None:
        self.paused_at, self.backlog = None, 0

    def stopProducing(self) -> None:
        pass

    def stuck(self, size: int) -> bool:
        """Count `size` more bytes to send; True when the client is not reading them."""
        if self.paused_at is None:
            return False
        self.backlog += size
        return self.backlog > SLOW_READER_BYTES or time.monotonic() - self.paused_at > SLOW_READER_SECONDS

    def state(self) -> dict:
        paused = 0.0 if self.paused_at is None else time.monotonic() - self.paused_at
        return {"backlog": self.backlog, "paused_s": paused}


class SlidingWindow:
    """At most `limit` events in any `seconds`-long window (a client's messages or pings)."""

    __slots__ = ("limit", "seconds", "times")

    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        # A list: every socket has two windows, mostly empty; an empty deque is 13 times
        # the size of an empty list (docs/performance.md#lever-memory-idle-socket).
        self.times: list[float] = []

    def exceeded(self) -> bool:
        """Count one event now; True when it is one too many."""
        now = time.monotonic()
        times = self.times
        old = 0
        while old < len(times) and now - times[old] >= self.seconds:
            old += 1
        del times[:old]
        times.append(now)
        return len(times) > self.limit


# --- leaving on SIGTERM (drain.py) ------------------------------------------------------


def on_sigterm(callback) -> bool:
    """Call `callback()` in the reactor on SIGTERM instead of Twisted's immediate stop.

    Under daphne only (False elsewhere: runserver, tests). Twisted installs its own handler
    when the reactor starts, so ours replaces it from a `callWhenRunning`.
    """
    if "daphne.server" not in sys.modules:
        return False
    import signal
    import threading

    from twisted.internet import reactor

    def install() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(callback))

    reactor.callWhenRunning(install)
    return True


def stop_reactor() -> None:
    """Stop the server as Twisted's SIGTERM would: daphne cancels what is left, then exits."""
    from twisted.internet import reactor

    if reactor.running:
        reactor.stop()


class Listeners:
    """daphne's listening ports in this process and the HTTP connections they accepted."""

    def __init__(self):
        from daphne.http_protocol import HTTPFactory
        from twisted.internet import reactor

        self.reactor = reactor
        self.ports = [r for r in reactor.getReaders() if isinstance(getattr(r, "factory", None), HTTPFactory)]
        self.server = self.ports[0].factory.server if self.ports else None

    def deepen_backlog(self, backlog: int) -> None:
        """Let the kernel queue `backlog` connections on each port (TCP, unix socket or fd).

        Linux takes a second `listen()` on a listening socket as a new backlog.
        """
        for port in self.ports:
            sock = getattr(port, "socket", None)
            if sock is None:
                surface.failed(f"{surface.TCP}.Port.socket", "the listen backlog stays Twisted's 50")
                continue
            sock.listen(backlog)
            port.backlog = backlog  # what Twisted would listen with again

    def stop_listening(self) -> None:
        """Refuse new connections: a proxy's connect fails at once and goes to another node."""
        for port in self.ports:
            port.stopListening()

    def busy_requests(self) -> int:
        """HTTP requests still being answered; each will close its connection once answered."""
        from daphne.http_protocol import WebRequest

        busy = 0
        connections = getattr(self.server, "connections", None)
        if connections is None:
            if self.server is not None:
                surface.failed("daphne.server.Server.connections", "drain cuts HTTP requests in flight")
            return 0
        for protocol, details in list(connections.items()):
            if isinstance(protocol, WebRequest) and "disconnected" not in details:
                busy += 1
                channel = getattr(protocol, "channel", None)
                if channel is not None:
                    channel.persistent = False  # Twisted closes the connection after the answer
                if not protocol.startedWriting:
                    protocol.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        return busy

    def close_idle(self) -> int:
        """Close keep-alive HTTP connections waiting for a request; return how many."""
        closed = 0
        for reader in self.reactor.getReaders():
            channel = _http_channel(getattr(reader, "protocol", None))
            if channel is not None and not channel.requests:
                reader.loseConnection()
                closed += 1
        return closed


def _http_channel(protocol):
    """The HTTPChannel a connection's protocol is, or wraps (Twisted's generic HTTP wrapper)."""
    from twisted.web import http

    if isinstance(protocol, http.HTTPChannel):
        return protocol
    wrapper = getattr(http, "_GenericHTTPChannelProtocol", None)
    if wrapper is None or not isinstance(protocol, wrapper):
        return None  # a WebSocket, a listening port
    channel = getattr(protocol, "_channel", None)
    if not isinstance(channel, http.HTTPChannel):
        surface.failed(
            "twisted.web.http._GenericHTTPChannelProtocol._channel", "idle keep-alives are cut at exit"
        )
        return None
    return channel
