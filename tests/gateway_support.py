"""Gateway test rigs: simulated backends (SimServer) on a loop of their own, and Sessions configured in front of them.

with SimBackends([{}, {"openai_only": True}]) as sims:
    runner = start_gateway(tmp_path, sims, kinds=["ollama", "openai"], max_in_flight=4)
    ... sims.call(lambda: sims.state(0).fail_next(2)) ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx

from claw_tui.config import AgentConfig, BackendConfig, Config, load_config
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.sim.gpu import SimGPU, SimTelemetrySource
from claw_tui.sim.server import SimServer

FAST = 50.0  # simulator speed: answers in a few tens of milliseconds


class SimBackends:
    """Simulated Ollama / OpenAI-compatible servers, each with its own simulated GPU, served from one background
    event loop. `specs` are SimServer keyword arguments (plus `gpu_name`)."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self.specs = specs
        self.loop = asyncio.new_event_loop()
        self.gpus: list[SimGPU] = []
        self.servers: list[SimServer] = []
        self.ports: list[int] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim-backends", daemon=True)

    def __enter__(self) -> SimBackends:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def _start(self) -> None:
        for index, spec in enumerate(self.specs):
            spec = dict(spec)
            gpu = SimGPU(index=index, name=spec.pop("gpu_name", "NVIDIA H200"), seed=index)
            options = {"speed": FAST, "num_parallel": 64, "max_queue": 1024, "default_num_ctx": 4096, **spec}
            server = SimServer([gpu], seed=index, **options)
            url = await server.start()
            self.gpus.append(gpu)
            self.servers.append(server)
            self.ports.append(int(url.rsplit(":", 1)[1]))

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the simulators' loop (their state is not thread-safe) and return its result."""

        async def wrapper():
            return fn()

        return self.run(wrapper(), timeout)

    def state(self, index: int):
        return self.servers[index].state

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def stop_server(self, index: int) -> None:
        """Take one backend down (its port refuses connections)."""
        self.run(self.servers[index].stop())

    def start_server(self, index: int) -> None:
        self.run(self.servers[index].start("127.0.0.1", self.ports[index]))

    def telemetry(self) -> SimTelemetrySource:
        return SimTelemetrySource(self.gpus)

    def close(self) -> None:
        async def stop_all():
            for server in self.servers:
                await server.stop()

        if self._thread.is_alive():
            try:
                self.run(stop_all())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
        self.loop.close()


def gateway_config(
    sims: SimBackends,
    *,
    kinds: list[str] | None = None,
    weights: list[float] | None = None,
    agents: list[AgentConfig] | None = None,
    health_interval_s: float = 0.2,
    **gateway: Any,
) -> Config:
    config = load_config(None)
    config.telemetry.poll_interval_s = 0.05
    config.backends = [
        BackendConfig(
            name=f"b{i}",
            kind=(kinds or ["ollama"] * len(sims.servers))[i],
            url=sims.url(i),
            gpu=i,
            weight=(weights or [1.0] * len(sims.servers))[i],
            health_interval_s=health_interval_s,
        )
        for i in range(len(sims.servers))
    ]
    config.agents = agents or []
    for key, value in gateway.items():
        setattr(config.gateway, key, value)
    return config


def start_gateway(tmp_path, sims: SimBackends, config: Config | None = None, **config_options: Any) -> SessionThread:
    """A Session (not demo) whose backends are the simulators, with their GPUs as telemetry."""
    options = SessionOptions(
        listen=("127.0.0.1", 0), store_path=tmp_path / "sessions.db", telemetry_source=sims.telemetry()
    )
    runner = SessionThread(Session(config or gateway_config(sims, **config_options), options))
    runner.start()
    return runner


def chat_body(content: str = "hello", model: str = "qwen3:8b", **extra: Any) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(url + path, content=body, timeout=30, **kwargs)
    return httpx.post(url + path, json=body, timeout=30, **kwargs)
