"""viruses/live/daphne/surface.py: every internal the server uses is in the installed packages, the
checks name what is gone or unverified, and a reach that fails at run time is logged once and counted."""

import re
from pathlib import Path
from queue import SimpleQueue

import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from channels_redis.core import RedisChannelLayer
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY
from twisted.internet.testing import StringTransport
from twisted.web import http

from viruses.live.daphne import surface, transport

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def test_every_internal_the_server_uses_is_in_the_installed_packages():
    gone = surface.missing()
    assert not gone, "\n".join(gone)


def test_the_verified_versions_are_the_locked_ones():
    locked = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", LOCK.read_text(), re.MULTILINE))
    assert {name: locked[name] for name in surface.VERIFIED} == surface.VERIFIED
    assert surface.unverified() == {}


class Server:
    """The part of daphne's Server its WebSocketProtocol asks when a client connects."""

    root_path = ""
    proxy_forwarded_address_header = None

    def protocol_connected(self, protocol):
        pass

    def create_application(self, protocol, scope):
        return SimpleQueue()  # the application's queue

    def log_action(self, protocol, action, details):
        pass


# A browser's handshake; the extension offer makes autobahn ask perMessageCompressionAccept.
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)


def websocket_protocol():
    """daphne's WebSocketProtocol on a fake connection, past daphne's own `onConnect`."""
    from daphne.ws_protocol import WebSocketFactory

    factory = WebSocketFactory(Server(), server="daphne")
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol._raw_query_string = b""  # daphne's HTTP protocol sets it before the upgrade
    protocol.dataReceived(HANDSHAKE)  # parsed by autobahn, then daphne's `onConnect`
    assert protocol.clean_headers, "daphne's onConnect ran"
    return protocol


# Real instances of the classes whose instance attributes the list names, built without a server.
SAMPLES = {
    "daphne.ws_protocol.WebSocketProtocol": websocket_protocol,
    "twisted.web.http.HTTPChannel": http.HTTPChannel,
    "twisted.web.http._GenericHTTPChannelProtocol": lambda: http._genericHTTPChannelProtocolFactory(b""),
    "channels_redis.core.RedisChannelLayer": RedisChannelLayer,
}
SAMPLED = [
    reach
    for reach in surface.SURFACE
    if reach.instance and f"{reach.module}.{reach.name.rsplit('.', 1)[0]}" in SAMPLES
]


@pytest.mark.parametrize("reach", SAMPLED, ids=str)
def test_instance_attributes_found_in_the_code_are_on_real_instances(reach):
    owner, attribute = str(reach).rsplit(".", 1)
    assert hasattr(SAMPLES[owner](), attribute)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_the_fastlanes_frames_are_the_bytes_autobahn_would_send(size):
    text = "é" * (size // 2) + "x" * (size % 2)
    prepared = websocket_protocol().factory.prepareMessage(text.encode())
    assert transport.text_frame(text) == prepared.payloadHybi


def errors(id_):
    return [message for message in run_checks() if message.id == id_]


def test_the_system_check_names_a_method_that_is_gone(monkeypatch):
    monkeypatch.delattr(WebSocketProtocol, "sendCloseFrame")
    [error] = errors("viruses.E010")
    assert error.msg.startswith("daphne.ws_protocol.WebSocketProtocol.sendCloseFrame is gone")


def test_the_system_check_names_a_changed_signature(monkeypatch):
    monkeypatch.setattr(WebSocketProtocol, "onPing", lambda self, data: None)
    [error] = errors("viruses.E010")
    assert error.msg.startswith(
        "daphne.ws_protocol.WebSocketProtocol.onPing changed: "
        "its parameters are (self, data), not (self, payload)"
    )


def test_an_instance_attribute_no_code_uses_is_reported_gone():
    renamed = surface.Reach(surface.DAPHNE_WS, "WebSocketProtocol.sendQueue", instance=True)
    assert surface.missing([renamed]) == [
        "daphne.ws_protocol.WebSocketProtocol.sendQueue is gone: "
        "neither WebSocketProtocol nor its bases use .sendQueue"
    ]


def test_the_start_up_guard_refuses_a_server_whose_internals_are_gone(monkeypatch):
    monkeypatch.delattr(http.HTTPChannel, "persistent")
    with pytest.raises(ImproperlyConfigured, match=r"twisted\.web\.http\.HTTPChannel\.persistent is gone"):
        transport.DaphneProtocolMiddleware(None)


def test_an_unverified_version_is_a_warning_naming_both(monkeypatch):
    monkeypatch.setitem(surface.VERIFIED, "autobahn", "25.1.0")
    assert errors("viruses.E010") == []
    [warning] = errors("viruses.W010")
    assert warning.msg.startswith("autobahn 26.11.1 is installed, but viruses/live/daphne/ relies on")
    assert "as of autobahn 25.1.0" in warning.msg


def failures(reach: str) -> float:
    return REGISTRY.get_sample_value("virusgame_private_reach_failures_total", {"reach": reach}) or 0


def test_backpressure_that_cannot_be_set_up_is_logged_once_and_counted_each_time(monkeypatch, caplog):
    monkeypatch.setattr(surface, "_said", set())
    reach = "twisted.internet.tcp.Connection.registerProducer"
    before = failures(reach)

    class NoProducerAPI:
        transport = object()

    for _ in range(2):
        transport.SendBuffer().watch(NoProducerAPI())
    assert failures(reach) == before + 2
    assert caplog.text.count(f"event=server.private_reach_failed reach={reach}") == 1


def test_drain_that_cannot_see_an_http_connection_logs_it(monkeypatch, caplog):
    monkeypatch.setattr(surface, "_said", set())
    wrapped = http._genericHTTPChannelProtocolFactory(b"")
    monkeypatch.delattr(wrapped, "_channel")
    assert transport._http_channel(wrapped) is None
    assert "reach=twisted.web.http._GenericHTTPChannelProtocol._channel" in caplog.text


def test_a_socket_whose_compression_is_unknown_stays_off_the_fastlane(monkeypatch, caplog):
    monkeypatch.setattr(surface, "_said", set())
    protocol = websocket_protocol()
    protocol.state = protocol.STATE_OPEN
    sock = transport.Socket({"extensions": {transport.PROTOCOL_KEY: protocol}}, None)
    sock.open = True
    assert sock.takes_frames()
    del protocol._perMessageCompress
    assert not sock.takes_frames()
    assert "reach=daphne.ws_protocol.WebSocketProtocol._perMessageCompress" in caplog.text
