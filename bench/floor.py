"""The floor: a raw `websockets` broadcast server fed by Redis pub/sub and its own sockets.

No Django, no channel layer: one process subscribes to one Redis channel, numbers each
change, encodes it once and writes it to every socket with `websockets.broadcast`. It speaks
the game's WebSocket contract (snapshot, virus.created, virus.killed, resync, and the
`create` / `kill` actions with their `ack`) and answers `GET /api/viruses/` and `GET /healthz`,
so the benchmark drives it like the project. Changes come two ways: PUBLISHed to Redis by
the benchmark (no database), or as socket actions, each one SQLite write (autocommit, WAL)
before its broadcast: the floor of what the game's write-and-tell costs in Python.

    python -m bench.floor --port 8123 --redis unix:///tmp/redis.sock --channel floor --database f.db
"""

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis
from websockets.asyncio.server import broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Response


def command(redis_url: str, channel: str, database: str) -> list[str]:
    """The floor's command line, `{port}` left for the caller (tools.servers.GameServer)."""
    argv = [sys.executable, "-m", "bench.floor", "--port", "{port}", "--redis", redis_url]
    return argv + ["--channel", channel, "--database", database]


class Floor:
    def __init__(self, database: str):
        self.seq = 0
        self.viruses: dict[str, dict] = {}
        self.clients: set = set()
        self.db = sqlite3.connect(database, isolation_level=None)  # autocommit: one write, one commit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # as the project's SQLite settings
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS virus"
            " (id TEXT PRIMARY KEY, kind INT, x REAL, y REAL, created_at TEXT)"
        )

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
                    kind = message.get("type")
                    if kind not in ("resync", "create", "kill"):
                        raise ValueError
                except (ValueError, AttributeError):
                    await ws.send(encode({"type": "error", "error": "unknown message"}))
                    continue
                if kind == "resync":
                    await ws.send(self.snapshot())
                else:
                    await ws.send(self.act(kind, message))
        finally:
            self.clients.discard(ws)

    def act(self, kind: str, message: dict) -> str:
        """Write the action to SQLite, broadcast its change, return the sender's answer."""
        ref = str(message.get("ref", ""))[:64]
        if kind == "create":
            virus = {
                "id": str(uuid.uuid4()),
                "kind": random.randrange(6),
                "x": round(random.uniform(6, 94), 2),
                "y": round(random.uniform(6, 94), 2),
                "created_at": datetime.now(UTC).isoformat(),
            }
            self.db.execute("INSERT INTO virus VALUES (:id, :kind, :x, :y, :created_at)", virus)
            broadcast(self.clients, self.apply({"type": "virus.created", "virus": virus}))
            return encode({"type": "ack", "ref": ref, "status": 201, "virus": virus})
        virus_id = str(message.get("id"))
        if self.db.execute("DELETE FROM virus WHERE id = ?", (virus_id,)).rowcount != 1:
            return encode({"type": "error", "ref": ref, "status": 404, "error": "no such virus"})
        broadcast(self.clients, self.apply({"type": "virus.killed", "id": virus_id}))
        return encode({"type": "ack", "ref": ref, "status": 204})

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
    parser.add_argument("--database", default=":memory:", help="SQLite file for the socket actions")
    args = parser.parse_args()
    floor = Floor(args.database)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        floor.handler,
        "127.0.0.1",
        args.port,
        process_request=floor.process_request,
        compression=None,
        # The project's daphne listens with this (transport.LISTEN_BACKLOG): with asyncio's
        # 100 the storm would time the kernel's SYN retries, not the server.
        backlog=1024,
    ):
        pump = asyncio.create_task(floor.pump(args.redis, args.channel))
        await asyncio.wait([stop, pump], return_when=asyncio.FIRST_COMPLETED)
        if pump.done():
            pump.result()  # the pump died: show why
        os._exit(0)  # no graceful close handshakes: the benchmark is over


if __name__ == "__main__":
    asyncio.run(main())
