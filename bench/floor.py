"""The floor: a raw `websockets` broadcast server fed by Redis pub/sub.

No Django, no database, no channel layer: one process subscribes to one Redis channel,
numbers each change, encodes it once and writes it to every socket with
`websockets.broadcast`. It speaks the game's WebSocket contract (snapshot, virus.created,
virus.killed, resync) and answers `GET /api/viruses/` and `GET /healthz`, so the benchmark
drives it exactly like the project, except that changes are PUBLISHed to Redis directly.

    python -m bench.floor --port 8123 --redis unix:///tmp/redis.sock --channel floor
"""

import argparse
import asyncio
import json
import os
import signal

import redis.asyncio as aioredis
from websockets.asyncio.server import broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Response


class Floor:
    def __init__(self):
        self.seq = 0
        self.viruses: dict[str, dict] = {}
        self.clients: set = set()

    def snapshot(self) -> str:
        return encode(
            {
                "type": "snapshot",
                "seq": self.seq,
                "viruses": list(self.viruses.values()),
                "online": len(self.clients),
            }
        )

    def apply(self, change: dict) -> str:
        self.seq += 1
        if change["type"] == "virus.created":
            self.viruses[change["virus"]["id"]] = change["virus"]
            return encode({"type": "virus.created", "seq": self.seq, "virus": change["virus"]})
        self.viruses.pop(change["id"], None)
        return encode({"type": "virus.killed", "seq": self.seq, "id": change["id"]})

    async def handler(self, ws) -> None:
        self.clients.add(ws)
        try:
            await ws.send(self.snapshot())
            async for data in ws:
                try:
                    message = json.loads(data)
                    if message.get("type") != "resync":
                        raise ValueError
                except (ValueError, AttributeError):
                    await ws.send(encode({"type": "error", "error": "unknown message"}))
                    continue
                await ws.send(self.snapshot())
        finally:
            self.clients.discard(ws)

    def process_request(self, connection, request):
        if request.path == "/api/viruses/":
            body = encode({"seq": self.seq, "viruses": list(self.viruses.values())}).encode()
            return Response(200, "OK", Headers({"Content-Type": "application/json"}), body)
        if request.path == "/healthz":
            body = b'{"database":"ok","channel_layer":"ok"}'
            return Response(200, "OK", Headers({"Content-Type": "application/json"}), body)
        return None

    async def pump(self, url: str, channel: str) -> None:
        client = aioredis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        async for item in pubsub.listen():
            if item["type"] != "message":
                continue
            broadcast(self.clients, self.apply(json.loads(item["data"])))


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", default="floor")
    args = parser.parse_args()
    floor = Floor()
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        floor.handler,
        "127.0.0.1",
        args.port,
        process_request=floor.process_request,
        compression=None,
    ):
        pump = asyncio.create_task(floor.pump(args.redis, args.channel))
        await asyncio.wait([stop, pump], return_when=asyncio.FIRST_COMPLETED)
        if pump.done():
            pump.result()  # the pump died: show why
        os._exit(0)  # no graceful close handshakes: the benchmark is over


if __name__ == "__main__":
    asyncio.run(main())
