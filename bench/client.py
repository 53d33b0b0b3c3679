"""Many WebSocket players in one asyncio process, cheap enough not to be the bottleneck.

Each player is a bare `asyncio.Protocol` speaking just the client side of RFC 6455 that
the game needs (no extensions, unmasked server frames, masked client frames, ping/pong,
close). A player keeps the state the contract lets it build with the page's rules
(tools/gameclient.py's `Feed`): changes in seq order, held back ahead of a hole, and a
`{"type": "resync"}` when a hole stays open for the gap timeout (at most one per timeout,
well under the server's flood limit).

Arrival times are taken when the bytes reach the process (`data_received`), before any
parsing, so the client's own parsing does not inflate the measured fan-out. A player can also
act over its socket (`act`: the contract's `create` / `kill` with a `ref`) and is told the
server's answer (`ack` or `error`) with the time it arrived.
"""

import asyncio
import base64
import json
import os
import time

from tools.gameclient import CHANGES, Feed, decode


class Refused(Exception):
    """The server did not complete the handshake and snapshot."""


class Player(asyncio.Protocol):
    def __init__(self, swarm: "Swarm", host: str, port: int, path: str):
        self.swarm = swarm
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.inbox = bytearray()
        self.fragments: list[bytes] = []
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.open = False
        self.close_code: int | None = None
        self.feed = Feed()
        self.gap_timer: asyncio.TimerHandle | None = None
        self.resyncs = 0
        self.gaps = 0
        self.virus_messages = 0

    # -- transport -----------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        was_open = self.open
        self.open = False
        if not self.ready.done():
            self.ready.set_exception(Refused(f"connection lost before the snapshot ({exc})"))
        if was_open:
            self.swarm.on_closed(self)

    def data_received(self, data: bytes):
        now = time.perf_counter()
        buf = self.inbox
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.fail(f"handshake answered {status.decode(errors='replace')}")
                return
            del buf[: end + 4]
            self.upgraded = True
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            length = b1 & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if b1 & 0x80:  # servers never mask, but be tolerant
                mask = buf[pos : pos + 4]
                pos += 4
            else:
                mask = None
            if len(buf) < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.frame(b0 & 0x80, b0 & 0x0F, payload, now)

    def frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (0, 1, 2):
            self.fragments.append(payload)
            if not fin:
                return
            data = b"".join(self.fragments)
            self.fragments = []
            for message in self.swarm.decode(data):
                self.message(message, now)
        elif opcode == 8:  # close
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.write_frame(8, payload[:2])
            self.transport.close()
        elif opcode == 9:  # ping
            self.write_frame(10, payload)

    def write_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, 0x80 | length])
        else:
            header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        self.transport.write(header + mask + masked)

    def send_json(self, message: dict) -> None:
        self.write_frame(1, json.dumps(message).encode())

    def act(self, message: dict) -> asyncio.Future:
        """Send an action (`message` carries its `ref`); the future gets (answer, arrival time)."""
        future = asyncio.get_running_loop().create_future()
        self.swarm.answers[message["ref"]] = future
        self.send_json(message)
        return future

    def fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(Refused(reason))
        if self.transport:
            self.transport.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.swarm.on_closed(self)
        self.write_frame(8, (1000).to_bytes(2, "big"))
        if self.transport:
            self.transport.close()

    # -- the game protocol ---------------------------------------------------------------

    def message(self, message: dict, now: float) -> None:
        kind = message.get("type")
        if kind in CHANGES:
            self.virus_messages += 1
            key = (kind, message["virus"]["id"] if kind == "virus.created" else message["id"])
            self.swarm.arrived(key, now)
        elif kind in ("ack", "error"):
            if kind == "error":
                self.swarm.errors += 1
            self.swarm.answered(message, now)
        loop = asyncio.get_running_loop()
        self.feed.receive(message, loop.time())
        if kind == "snapshot" and not self.ready.done():
            self.open = True
            self.ready.set_result(self)
        self.arm_gap_timer()

    seq = property(lambda self: self.feed.seq)
    viruses = property(lambda self: self.feed.viruses)
    behind = property(lambda self: self.feed.behind)

    def arm_gap_timer(self) -> None:
        """Keep the player's one timer due when the feed's resync is (none without a hole)."""
        at = self.feed.resync_at
        if at is None and self.gap_timer:
            self.gap_timer.cancel()
            self.gap_timer = None
        elif at is not None and self.gap_timer is None:
            self.gap_timer = asyncio.get_running_loop().call_at(at, self.gap_expired)

    def gap_expired(self) -> None:
        self.gap_timer = None
        if not self.open:
            return  # a closed player asks nothing more
        now = asyncio.get_running_loop().time()
        if self.feed.resync_due(now):
            self.gaps += 1
            self.resyncs += 1
            self.feed.resync_sent(now)
            self.send_json({"type": "resync"})
        self.arm_gap_timer()


