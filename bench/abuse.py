"""The abuse phase: does one ping abuser slow everybody else down?

Normal players, each from its own loopback address, follow the game while changes are made
one at a time; another client asks `/healthz` in a loop. Both are timed for a window without
the abuser, then for a window with it. The abuser (this module run as a separate process, so
its work is not the benchmark's) comes from one address of its own, as many sockets at once
as the per-address cap lets it: all but one flood 125-byte pings and read what comes back;
one floods pings and never reads. It runs at nice 19, so on a small machine it takes the CPU
the server and the measuring clients leave rather than theirs. The server closes ping
abusers (1008, viruses/live/daphne/transport.py), so each socket reconnects at once and starts again,
as an attacker would, within whatever admission allows. The server runs with the project's
admission defaults here (socket cap and snapshot bucket per address), unlike other phases.
There is no nginx in front, so the abused window is run twice: the attacker unpaced (bare
daphne), then with its handshakes paced as the deploy kit's nginx lets them through.

    python -m bench.abuse --port 8000 --source 127.0.0.66 --sockets 20 --seconds 10
"""

import argparse
import asyncio
import base64
import json
import math
import os
import socket
import time

import httpx

from bench.client import Swarm
from bench.gameload import ms, percentile
from tools.servers import PYTHON, rss_mib

ABUSER_ADDRESS = "127.0.0.66"
# The nginx-paced window's attacker comes from another address: the server's penalty box
# (viruses/guards/penalty.py) still holds the first one when that window starts.
PACED_ABUSER_ADDRESS = "127.0.0.67"
ATTACKER = [PYTHON, "-m", "bench.abuse"]
# deploy/nginx/virusgame.conf: limit_req zone=virusgame_ws (rate=5r/s) burst=30
NGINX_WS_RATE = 5.0
NGINX_WS_BURST = 30
PING = 9
CLOSE_1008 = b"\x88\x02\x03\xf0"  # an unmasked close frame with code 1008, as servers send it


def ping_frames(count: int) -> bytes:
    """`count` masked ping frames with 125-byte payloads (the most a control frame may carry)."""
    frames = bytearray()
    for _ in range(count):
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(os.urandom(125)))
        frames += bytes([0x80 | PING, 0x80 | 125]) + mask + payload
    return bytes(frames)


