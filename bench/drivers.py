"""How the benchmark makes changes and reads the truth, for each kind of server."""

import json
import random
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis

from tools.servers import Api


class HttpDriver:
    """The real write path: the game's HTTP API as the page uses it (tools/servers.py's Api)."""

    def __init__(self, base_url: str, connections: int = 16):
        self.api = Api(base_url, asynchronous=True, check=True, connections=connections)

    async def start(self) -> "HttpDriver":
        await self.api.start()
        return self

    async def create(self) -> str:
        return (await self.api.create()).json()["id"]

    async def kill(self, virus_id: str) -> None:
        await self.api.kill(virus_id)

    async def state(self) -> dict:
        return await self.api.list()

    async def close(self) -> None:
        await self.api.close()


class FloorDriver(HttpDriver):
    """The floor has no database or HTTP write path: changes are PUBLISHed to its channel."""

    def __init__(self, base_url: str, redis_url: str, channel: str):
        super().__init__(base_url)
        # A blocking pool: concurrent publishes wait for a connection instead of failing.
        self.redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                redis_url, max_connections=32, timeout=None
            )
        )
        self.channel = channel

    async def start(self) -> "FloorDriver":
        await self.redis.ping()
        return self

    async def create(self) -> str:
        virus = {
            "id": str(uuid.uuid4()),
            "kind": random.randrange(6),
            "x": round(random.uniform(6, 94), 2),
            "y": round(random.uniform(6, 94), 2),
            "created_at": datetime.now(UTC).isoformat(),
        }
        await self.redis.publish(self.channel, json.dumps({"type": "virus.created", "virus": virus}))
        return virus["id"]

    async def kill(self, virus_id: str) -> None:
        await self.redis.publish(self.channel, json.dumps({"type": "virus.killed", "id": virus_id}))

    async def close(self) -> None:
        await super().close()
        await self.redis.aclose()
