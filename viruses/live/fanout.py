"""The fastlane: each group event framed once, written to every local socket by the layer's reader.

On the consumer path every delivery wakes the socket's consumer task, which relays the text
through daphne and autobahn, which frame it for that one socket. Here, once a consumer has
sent its snapshot, it hands its socket to this process's `Fanout`; the channel layer's one
reader (layers.py, `bypass`) then gives each group event to `Fanout.deliver`, which frames
it once (`transport.text_frame`; server frames are unmasked, so the bytes are the same for
every client) and writes those bytes to each registered socket. The consumer still owns the
socket: it accepts, joins the group, sends snapshots and closes; it leaves the fastlane
while it reads a resync's snapshot, so a client never gets a snapshot older than an event
already sent to it.

The hand-over keeps the consumer path's order and loses nothing: the consumer joined the
group before reading its snapshot, and whatever the reader queued for it meanwhile is
relayed by the consumer; the layer's `hand_over` then gives the fastlane what is still
queued, in order, in the same step as the switch. Several messages ready at that moment go
out as one frame holding a JSON array (the contract allows it).

Only under daphne, with `VIRUS_FASTLANE` on and the project's layer; otherwise (another ASGI
server, in-process tests) the consumer's own relay stays the path.
"""

import logging
from functools import partial

from django.conf import settings

from viruses import messages
from viruses.logs import kv

from .daphne import transport

logger = logging.getLogger(__name__)


class Fanout:
    """This process's sockets on the fastlane, by channel name."""

    def __init__(self):
        self.live: dict[str, transport.Socket] = {}  # the reader writes to these
        # Channels whose hand-over is queued behind what their consumer has yet to relay;
        # None: paused since, the hand-over will leave it to the consumer.
        self.pending: dict[str, transport.Socket | None] = {}

    def join(self, layer, channel: str, socket: transport.Socket) -> bool:
        """Move `channel`'s group events to the fastlane once its consumer has relayed its queue.

        Return False (the consumer keeps relaying) off daphne, or without the project's layer.
        """
        if not (settings.VIRUS_FASTLANE and hasattr(layer, "hand_over") and socket.takes_frames()):
            return False
        layer.bypass = self.deliver
        if channel in self.pending:  # a hand-over is still queued: it will do
            self.pending[channel] = socket
        else:
            self.pending[channel] = socket
            layer.hand_over(channel, partial(self._go_live, channel))
        return True

    def pause(self, channel: str) -> None:
        """Give `channel`'s events back to its consumer's queue (until `join` again)."""
        self.live.pop(channel, None)
        if channel in self.pending:
            self.pending[channel] = None

    def leave(self, channel: str) -> None:
        """Forget `channel`: its socket is gone."""
        self.live.pop(channel, None)
        self.pending.pop(channel, None)

    def _go_live(self, channel: str, queued: list) -> list:
        socket = self.pending.pop(channel, None)
        if socket is None:
            return queued
        events = [m for m in queued if is_group_event(m)]
        self.live[channel] = socket
        if events:
            self._write(channel, socket, transport.text_frame(messages.frame_of(events)))
        return [m for m in queued if not is_group_event(m)]

    def deliver(self, channels: list[str], message: dict) -> list[str]:
        """Write `message` to the live sockets among `channels`; return the others."""
        live = self.live
        if not live or not is_group_event(message):
            return channels
        frame = None
        others = []
        for channel in channels:
            socket = live.get(channel)
            if socket is None:
                others.append(channel)
                continue
            if frame is None:
                frame = transport.text_frame(message["text"])
            self._write(channel, socket, frame)
        return others

    def _write(self, channel: str, socket: transport.Socket, frame: bytes) -> None:
        if socket.outbox.stuck(len(frame)):
            del self.live[channel]
            logger.warning(kv("ws.close", channel=channel, reason="slow_reader", **socket.outbox.state()))
            socket.close_now(1013)
        elif not socket.write_frame(frame):
            del self.live[channel]  # closing: daphne tells the consumer, which leaves


def is_group_event(message) -> bool:
    return isinstance(message, dict) and message.get("type") in messages.GROUP_EVENTS and "text" in message


fanout = Fanout()
