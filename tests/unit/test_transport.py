"""viruses/live/daphne/transport.py: close codes and backpressure over real daphne sockets, with and
without middleware that wraps `send`; SendBuffer and Socket against fakes."""

import sys
from functools import partial

import pytest
from autobahn.exception import Disconnected
from django.core.exceptions import ImproperlyConfigured
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from viruses.live.daphne import transport

pytestmark = pytest.mark.timeout(120)

APPLICATIONS = {
    "plain": "virusgame.asgi:application",
    "auth_middleware": "tests.support.auth_asgi:application",
}


class FakeTransport:
    """The part of Twisted's transport that SendBuffer and the ping limit use."""

    def __init__(self, producer=None):
        self.producer = producer
        self.streaming = None
        self.hung_up = False

    def loseConnection(self):
        self.hung_up = True

    def registerProducer(self, producer, streaming):
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self):
        self.producer = None


class FakeProtocol:
    """The part of daphne's WebSocketProtocol (autobahn) that Socket uses."""

    def __init__(self, transport=None):
        self.transport = transport or FakeTransport()
        self.close_frames = []
        self.pongs = []

    def sendCloseFrame(self, code=None):
        self.close_frames.append(code)

    def onPing(self, payload):
        self.pongs.append(payload)

    failedByMe = False

    def _fail_connection(self, code, reason):
        self.failedByMe = True
        self.close_frames.append(code)


def test_send_buffer_replaces_the_upgrade_channel_as_the_streaming_producer():
    fake = FakeTransport(producer=object())
    buffer = transport.SendBuffer()
    buffer.watch(FakeProtocol(fake))
    assert (fake.producer, fake.streaming) == (buffer, True)


def test_send_buffer_is_stuck_only_while_paused_and_past_the_byte_limit():
    buffer = transport.SendBuffer()
    assert not buffer.stuck(10 * transport.SLOW_READER_BYTES)  # never paused: draining
    buffer.pauseProducing()
    assert not buffer.stuck(transport.SLOW_READER_BYTES)
    assert buffer.stuck(1)
    assert buffer.state()["backlog"] == transport.SLOW_READER_BYTES + 1
    buffer.resumeProducing()
    assert not buffer.stuck(10 * transport.SLOW_READER_BYTES)
    assert buffer.state() == {"backlog": 0, "paused_s": 0}


def test_send_buffer_is_stuck_when_paused_for_too_long():
    buffer = transport.SendBuffer()
    buffer.pauseProducing()
    assert not buffer.stuck(1)
    buffer.paused_at -= transport.SLOW_READER_SECONDS + 1
    assert buffer.stuck(1)
    assert buffer.state()["paused_s"] > transport.SLOW_READER_SECONDS


def test_send_buffer_watches_nothing_without_daphne():
    buffer = transport.SendBuffer()
    buffer.watch(None)
    assert not buffer.stuck(10 * transport.SLOW_READER_BYTES)


class Sent(list):
    async def __call__(self, message):
        self.append(message)


def socket(protocol=None) -> tuple[transport.Socket, Sent]:
    sent = Sent()
    return transport.Socket({"extensions": {transport.PROTOCOL_KEY: protocol}}, sent), sent


@pytest.mark.parametrize("code", [None, True])
async def test_close_without_a_code_or_with_true_is_a_normal_close(code):
    sock, sent = socket(FakeProtocol())
    sock.opened()
    await sock.close(code)
    assert sent == [{"type": "websocket.close", "code": 1000}]


async def test_rfc_codes_go_as_close_frames_and_application_codes_through_asgi():
    protocol = FakeProtocol()
    sock, sent = socket(protocol)
    sock.opened()
    await sock.close(1013)
    await sock.close(4000, "bye")
    assert protocol.close_frames == [1013]
    assert sent == [{"type": "websocket.close", "code": 4000, "reason": "bye"}]


async def test_close_before_the_handshake_refuses_through_asgi():
    protocol = FakeProtocol()
    sock, sent = socket(protocol)
    await sock.close(1008)
    assert protocol.close_frames == []
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_send_to_a_client_that_left_reports_it():
    async def gone(message):
        raise Disconnected("gone")

    sock = transport.Socket({"extensions": {transport.PROTOCOL_KEY: None}}, gone)
    assert not await sock.send("{}")


def test_a_socket_without_the_middleware_refuses_to_start():
    with pytest.raises(ImproperlyConfigured, match="DaphneProtocolMiddleware"):
        transport.Socket({"type": "websocket"}, Sent())


class Server:
    """Stands in for daphne.server.Server, whose `send` is partial(handle_reply, protocol)."""

    async def handle_reply(self, protocol, message):
        pass

    handle_reply.__module__ = "daphne.server"


def test_only_daphnes_own_send_yields_a_protocol():
    assert transport.daphne_protocol(Sent()) is None
    protocol = FakeProtocol()
    assert transport.daphne_protocol(partial(Server().handle_reply, protocol)) is protocol


def test_a_daphne_send_without_a_protocol_fails_loudly():
    with pytest.raises(RuntimeError, match="update viruses/live/daphne/transport.py"):
        transport.daphne_protocol(partial(Server().handle_reply, object()))


