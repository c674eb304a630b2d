"""The gateway: Ollama-native and OpenAI-compatible surfaces in front of the backends, metered into the ledger."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from claw_tui import __version__
from claw_tui.gateway import openai_compat as oai
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.backends import Backend
from claw_tui.gateway.metering import NdjsonMeter, SseMeter, apply_server_timings
from claw_tui.ledger import Ledger, RequestRecord

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class GatewayError(Exception):
    """An error answered to the client in the shape of the surface it called."""

    def __init__(self, status: int, message: str, *, error_type: str = "invalid_request_error",
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}


def ollama_error(exc: GatewayError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


def openai_error(exc: GatewayError) -> JSONResponse:
    error_type = {404: "not_found_error"}.get(exc.status, exc.error_type if exc.status < 500 else "api_error")
    return JSONResponse(oai.openai_error(exc.message, error_type), status_code=exc.status, headers=exc.headers)


async def read_json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        raise GatewayError(400, "missing request body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GatewayError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    return body


async def wait_for_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    pass


class Gateway:
    """Holds the routing state; `app` is the ASGI application served by the Session."""

    def __init__(self, *, backends: list[Backend], ledger: Ledger, agents: list[Agent], session: Any,
                 first_token_timeout_s: float = 300.0) -> None:
        self.backends = backends
        self.ledger = ledger
        self.agents = {agent.name: agent for agent in agents}
        self.session = session
        self.first_token_timeout_s = first_token_timeout_s
        self.before_forward: list[Callable[[RequestRecord], Awaitable[None]]] = []
        self.app = Starlette(routes=self._routes())

    def set_agents(self, agents: list[Agent]) -> None:
        self.agents = {agent.name: agent for agent in agents}

    def _routes(self) -> list[Route]:
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/tags", self.tags, methods=["GET"]),
            Route("/api/chat", self.ollama_chat, methods=["POST"]),
            Route("/api/generate", self.ollama_generate, methods=["POST"]),
            Route("/api/ps", self.ps, methods=["GET"]),
            Route("/api/show", self.passthrough_by_model, methods=["POST"]),
            Route("/api/embed", self.passthrough_by_model, methods=["POST"]),
            Route("/api/create", self.passthrough_by_model, methods=["POST"]),
            Route("/api/pull", self.passthrough_by_model, methods=["POST"]),
            Route("/api/copy", self.passthrough_by_model, methods=["POST"]),
            Route("/api/delete", self.passthrough_by_model, methods=["DELETE"]),
            Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/models", self.openai_models, methods=["GET"]),
            Route("/claw/v1/status", self.claw_status, methods=["GET"]),
            Route("/claw/v1/requests", self.claw_requests, methods=["GET"]),
            Route("/claw/v1/summary", self.claw_summary, methods=["GET"]),
            Route("/claw/v1/backends", self.claw_backends, methods=["GET"]),
            Route("/claw/v1/governor", self.claw_governor, methods=["GET", "POST"]),
        ]

    # ---- simple endpoints ------------------------------------------------------------------------------------
    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        backend = self.backends[0] if self.backends else None
        if backend is not None and backend.kind == "ollama":
            try:
                response = await backend.client.get("/api/version")
                if response.status_code == 200:
                    return JSONResponse(response.json(), headers={"X-Claw-Version": __version__})
            except (httpx.HTTPError, ValueError):
                pass
        return JSONResponse({"version": "0.0.0"}, headers={"X-Claw-Version": __version__})

    async def all_models(self) -> list[dict]:
        """Every backend's models, merged by name, then the agents as virtual models."""
        merged: dict[str, dict] = {}
        results = await asyncio.gather(*(b.models() for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results):
            if isinstance(result, BaseException):
                backend.record_failure(f"listing models failed: {result}")
                continue
            for tag in result:
                merged.setdefault(tag.get("name") or tag.get("model"), tag)
        for agent in self.agents.values():
            merged.setdefault(agent.name, agent.as_tag())
        return list(merged.values())

    async def tags(self, request: Request) -> Response:
        return JSONResponse({"models": await self.all_models()})

    async def openai_models(self, request: Request) -> Response:
        return JSONResponse(oai.models_list(await self.all_models()))

    async def ps(self, request: Request) -> Response:
        models: list[dict] = []
        for backend in self.backends:
            if backend.kind != "ollama":
                continue
            try:
                response = await backend.client.get("/api/ps")
                models.extend(response.json().get("models") or [])
            except (httpx.HTTPError, ValueError) as exc:
                backend.record_failure(f"/api/ps failed: {exc}")
        return JSONResponse({"models": models})

    async def claw_status(self, request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(self.session.status_json))

    async def claw_requests(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return JSONResponse({"error": "limit must be an integer"}, status_code=400)
        await asyncio.to_thread(self.session.refresh_telemetry)
        records = self.ledger.records(max(0, min(limit, 10_000)))
        return JSONResponse({"requests": [r.to_json() for r in reversed(records)]})

    async def claw_summary(self, request: Request) -> Response:
        await asyncio.to_thread(self.session.refresh_telemetry)
        return JSONResponse(await asyncio.to_thread(self.session.summary_json))

    async def claw_governor(self, request: Request) -> Response:
        """GET: the governor's status; POST {"enabled": bool, "idle_after_s"?: s, "unload_after_s"?: s}."""
        governor = getattr(self.session, "governor", None)
        if governor is None:
            return JSONResponse({"error": "the governor is not running"}, status_code=503)
        if request.method == "GET":
            return JSONResponse(governor.status_json())
        try:
            body = await read_json_body(request)
        except GatewayError as exc:
            return ollama_error(exc)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            return JSONResponse({"error": 'expected {"enabled": true|false}'}, status_code=400)
        limits = {}
        for key in ("idle_after_s", "unload_after_s"):
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                return JSONResponse({"error": f"{key} must be a number of seconds >= 0"}, status_code=400)
            limits[key] = float(value)
        return JSONResponse(await governor.set_enabled(enabled, **limits))

    async def claw_backends(self, request: Request) -> Response:
        return JSONResponse({"backends": [b.to_json() for b in self.backends]})

    # ---- routing ---------------------------------------------------------------------------------------------------
    async def pick_backend(self, model: str) -> Backend:
        if not self.backends:
            raise GatewayError(503, "no backend configured", error_type="api_error")
        candidates = [b for b in self.backends if b.state == "up"] or list(self.backends)
        for backend in candidates:
            if await backend.has_model(model):
                return backend
        raise GatewayError(404, f"model '{model}' not found", error_type="not_found_error")

    def resolve_model(self, model) -> tuple[str, Agent | None]:
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "model is required")
        agent = self.agents.get(model)
        return (agent.model, agent) if agent else (model, None)

    async def _before_forward(self, record: RequestRecord) -> None:
        for hook in self.before_forward:
            await hook(record)

    async def send_upstream(self, backend: Backend, http_request: Request, method: str, path: str,
                            body: dict) -> httpx.Response:
        """Send and wait for the response head, giving up at once if the client goes away meanwhile."""
        upstream_request = backend.client.build_request(method, path, json=body)
        send = asyncio.ensure_future(backend.client.send(upstream_request, stream=True))
        gone = asyncio.ensure_future(wait_for_disconnect(http_request.receive))
        try:
            done, _ = await asyncio.wait({send, gone}, timeout=self.first_token_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            send.cancel()
            gone.cancel()
            raise
        if send in done:
            gone.cancel()
            return send.result()
        send.cancel()
        with anyio.CancelScope(shield=True):
            try:
                response = await send
                await response.aclose()
            except (asyncio.CancelledError, httpx.HTTPError):
                pass
        if gone in done:
            raise ClientGone()
        gone.cancel()
        raise GatewayError(504, f"no response from backend '{backend.name}' within {self.first_token_timeout_s:g}s",
                           error_type="api_error")

    # ---- metered forwarding ----------------------------------------------------------------------------------------
    async def ollama_chat(self, request: Request) -> Response:
        return await self._ollama_metered(request, "/api/chat")

    async def ollama_generate(self, request: Request) -> Response:
        return await self._ollama_metered(request, "/api/generate")

    async def _ollama_metered(self, request: Request, path: str) -> Response:
        try:
            body = await read_json_body(request)
            model, agent = self.resolve_model(body.get("model"))
        except GatewayError as exc:
            return ollama_error(exc)
        if agent is not None:
            body = agent.apply_to_chat(body) if path == "/api/chat" else agent.apply_to_generate(body)
        stream = body.get("stream", True) is not False
        record = self.ledger.open_request(
            model=model, endpoint=path, surface="ollama", agent=agent.name if agent else None, stream=stream,
            client=request.client.host if request.client else "",
        )
        try:
            backend = await self.pick_backend(model)
        except GatewayError as exc:
            self.ledger.finish(record, "rejected" if exc.status != 404 else "error", exc.status, exc.message)
            return ollama_error(exc)
        return await self._forward_ollama(request, backend, path, body, record, stream)

    def _headers(self, record: RequestRecord, backend: Backend) -> dict:
        headers = {"X-Claw-Request-Id": record.id, "X-Claw-Backend": backend.name, "X-Claw-Model": record.model}
        if record.downgraded_from:
            headers["X-Claw-Model-Downgraded"] = record.model
        return headers

    async def _open_upstream(self, request: Request, backend: Backend, path: str, body: dict,
                             record: RequestRecord) -> httpx.Response:
        record.backend = backend.name
        await self._before_forward(record)
        self.ledger.mark_upstream_start(record, backend.gpu)
        backend.in_flight += 1
        try:
            upstream = await self.send_upstream(backend, request, "POST", path, body)
        except ClientGone:
            backend.in_flight -= 1
            self.ledger.finish(record, "cancelled", 499, "client disconnected before the first token")
            raise
        except httpx.HTTPError as exc:
            backend.in_flight -= 1
            message = f"backend '{backend.name}' unreachable at {backend.url}: {exc or type(exc).__name__}"
            backend.record_failure(message)
            self.ledger.finish(record, "error", 502, message)
            raise GatewayError(502, message, error_type="api_error") from None
        except GatewayError as exc:
            backend.in_flight -= 1
            self.ledger.finish(record, "error", exc.status, exc.message)
            raise
        return upstream

    async def _upstream_error(self, upstream: httpx.Response, backend: Backend, record: RequestRecord) -> GatewayError:
        content = await upstream.aread()
        await upstream.aclose()
        backend.in_flight -= 1
        try:
            message = json.loads(content).get("error") or content.decode(errors="replace")
            if isinstance(message, dict):
                message = message.get("message", str(message))
        except (ValueError, AttributeError):
            message = content.decode(errors="replace") or f"backend answered {upstream.status_code}"
        if upstream.status_code >= 500:
            backend.record_failure(str(message))
        self.ledger.finish(record, "error", upstream.status_code, str(message))
        headers = {"Retry-After": upstream.headers["Retry-After"]} if "Retry-After" in upstream.headers else {}
        return GatewayError(upstream.status_code, str(message), headers=headers)

    async def _forward_ollama(self, request: Request, backend: Backend, path: str, body: dict,
                              record: RequestRecord, stream: bool) -> Response:
        try:
            upstream = await self._open_upstream(request, backend, path, body, record)
        except ClientGone:
            return Response(status_code=499)
        except GatewayError as exc:
            return ollama_error(exc)
        if upstream.status_code != 200:
            return ollama_error(await self._upstream_error(upstream, backend, record))
        backend.record_success()
        headers = self._headers(record, backend)
        if not stream:
            return await self._ollama_whole(upstream, backend, record, headers)
        meter = NdjsonMeter(lambda: self.ledger.mark_first_token(record))
        return StreamingResponse(self._relay_ndjson(upstream, backend, record, meter), media_type=NDJSON,
                                 headers=headers)

    async def _ollama_whole(self, upstream: httpx.Response, backend: Backend, record: RequestRecord,
                            headers: dict) -> Response:
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            message = f"backend '{backend.name}' failed mid-response: {exc}"
            self.ledger.finish(record, "error", 502, message)
            return JSONResponse({"error": message}, status_code=502)
        finally:
            await upstream.aclose()
            backend.in_flight -= 1
        meter = NdjsonMeter(lambda: None)
        meter.feed_object_line(content)
        meter.apply_to(record)
        if meter.final is not None:
            self._estimate_first_token(record, meter.final)
        status = "error" if meter.error else "ok"
        self.ledger.finish(record, status, 200, meter.error)
        return Response(content, media_type=upstream.headers.get("content-type", "application/json"),
                        headers=headers)

    def _estimate_first_token(self, record: RequestRecord, final: dict) -> None:
        """For an answer that came whole, the server's load + prefill time places the first token."""
        apply_server_timings(record, final)
        if record.t_upstream_start is None:
            return
        offset_ms = (record.server_load_ms or 0) + (record.server_prompt_eval_ms or 0)
        self.ledger.mark_first_token(record, at=record.t_upstream_start + offset_ms / 1000)

    async def _relay_ndjson(self, upstream: httpx.Response, backend: Backend, record: RequestRecord,
                            meter: NdjsonMeter) -> AsyncIterator[bytes]:
        status, error = "ok", None
        try:
            async for chunk in upstream.aiter_raw():
                meter.feed(chunk)
                yield chunk
            meter.close()
            if meter.error:
                status, error = "error", meter.error
        except httpx.HTTPError as exc:
            status, error = "error", f"backend '{backend.name}' failed mid-stream: {exc or type(exc).__name__}"
            backend.record_failure(error)
            yield json.dumps({"error": error}).encode() + b"\n"
        except BaseException:
            status, error = "cancelled", "client disconnected"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                backend.in_flight -= 1
                meter.apply_to(record)
                self.ledger.finish(record, status, 499 if status == "cancelled" else 200, error)

    async def passthrough_by_model(self, request: Request) -> Response:
        """Unmetered endpoints (show, embed, create, pull, copy, delete) sent to the backend that has the model."""
        try:
            body = await read_json_body(request)
        except GatewayError as exc:
            return ollama_error(exc)
        name = body.get("model") or body.get("name") or body.get("source") or body.get("from")
        backend = None
        if isinstance(name, str) and name:
            model = self.agents[name].model if name in self.agents else name
            for candidate in self.backends:
                if candidate.kind == "ollama" and await candidate.has_model(model):
                    backend = candidate
                    break
        backend = backend or next((b for b in self.backends if b.kind == "ollama"), None)
        if backend is None:
            return ollama_error(GatewayError(501, "no Ollama backend for this endpoint"))
        try:
            upstream_request = backend.client.build_request(request.method, request.url.path, json=body)
            upstream = await backend.client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return ollama_error(GatewayError(502, f"backend '{backend.name}' unreachable: {exc}"))
        if request.url.path in ("/api/create", "/api/delete", "/api/copy", "/api/pull"):
            backend.forget_models()

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()

        headers = {"X-Claw-Backend": backend.name}
        return StreamingResponse(relay(), status_code=upstream.status_code, headers=headers,
                                 media_type=upstream.headers.get("content-type"))

    # ---- the OpenAI-compatible surface -----------------------------------------------------------------------------
    async def openai_chat(self, request: Request) -> Response:
        try:
            body = await read_json_body(request)
            model, agent = self.resolve_model(body.get("model"))
        except GatewayError as exc:
            return openai_error(exc)
        stream = bool(body.get("stream", False))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        record = self.ledger.open_request(
            model=model, endpoint="/v1/chat/completions", surface="openai", agent=agent.name if agent else None,
            stream=stream, client=request.client.host if request.client else "",
        )
        try:
            backend = await self.pick_backend(model)
            if backend.kind == "openai":
                upstream_body = dict(body, model=model)
                if agent is not None:
                    upstream_body = _openai_body_for_agent(upstream_body, agent)
                return await self._forward_openai(request, backend, upstream_body, record, stream, include_usage)
            native = oai.to_ollama_chat(body)
        except oai.TranslationError as exc:
            self.ledger.finish(record, "rejected", 400, str(exc))
            return JSONResponse(oai.openai_error(str(exc), param=exc.param), status_code=400)
        except GatewayError as exc:
            self.ledger.finish(record, "error", exc.status, exc.message)
            return openai_error(exc)
        native["model"] = model
        if agent is not None:
            native = agent.apply_to_chat(native)
        try:
            upstream = await self._open_upstream(request, backend, "/api/chat", native, record)
        except ClientGone:
            return Response(status_code=499)
        except GatewayError as exc:
            return openai_error(exc)
        if upstream.status_code != 200:
            return openai_error(await self._upstream_error(upstream, backend, record))
        backend.record_success()
        headers = self._headers(record, backend)
        completion_id = f"chatcmpl-{record.id}"
        writer = oai.ChunkWriter(completion_id, body.get("model"), include_usage)
        if stream:
            return StreamingResponse(self._relay_as_sse(upstream, backend, record, writer), media_type=SSE,
                                     headers=headers)
        return await self._collect_as_completion(upstream, backend, record, writer, headers)

    async def _native_chunks(self, upstream: httpx.Response, meter: NdjsonMeter) -> AsyncIterator[dict]:
        buffer = b""
        async for data in upstream.aiter_raw():
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                meter.feed_object(obj)
                yield obj
        if buffer.strip():
            obj = json.loads(buffer)
            meter.feed_object(obj)
            yield obj

    async def _relay_as_sse(self, upstream: httpx.Response, backend: Backend, record: RequestRecord,
                            writer: oai.ChunkWriter) -> AsyncIterator[bytes]:
        meter = NdjsonMeter(lambda: self.ledger.mark_first_token(record))
        status, error = "ok", None
        try:
            async for obj in self._native_chunks(upstream, meter):
                if "error" in obj:
                    status, error = "error", str(obj["error"])
                    yield _sse_error(error)
                    return
                if obj.get("done"):
                    yield writer.finish(obj)
                else:
                    event = writer.content(obj)
                    if event is not None:
                        yield event
        except (httpx.HTTPError, ValueError) as exc:
            status, error = "error", f"backend '{backend.name}' failed mid-stream: {exc or type(exc).__name__}"
            backend.record_failure(error)
            yield _sse_error(error)
        except BaseException:
            status, error = "cancelled", "client disconnected"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                backend.in_flight -= 1
                meter.apply_to(record)
                self.ledger.finish(record, status, 499 if status == "cancelled" else 200, error)

    async def _collect_as_completion(self, upstream: httpx.Response, backend: Backend, record: RequestRecord,
                                     writer: oai.ChunkWriter, headers: dict) -> Response:
        meter = NdjsonMeter(lambda: self.ledger.mark_first_token(record))
        meter.keep_text = True
        final: dict | None = None
        tool_calls: list[dict] = []
        try:
            async for obj in self._native_chunks(upstream, meter):
                tool_calls.extend((obj.get("message") or {}).get("tool_calls") or [])
                if obj.get("done"):
                    final = obj
        except (httpx.HTTPError, ValueError) as exc:
            meter.error = f"backend '{backend.name}' failed mid-response: {exc or type(exc).__name__}"
        finally:
            await upstream.aclose()
            backend.in_flight -= 1
        meter.apply_to(record)
        if meter.error or final is None:
            message = meter.error or "backend closed the stream without a final chunk"
            self.ledger.finish(record, "error", 502, message)
            return JSONResponse(oai.openai_error(message, "api_error"), status_code=502, headers=headers)
        self.ledger.finish(record, "ok", 200)
        text = "".join(part for part in meter.text_parts if part != "<tool_calls>")
        return JSONResponse(oai.completion_object(writer.id, writer.model, text, tool_calls, final), headers=headers)

    async def _forward_openai(self, request: Request, backend: Backend, body: dict, record: RequestRecord,
                              stream: bool, include_usage: bool) -> Response:
        upstream_body = dict(body)
        if stream:
            upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        try:
            upstream = await self._open_upstream(request, backend, "/v1/chat/completions", upstream_body, record)
        except ClientGone:
            return Response(status_code=499)
        except GatewayError as exc:
            return openai_error(exc)
        if upstream.status_code != 200:
            return openai_error(await self._upstream_error(upstream, backend, record))
        backend.record_success()
        headers = self._headers(record, backend)
        meter = SseMeter(lambda: self.ledger.mark_first_token(record))
        if stream:
            return StreamingResponse(self._relay_sse(upstream, backend, record, meter, include_usage),
                                     media_type=SSE, headers=headers)
        try:
            content = await upstream.aread()
        finally:
            await upstream.aclose()
            backend.in_flight -= 1
        try:
            meter.feed_object(json.loads(content))
        except ValueError:
            pass
        meter.apply_to(record)
        self.ledger.finish(record, "ok", 200)
        return Response(content, media_type="application/json", headers=headers)

    async def _relay_sse(self, upstream: httpx.Response, backend: Backend, record: RequestRecord, meter: SseMeter,
                         include_usage: bool) -> AsyncIterator[bytes]:
        status, error = "ok", None
        try:
            async for chunk in upstream.aiter_raw():
                for event in meter.feed(chunk):
                    if not include_usage and _is_usage_only(event):
                        continue
                    yield event
            rest = meter.rest()
            if rest:
                yield rest
            if meter.error:
                status, error = "error", meter.error
        except httpx.HTTPError as exc:
            status, error = "error", f"backend '{backend.name}' failed mid-stream: {exc or type(exc).__name__}"
            backend.record_failure(error)
            yield _sse_error(error)
        except BaseException:
            status, error = "cancelled", "client disconnected"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                backend.in_flight -= 1
                meter.apply_to(record)
                self.ledger.finish(record, status, 499 if status == "cancelled" else 200, error)


def _sse_error(message: str) -> bytes:
    return b"data: " + json.dumps(oai.openai_error(message, "api_error")).encode() + b"\n\n"


def _is_usage_only(event: bytes) -> bool:
    return b'"choices":[]' in event.replace(b" ", b"") and b'"usage"' in event


def _openai_body_for_agent(body: dict, agent: Agent) -> dict:
    messages = list(body.get("messages") or [])
    if agent.system and not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": agent.system})
    out = dict(body, messages=messages)
    if agent.max_tokens and not body.get("max_tokens"):
        out["max_tokens"] = agent.max_tokens
    return out