class Abuser:
    """One attacker: `sockets` connections at once from `source`, flooding pings forever.

    `connects_per_second` (0: unlimited) paces its handshakes as the deploy kit's nginx
    would let them through (`limit_req`: 5/s, bursts of 30); the excess never reaches daphne.
    """

    def __init__(self, host: str, port: int, source: str, sockets: int, connects_per_second: float = 0):
        self.host, self.port, self.source, self.sockets = host, port, source, sockets
        self.stats = {
            "connections": 0,
            "refused": 0,
            "cut_at_accept": 0,  # closed before any answer: the penalty box (viruses/guards/penalty.py)
            "pings_sent": 0,
            "closed_1008": 0,
            "resets": 0,
        }
        self.batch = ping_frames(64)
        self.rate = connects_per_second
        self.tokens, self.stamp = float(NGINX_WS_BURST), time.monotonic()

    async def handshake_allowed(self) -> None:
        """Wait for a token of the handshake bucket (no wait when unlimited)."""
        while self.rate:
            now = time.monotonic()
            self.tokens = min(NGINX_WS_BURST, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)

    async def run(self, seconds: float) -> dict:
        loops = [self.loop(reading=i > 0) for i in range(self.sockets)]
        try:
            async with asyncio.timeout(seconds):
                await asyncio.gather(*loops)
        except TimeoutError:
            pass
        return self.stats

    async def loop(self, *, reading: bool) -> None:
        while True:
            try:
                await self.one_socket(reading=reading)
            except (OSError, asyncio.IncompleteReadError):
                self.stats["resets"] += 1
            await asyncio.sleep(0)  # reconnect at once

    async def one_socket(self, *, reading: bool) -> None:
        await self.handshake_allowed()
        sock = socket.socket()
        sock.setblocking(False)
        if not reading:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((self.source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /ws/viruses/ HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://{self.host}:{self.port}\r\n\r\n".encode()
            )
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                if not getattr(exc, "partial", b""):
                    self.stats["cut_at_accept"] += 1
                    return
                raise
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.stats["refused"] += 1
                return
            self.stats["connections"] += 1
            closed = asyncio.Event()
            watcher = asyncio.create_task(self.watch(reader, closed)) if reading else None
            try:
                while not closed.is_set():
                    writer.write(self.batch)
                    self.stats["pings_sent"] += 64
                    await writer.drain()
            finally:
                if watcher:
                    watcher.cancel()
        finally:
            writer.close()

    async def watch(self, reader: asyncio.StreamReader, closed: asyncio.Event) -> None:
        """Read everything (pongs, changes); stop the flood when the server closes."""
        tail = b""
        while data := await reader.read(65536):
            if CLOSE_1008 in tail + data:
                self.stats["closed_1008"] += 1
                break
            tail = data[-3:]
        closed.set()


# -- the phase, run by bench/run.py ---------------------------------------------------------


async def window(swarm: Swarm, driver, base_url: str, seconds: float, rss) -> dict:
    """Changes one at a time (each timed to the last player) and /healthz in a loop, for `seconds`."""
    fanout: list[float] = []
    health: list[float] = []
    lost = 0
    rss_peak = rss()
    deadline = time.perf_counter() + seconds
    players = len(swarm.open_players)

    async def timed(make, key_of) -> str:
        nonlocal lost
        started = time.perf_counter()
        result = await make()
        key = key_of(result)
        done = await swarm.wait_for(key, players, 5.0)
        got, _, last = swarm.arrivals.get(key, (0, 0.0, 0.0))
        fanout.append(last - started if done else math.inf)
        lost += max(0, players - got)
        return result

    async def changes():
        swarm.reset_arrivals()
        while time.perf_counter() < deadline:
            virus_id = await timed(driver.create, lambda virus_id: ("virus.created", virus_id))
            await timed(lambda: driver.kill(virus_id), lambda _: ("virus.killed", virus_id))  # noqa: B023
            await asyncio.sleep(0.05)

    async def healthz():
        nonlocal rss_peak
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await http.get("/healthz")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                health.append(time.perf_counter() - started if ok else math.inf)
                rss_peak = max(rss_peak, rss())
                await asyncio.sleep(0.05)

    await asyncio.gather(changes(), healthz())
    return {
        "changes": len(fanout),
        "fanout_p50_ms": ms(percentile(fanout, 0.5)),
        "fanout_p99_ms": ms(percentile(fanout, 0.99)),
        "lost": lost,
        "healthz_requests": len(health),
        "healthz_p50_ms": ms(percentile(health, 0.5)),
        "healthz_p99_ms": ms(percentile(health, 0.99)),
        "healthz_failed": sum(math.isinf(h) for h in health),
        "rss_peak_mb": round(rss_peak, 1),
    }


async def phase(server, driver, profile: dict, *, say) -> dict:
    """Normal play without, then with, the abuser; the ratios and the server's RSS growth."""
    swarm = Swarm("127.0.0.1", server.port, sources=player_addresses())
    pid = server.process.pid
    try:
        await driver.start()
        ramp = await swarm.connect(profile["players"], concurrency=50, wait=60)
        say(f"  abuse: {ramp['connected']} players connected ({ramp['refused']} refused)")
        await asyncio.sleep(2.0)
        rss_before = rss_mib(pid)
        say(f"  abuse: {profile['seconds']} s of play without the abuser")
        calm = await window(swarm, driver, server.url, profile["seconds"], lambda: rss_mib(pid))
        say(f"  abuse: {_line(calm)}")
        variants = {}
        for name, rate in (("bare", 0.0), ("nginx", NGINX_WS_RATE)):
            pacing = "unpaced" if not rate else f"handshakes paced at nginx's {rate:g}/s"
            source = PACED_ABUSER_ADDRESS if rate else ABUSER_ADDRESS
            say(f"  abuse: with the abuser ({profile['sockets']} sockets from {source}, {pacing})")
            variants[name] = await abused_window(swarm, driver, server, profile, rate)
            say(f"  abuse: {_line(variants[name])}; attacker {variants[name]['attacker']}")
            await asyncio.sleep(2.0)
        rss_after = rss_mib(pid)
    finally:
        swarm.close_all()
        await driver.close()
    result = {
        "players": ramp["connected"],
        "without": calm,
        "with": variants["bare"],
        "with_nginx_pacing": variants["nginx"],
        "rss_before_mb": round(rss_before, 1),
        "rss_growth_peak_mb": round(max(v["rss_peak_mb"] for v in variants.values()) - rss_before, 1),
        "rss_growth_after_mb": round(rss_after - rss_before, 1),
        "players_closed": swarm.closed_by_server,
    }
    for prefix, abused in (("x_", variants["bare"]), ("x_nginx_", variants["nginx"])):
        for figure in FIGURES:
            a, b = abused[figure], calm[figure]
            result[f"{prefix}{figure}"] = round(a / b, 2) if a is not None and b else None
    say(
        "  abuse: ratios with/without (bare; nginx-paced): fan-out p50 {x_fanout_p50_ms}x; "
        "{x_nginx_fanout_p50_ms}x, /healthz p50 {x_healthz_p50_ms}x; {x_nginx_healthz_p50_ms}x; "
        "RSS +{rss_growth_peak_mb} MB at peak, +{rss_growth_after_mb} MB after".format(**result)
    )
    return result


FIGURES = ("fanout_p50_ms", "fanout_p99_ms", "healthz_p50_ms", "healthz_p99_ms")


async def abused_window(swarm: Swarm, driver, server, profile: dict, rate: float) -> dict:
    """One window of play while the attacker process runs (handshakes paced at `rate`/s, 0: not)."""
    attacker = await asyncio.create_subprocess_exec(
        *ATTACKER,
        "--port",
        str(server.port),
        "--sockets",
        str(profile["sockets"]),
        "--seconds",
        str(profile["seconds"] + 3),
        "--connects-per-second",
        str(rate),
        "--source",
        PACED_ABUSER_ADDRESS if rate else ABUSER_ADDRESS,
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # let the flood start
    pid = server.process.pid
    abused = await window(swarm, driver, server.url, profile["seconds"], lambda: rss_mib(pid))
    out, _ = await asyncio.wait_for(attacker.communicate(), profile["seconds"] + 30)
    abused["attacker"] = json.loads(out.decode().strip().splitlines()[-1])
    return abused


def player_addresses():
    """A loopback address per normal player (127.0.1.1, 127.0.1.2, ...): the cap is per address."""
    n = 0
    while True:
        n += 1
        yield f"127.0.{1 + n // 250}.{1 + n % 250}"


def _line(w: dict) -> str:
    return (
        f"{w['changes']} changes: fan-out p50 {w['fanout_p50_ms']} / p99 {w['fanout_p99_ms']} ms, "
        f"lost {w['lost']}; {w['healthz_requests']} /healthz: p50 {w['healthz_p50_ms']} / "
        f"p99 {w['healthz_p99_ms']} ms, {w['healthz_failed']} failed; RSS peak {w['rss_peak_mb']} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default=ABUSER_ADDRESS, help="the abuser's own (loopback) address")
    parser.add_argument("--sockets", type=int, default=20, help="at once (the default per-address cap)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connects-per-second", type=float, default=0.0, help="handshake pacing (0: none)")
    args = parser.parse_args()
    # A real attacker has its own machine: on this one, let it have only the CPU that the
    # server and the measuring clients leave (its bytes still reach the server in full).
    os.nice(19)
    abuser = Abuser(args.host, args.port, args.source, args.sockets, args.connects_per_second)
    stats = asyncio.run(abuser.run(args.seconds))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
