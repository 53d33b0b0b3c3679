"""viruses/live/fanout.py, the fastlane, over real daphne, Redis and WebSocket clients: order, nothing
lost across the hand-over, slow readers and close codes, and the same messages as the consumer path."""

import pytest

from tests.support.harness import created_event
from viruses.live.daphne import transport
from viruses.live.fanout import Fanout

pytestmark = pytest.mark.timeout(180)

LANES = {"fastlane": "1", "consumer": "0"}


class StuckProtocol:
    """daphne's protocol of a client that has stopped reading (Twisted paused the producer)."""

    STATE_OPEN = 3
    state = STATE_OPEN
    maskServerFrames = False
    autoFragmentSize = 0
    send_queue = ()

    def __init__(self):
        self.transport = None
        self.close_frames = []
        self.written = []

    def sendCloseFrame(self, code=None):
        self.close_frames.append(code)
        self.state = 2

    def onPing(self, payload):
        pass

    def _fail_connection(self, code, reason):
        pass


def test_the_fastlane_closes_a_socket_that_stopped_reading_with_1013_and_forgets_it(caplog):
    protocol = StuckProtocol()
    socket = transport.Socket({"extensions": {transport.PROTOCOL_KEY: protocol}}, None)
    socket.open = True
    socket.outbox.pauseProducing()
    socket.outbox.backlog = transport.SLOW_READER_BYTES
    lane = Fanout()
    lane.live["c!1"] = socket
    event = created_event(1)
    assert lane.deliver(["c!1", "c!2"], event) == ["c!2"]  # c!2: not on the fastlane
    assert protocol.close_frames == [1013]
    assert lane.live == {}
    assert lane.deliver(["c!1"], event) == ["c!1"]  # forgotten: nothing more written to it
    assert protocol.close_frames == [1013]
    assert 'event=ws.close channel="c!1" reason=slow_reader' in caplog.text
