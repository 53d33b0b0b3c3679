"""CPU to frame one group event once and write it to N sockets: the fastlane's way against autobahn's.

    python -m bench.framing [--sockets 1000] [--rounds 200]

`text_frame` + `Socket.write_frame` (the fastlane, fanout.py) against autobahn's documented
"frame once, send to many", `WebSocketServerFactory.prepareMessage` + `sendPreparedMessage`,
for a 100 B and a 10 KB message, over daphne's real WebSocketProtocol objects (opened,
uncompressed, as daphne runs them) on transports that only count the bytes: framing and the
per-socket checks alone, no system call. With `time.process_time()`, best of three.
"""

import argparse
import os
import sys
import time


class CountingTransport:
    """A Twisted transport that keeps nothing: the same cost behind both ways."""

    disconnecting = False

    def __init__(self):
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def getPeer(self):
        return None

    def getHost(self):
        return None


def protocols(count: int):
    from autobahn.websocket.protocol import WebSocketProtocol
    from daphne.ws_protocol import WebSocketFactory

    factory = WebSocketFactory(None, server="daphne")
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    built = []
    for _ in range(count):
        protocol = factory.buildProtocol(None)
        protocol.transport = CountingTransport()
        protocol._connectionMade()  # autobahn's own set-up, without Twisted's connection
        protocol.state = WebSocketProtocol.STATE_OPEN
        built.append(protocol)
    return factory, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200, help="messages per measurement")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SECRET_KEY", "x" * 50)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "virusgame.settings")
    import django

    django.setup()
    from viruses.live.daphne import transport

    factory, built = protocols(args.sockets)
    sockets = []
    for protocol in built:
        socket = transport.Socket({"extensions": {transport.PROTOCOL_KEY: protocol}}, None)
        socket.open = True
        assert socket.takes_frames()
        sockets.append(socket)

    def fastlane(text: str) -> None:
        frame = transport.text_frame(text)
        for socket in sockets:
            socket.write_frame(frame)

    def prepared(text: str) -> None:
        message = factory.prepareMessage(text.encode())
        for protocol in built:
            protocol.sendPreparedMessage(message)

    for size in (100, 10_000):
        text = "x" * size
        assert transport.text_frame(text) == factory.prepareMessage(text.encode()).payloadHybi
        ways = {"text_frame + write_frame": fastlane, "prepareMessage + sendPreparedMessage": prepared}
        for name, send in ways.items():
            best = min(timed(send, text, args.rounds) for _ in range(3))
            print(f"{size:>6} B, N={args.sockets}: {name:<38} {best * 1e6 / args.rounds:8.0f} µs per message")


def timed(send, text: str, rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        send(text)
    return time.process_time() - start


if __name__ == "__main__":
    sys.exit(main())
