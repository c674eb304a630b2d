"""Light synthetic client traffic for `claw --demo`, so the panes show a living box from the first minute."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

log = logging.getLogger(__name__)

PROMPTS = (
    "Summarise this support ticket in two sentences.",
    "Write a haiku about GPUs idling at night.",
    "Explain KV cache quantization to a new operator.",
    "What does num_ctx change in memory use?",
    "Draft a polite reply declining a meeting.",
    "List three ways to cut idle power on an inference server.",
)


class DemoTraffic:
    """Sends one request every few seconds through the gateway, like a couple of quiet clients."""

    def __init__(self, gateway_url: str, models: list[str], *, seed: int = 0, mean_gap_s: float = 8.0) -> None:
        self.gateway_url = gateway_url
        self.models = models
        self.mean_gap_s = mean_gap_s
        self._random = random.Random(seed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-traffic")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=120) as client:
            await asyncio.sleep(2.0)
            while True:
                await self._one_request(client)
                await asyncio.sleep(self._random.expovariate(1 / self.mean_gap_s))

    async def _one_request(self, client: httpx.AsyncClient) -> None:
        body = {
            "model": self._random.choice(self.models),
            "messages": [{"role": "user", "content": self._random.choice(PROMPTS)}],
            "options": {"num_predict": self._random.randint(40, 160)},
            "stream": False,
        }
        try:
            await client.post("/api/chat", json=body, headers={"User-Agent": "claw-demo-traffic"})
        except httpx.HTTPError as exc:
            log.debug("demo request failed: %s", exc)
