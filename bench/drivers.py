"""How the benchmark makes changes and reads the truth, for each kind of server."""

import json
import random
import uuid
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis


class HttpDriver:
    """The real write path: the game's HTTP API, with the CSRF cookie a browser would have."""

    def __init__(self, base_url: str, connections: int = 16):
        self.base_url = base_url
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.headers: dict[str, str] = {}

    async def start(self) -> "HttpDriver":
        (await self.http.get("/")).raise_for_status()
        self.headers = {"X-CSRFToken": self.http.cookies["csrftoken"], "Referer": self.base_url + "/"}
        return self

    async def create(self) -> str:
        response = await self.http.post("/api/viruses/", headers=self.headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/viruses/ answered {response.status_code}: {response.text[:200]}")
        return response.json()["id"]

    async def kill(self, virus_id: str) -> None:
        response = await self.http.delete(f"/api/viruses/{virus_id}/", headers=self.headers)
        if response.status_code != 204:
            raise RuntimeError(f"DELETE answered {response.status_code}: {response.text[:200]}")

    async def state(self) -> dict:
        response = await self.http.get("/api/viruses/")
        response.raise_for_status()
        return response.json()

    async def close(self) -> None:
        await self.http.aclose()


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
