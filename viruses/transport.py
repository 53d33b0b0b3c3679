"""What daphne does not expose through ASGI: backpressure from the client's socket, and
sending RFC 6455 close codes that autobahn refuses from an application."""

import contextlib
import functools
import time

# A client that stops reading is closed (1013) once this much more waits for it on top of
# full kernel and Twisted buffers, or once its socket has not drained for this long.
SLOW_READER_BYTES = 1024 * 1024
SLOW_READER_SECONDS = 10.0


class SendBuffer:
    """Tells whether a client drains its socket, through Twisted's producer API.

    `send()` never blocks: daphne hands every message to a Twisted transport that buffers
    without limit, so a client that stops reading would grow the server's memory for as long
    as changes happen. Registered as a streaming producer, this object is paused by Twisted
    once 64 KiB wait in its buffer (the kernel's buffers being full already) and resumed when
    everything has been written. Other ASGI servers: nothing is watched (`stuck` is False).
    """

    def __init__(self):
        self.paused_at: float | None = None
        self.backlog = 0  # bytes sent since the transport paused us

    @classmethod
    def watch(cls, protocol) -> "SendBuffer":
        buffer = cls()
        with contextlib.suppress(AttributeError):  # not daphne: nothing to watch
            transport = protocol.transport
            if transport.producer is not None:
                # The HTTP channel that did the upgrade, idle since: it would only stop
                # reading from the socket, so the client's close or pong would go unread.
                transport.unregisterProducer()
            transport.registerProducer(buffer, True)
        return buffer

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
        return {"backlog": self.backlog, "paused_s": time.monotonic() - (self.paused_at or time.monotonic())}


def daphne_protocol(send):
    """daphne's `send` is partial(server.handle_reply, protocol): return that protocol, or None."""
    if isinstance(send, functools.partial) and send.args and hasattr(send.args[0], "sendCloseFrame"):
        return send.args[0]
    return None
