"""The app: the front door (Host check, faults answered before routing), the routes, and `SimServer`, which serves
them on a local port."""

from __future__ import annotations

import ipaddress
import socket
from typing import Self

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from claw_tui.httpserver import AppServer
from claw_tui.sim.gpu import SimGPU
from claw_tui.sim.server.faults import default_failure_message
from claw_tui.sim.server.ollama_api import OllamaApi
from claw_tui.sim.server.openai_api import OpenAIApi
from claw_tui.sim.server.responses import openai_error_body
from claw_tui.sim.server.scheduler import SimState
from claw_tui.sim.server.wire import JSON_MEDIA, go_json


class _FrontDoor:
    """Pure ASGI middleware: Ollama's Host check on loopback, and the `fail_next` fault hook."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.state.check_host and not self.state.openai_only and not _host_allowed(scope):
            await _send_plain(send, 403, b"", JSON_MEDIA)
            return
        failure = self.state.faults.take_failure(path)
        if failure is not None:
            status, message = failure
            message = message or default_failure_message(status)
            body = openai_error_body(status, message) if path.startswith("/v1/") else go_json({"error": message})
            await _send_plain(send, status, body, JSON_MEDIA)
            return
        await self.app(scope, receive, send)


async def _send_plain(send: Send, status: int, body: bytes, media_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_allowed(scope: Scope) -> bool:
    """Ollama, bound to loopback, answers 403 unless Host names a local host."""
    host = ""
    for key, value in scope.get("headers", []):
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            break
    if host.startswith("["):
        host = host[1:].split("]")[0]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host in ("", "localhost", "testserver") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == socket.gethostname().lower()
    return address.is_loopback or address.is_private or address.is_unspecified


def build_app(state: SimState) -> Starlette:
    openai = OpenAIApi(state)
    routes = [
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        Route("/v1/models", openai.models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai.model, methods=["GET"]),
    ]
    if state.openai_only:
        routes.append(Route("/health", lambda request: Response(status_code=200), methods=["GET"]))
    else:
        ollama = OllamaApi(state)
        routes += [
            Route("/", ollama.root, methods=["GET", "HEAD"]),
            Route("/api/version", ollama.version, methods=["GET", "HEAD"]),
            Route("/api/tags", ollama.tags, methods=["GET", "HEAD"]),
            Route("/api/ps", ollama.ps, methods=["GET"]),
            Route("/api/show", ollama.show, methods=["POST"]),
            Route("/api/chat", ollama.chat, methods=["POST"]),
            Route("/api/generate", ollama.generate, methods=["POST"]),
            Route("/api/embed", ollama.embed, methods=["POST"]),
            Route("/api/embeddings", ollama.embeddings, methods=["POST"]),
            Route("/api/create", ollama.create, methods=["POST"]),
            Route("/api/pull", ollama.pull, methods=["POST"]),
            Route("/api/delete", ollama.delete, methods=["DELETE"]),
            Route("/api/copy", ollama.copy, methods=["POST"]),
        ]
    app = Starlette(routes=routes, middleware=[Middleware(_FrontDoor, state=state)])
    app.state.sim = state
    return app


def create_sim_app(
    gpus: list[SimGPU],
    *,
    seed: int = 0,
    openai_only: bool = False,
    num_parallel: int = 2,
    max_queue: int = 16,
    speed: float = 1.0,
    keep_alive_default_s: float = 300,
    check_host: bool = False,
) -> Starlette:
    """The simulator as a Starlette app; its `SimState` (fault hooks, observers) is `app.state.sim`.

    `check_host` turns on Ollama's 403 for a non-local Host header; it is off here because an app used in
    process (e.g. through httpx.ASGITransport) has no listening address. `SimServer` sets it when it binds
    a loopback address, as Ollama does.
    """
    state = SimState(
        gpus,
        seed=seed,
        openai_only=openai_only,
        num_parallel=num_parallel,
        max_queue=max_queue,
        speed=speed,
        keep_alive_default_s=keep_alive_default_s,
        check_host=check_host,
    )
    return build_app(state)


class SimServer:
    """The simulator served over HTTP in the running event loop.

        server = SimServer(speed=20)          # one simulated H200 unless gpus=[...] is given
        url = await server.start()            # port 0: a free port
        ...                                   # server.state.fail_next(...), server.gpus[0].snapshot(), ...
        await server.stop()

    Also usable as `async with SimServer(...) as server:`.
    """

    def __init__(
        self,
        gpus: list[SimGPU] | None = None,
        *,
        seed: int = 0,
        openai_only: bool = False,
        num_parallel: int = 2,
        max_queue: int = 16,
        speed: float = 1.0,
        keep_alive_default_s: float = 300,
        max_loaded_models: int | None = None,
        default_num_ctx: int | None = None,
    ) -> None:
        self._gpus = list(gpus) if gpus else [SimGPU(seed=seed)]
        self._state = SimState(
            self._gpus,
            seed=seed,
            openai_only=openai_only,
            num_parallel=num_parallel,
            max_queue=max_queue,
            speed=speed,
            keep_alive_default_s=keep_alive_default_s,
            max_loaded_models=max_loaded_models,
            default_num_ctx=default_num_ctx,
        )
        self._app = build_app(self._state)
        self._server: AppServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.url

    @property
    def gpus(self) -> list[SimGPU]:
        return self._gpus

    @property
    def state(self) -> SimState:
        return self._state

    @property
    def app(self) -> Starlette:
        return self._app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            return self._server.url
        self._state.closing = False
        self._state.check_host = _is_loopback(host)
        self._server = AppServer(self._app, host, port)
        return await self._server.start()

    async def stop(self) -> None:
        """Stop serving: in-flight generations end, every runner unloads (the GPU goes back to idle)."""
        self._state.close()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