class Swarm:
    """All players of one benchmark, and the arrival record of every change they saw."""

    def __init__(self, host: str, port: int, path: str = "/ws/viruses/", sources=None):
        """`sources`: an iterator of local addresses, one per player (None: any)."""
        self.host, self.port, self.path = host, port, path
        self.sources = sources
        self.players: list[Player] = []
        self.arrivals: dict[tuple, list] = {}  # key -> [count, first, last]
        self.waiters: dict[tuple, tuple[int, asyncio.Future]] = {}
        self.errors = 0
        self.answers: dict[str, asyncio.Future] = {}  # ref -> future of (answer, arrival time)
        self.unreferenced: list[dict] = []  # errors without a ref (an action the server ignores)
        self.closed_by_server = 0
        self.last_arrival = 0.0
        self._last_frame: bytes | None = None
        self._last_messages: list[dict] = []

    @property
    def open_players(self) -> list[Player]:
        return [p for p in self.players if p.open]

    async def connect_one(self, wait: float) -> Player:
        loop = asyncio.get_running_loop()
        player = Player(self, self.host, self.port, self.path)
        try:
            async with asyncio.timeout(wait):
                local = (next(self.sources), 0) if self.sources else None
                await loop.create_connection(lambda: player, self.host, self.port, local_addr=local)
                await player.ready
        except (OSError, TimeoutError, Refused) as exc:
            if player.transport:
                player.transport.close()
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        self.players.append(player)
        return player

    async def connect(self, count: int, *, concurrency: int, wait: float = 30) -> dict:
        """Connect `count` players, `concurrency` handshakes at a time; report refusals and timing."""
        semaphore = asyncio.Semaphore(concurrency)
        times: list[float] = []
        refused: list[str] = []

        async def one():
            async with semaphore:
                started = time.perf_counter()
                try:
                    await self.connect_one(wait)
                    times.append(time.perf_counter() - started)
                except Refused as exc:
                    refused.append(str(exc))

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        times.sort()
        return {
            "requested": count,
            "connected": len(times),
            "refused": len(refused),
            "refusal_reasons": sorted(set(refused))[:5],
            "seconds": time.perf_counter() - started,
            "handshake_p50_ms": 1000 * times[len(times) // 2] if times else None,
            "handshake_p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))] if times else None,
        }

    def disconnect(self, count: int) -> None:
        for player in self.open_players[:count]:
            player.close()
        self.players = [p for p in self.players if p.open]

    def close_all(self) -> None:
        for player in self.players:
            player.close()
        self.players = []

    def on_closed(self, player: Player) -> None:
        self.closed_by_server += 1

    def decode(self, data: bytes) -> list[dict]:
        """The messages of a frame, parsed once for a run of players given the same bytes.

        A fan-out writes one frame to every player in turn, so most frames equal the one
        before; their messages are only read (the page's rules, arrivals), never changed.
        Each player still gets its own bytes, timed as they reach it, and applies them.
        """
        if data != self._last_frame:
            self._last_frame, self._last_messages = data, decode(data)
        return self._last_messages

    # -- arrivals ------------------------------------------------------------------------

    def answered(self, message: dict, now: float) -> None:
        future = self.answers.pop(message.get("ref"), None)
        if future is None:
            if message.get("ref") is None:
                self.unreferenced.append(message)
                del self.unreferenced[:-10]
            return
        if not future.done():
            future.set_result((message, now))

    def reset_arrivals(self) -> None:
        self.arrivals = {}
        self.waiters = {}

    def arrived(self, key: tuple, now: float) -> None:
        record = self.arrivals.get(key)
        if record is None:
            record = self.arrivals[key] = [0, now, now]
        record[0] += 1
        record[2] = now
        self.last_arrival = now
        waiter = self.waiters.get(key)
        if waiter and record[0] >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def wait_for(self, key: tuple, count: int, wait: float) -> bool:
        """Wait until `count` players received the change `key`; False on timeout."""
        record = self.arrivals.get(key)
        if record and record[0] >= count:
            return True
        future = asyncio.get_running_loop().create_future()
        self.waiters[key] = (count, future)
        try:
            await asyncio.wait_for(future, wait)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiters.pop(key, None)