def test_sliding_window_allows_the_limit_then_refuses_until_old_events_age_out():
    window = transport.SlidingWindow(3, 10.0)
    assert [window.exceeded() for _ in range(4)] == [False, False, False, True]
    window.times = type(window.times)(t - 10.0 for t in window.times)  # all of them 10 s old
    assert not window.exceeded()


def test_pings_over_the_limit_close_with_1008_once_and_get_no_more_pongs(caplog):
    protocol = FakeProtocol()
    sock, _ = socket(protocol)
    sock.opened()
    for _ in range(transport.PING_LIMIT + 10):
        protocol.onPing(b"p")
    assert len(protocol.pongs) == transport.PING_LIMIT
    assert protocol.close_frames == [1008]
    assert protocol.transport.hung_up  # reads nothing more from the abuser
    assert [r.getMessage() for r in caplog.records if "ws.close" in r.getMessage()] == [
        "event=ws.close reason=ping_flood client=- limit=30"
    ]


def test_a_protocol_failure_is_logged_once_with_its_code_and_without_the_reason(caplog):
    protocol = FakeProtocol()
    socket(protocol)
    protocol._fail_connection(1002, "invalid close code 999")
    protocol._fail_connection(1002, "a second violation while closing")
    assert protocol.close_frames == [1002, 1002]  # autobahn still does what it does
    assert [r.getMessage() for r in caplog.records if "ws.close" in r.getMessage()] == [
        "event=ws.close reason=protocol_error client=- code=1002"
    ]


def test_a_ping_from_a_client_that_does_not_read_closes_with_1008_instead_of_a_pong():
    protocol = FakeProtocol()
    sock, _ = socket(protocol)
    sock.opened()
    protocol.onPing(b"1")
    protocol.transport.producer.pauseProducing()  # Twisted: its buffer is full
    protocol.onPing(b"2")
    assert (protocol.pongs, protocol.close_frames) == ([b"1"], [1008])


def parse_frame(data: bytes):
    """One frame as the websockets client parses it (RFC 6455 5.2)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof(), "bytes left after the frame"
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_text_frame_is_one_final_unmasked_text_frame_of_any_length(size):
    text = "x" * (size - 2) + "\u00e9" if size else ""  # `size` bytes of UTF-8
    assert len(text.encode()) == size
    frame = parse_frame(transport.text_frame(text))
    assert (frame.opcode, frame.fin, frame.data.decode()) == (Opcode.TEXT, True, text)


def test_the_twisted_and_autobahn_privates_the_transport_uses_still_exist():
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.web.http import HTTPChannel

    channel = HTTPChannel()
    for name in ("_HTTPChannel__first_line", "_receivedHeaderSize", "totalHeadersSize"):
        assert hasattr(channel, name), name
    assert callable(channel._respondToBadRequestAndDisconnect)
    protocol = WebSocketServerProtocol()
    assert callable(protocol._fail_connection)
    assert "failByDrop" in WebSocketServerProtocol.CONFIG_ATTRS
    WebSocketServerFactory().setProtocolOptions(**transport.PROTOCOL_OPTIONS)


def test_autobahn_formats_its_options_for_its_debug_line_only_when_it_logs_debug(monkeypatch):
    import autobahn.websocket.protocol as ws
    import txaio

    monkeypatch.setattr(ws, "pformat", ws.pformat)  # put back afterwards
    transport.skip_unlogged_pformat()
    options = [("openHandshakeTimeout", 5, "WebSocketServerFactory")]

    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "info")
    assert "openHandshakeTimeout" not in ws.pformat(options)
    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "debug")
    assert "openHandshakeTimeout" in ws.pformat(options)


def test_connections_read_autobahns_options_from_their_class_and_take_less_memory():
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.testing import StringTransport

    from tests.unit.test_daphne_surface import HANDSHAKE

    def connected(share: bool) -> WebSocketServerProtocol:
        factory = WebSocketServerFactory()
        factory.protocol = type("Protocol", (WebSocketServerProtocol,), {})
        factory.setProtocolOptions(
            **transport.PROTOCOL_OPTIONS, maxFramePayloadSize=1234, openHandshakeTimeout=0
        )
        if share:
            transport.share_protocol_options(factory)
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(HANDSHAKE)
        assert protocol.state == protocol.STATE_OPEN
        return protocol

    shared, copied = connected(share=True), connected(share=False)
    assert not set(shared.CONFIG_ATTRS) & set(vars(shared))  # nothing copied per connection
    assert shared.failByDrop is False and shared.maxFramePayloadSize == 1234  # the factory's options
    assert sys.getsizeof(vars(shared)) < sys.getsizeof(vars(copied))


def test_a_connected_socket_lets_go_of_its_handshakes_headers():
    from tests.unit.test_daphne_surface import websocket_protocol

    protocol = websocket_protocol()  # daphne's, past a real handshake
    scope = {"headers": protocol.clean_headers, "extensions": {transport.PROTOCOL_KEY: protocol}}
    routed = dict(scope, url_route={})  # the router's copy, as the consumer gets it
    assert routed["headers"] and protocol.http_headers and protocol.http_request_data
    transport.Socket(routed, send=None).forget_handshake(routed)
    assert scope["headers"] == routed["headers"] == []
    assert protocol.http_headers == protocol.request.headers == {} and protocol.http_request_data == b""
