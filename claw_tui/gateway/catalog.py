"""The model catalogue and model management endpoints (tags, ps, show, version, admin) — mixed into Gateway."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from claw_tui import __version__
from claw_tui.gateway import openai_compat as oai
from claw_tui.gateway import validate
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.backends import (
    CONNECT_ERRORS,
    UPSTREAM_ERRORS,
    Backend,
    describe_error,
    unreachable_message,
)
from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange

if TYPE_CHECKING:
    from claw_tui.gateway.router import Router

log = logging.getLogger(__name__)

OLLAMA_API_VERSION = "0.32.15"  # answered by /api/version when no Ollama backend said its own
TEXT = b"text/plain; charset=utf-8"
BACKEND_HEADER = b"x-claw-backend"


class ModelEndpoints:
    """Needs from its host (Gateway) what is declared here."""

    backends: list[Backend]
    agents: dict[str, Agent]
    router: Router
    _read_json: Callable[[Exchange], Awaitable[tuple[dict[str, Any], bytes]]]

    async def root(self, ex: Exchange) -> None:
        await ex.respond(200, b"Ollama is running", media_type=TEXT)

    async def version(self, ex: Exchange) -> None:
        version = next((b.version for b in self.backends if b.kind == "ollama" and b.version), None)
        if version is None:
            for backend in self.backends:
                if backend.kind == "ollama":
                    try:
                        version = backend.version = (await backend.get_json("/api/version")).get("version")
                        break
                    except UPSTREAM_ERRORS:
                        continue
        body = json.dumps({"version": version or OLLAMA_API_VERSION}).encode()
        await ex.respond(200, body, [(b"x-claw-version", __version__.encode())])

    async def all_models(self) -> list[dict[str, Any]]:
        """Every backend's models, merged by name, then the agents as virtual models.

        When no backend could be listed, a 502 that names each backend, what went wrong and what to do: an empty
        list would say "no models" where the truth is "no backend"."""
        merged: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        results = await asyncio.gather(*(b.models() for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results):
            if isinstance(result, BaseException):
                if not isinstance(result, UPSTREAM_ERRORS):
                    raise result
                unreachable = isinstance(result, CONNECT_ERRORS)
                if unreachable:
                    message = unreachable_message(backend, result)
                else:
                    message = f"backend '{backend.name}' at {backend.url} could not list its models: "
                    message += describe_error(result)
                backend.record_failure(message, unreachable=unreachable)
                failures.append(message)
                continue
            for tag in result:
                merged.setdefault(tag.get("name") or tag.get("model") or "", tag)
        if failures and len(failures) == len(self.backends):
            raise GatewayError(502, "; ".join(failures), error_type="api_error", headers={"Retry-After": "5"})
        for agent in self.agents.values():
            merged.setdefault(agent.name, agent.as_tag())
        return list(merged.values())

    async def tags(self, ex: Exchange) -> None:
        await ex.respond(200, _dumps({"models": await self.all_models()}))

    async def openai_models(self, ex: Exchange) -> None:
        await ex.respond(200, _dumps(oai.models_list(await self.all_models())))

    async def openai_model(self, ex: Exchange) -> None:
        name = ex.path.removeprefix("/v1/models/")
        for entry in oai.models_list(await self.all_models())["data"]:
            if entry["id"] == name:
                await ex.respond(200, _dumps(entry))
                return
        raise GatewayError(404, f"model '{name}' not found")

    async def ps(self, ex: Exchange) -> None:
        async def loaded(backend: Backend) -> list[dict[str, Any]]:
            if backend.kind != "ollama":  # an OpenAI-compatible server keeps its models loaded
                return [
                    dict(tag, size_vram=tag.get("size", 0), expires_at="0001-01-01T00:00:00Z", context_length=0)
                    for tag in await backend.models()
                ]
            return (await backend.get_json("/api/ps")).get("models") or []

        models: list[dict[str, Any]] = []
        results = await asyncio.gather(*(loaded(b) for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results):
            if isinstance(result, BaseException):
                log.debug("/api/ps of %s failed: %s", backend.name, result)
                continue
            models.extend(result)
        await ex.respond(200, _dumps({"models": models}))

    async def show(self, ex: Exchange) -> None:
        body, raw = await self._read_json(ex)
        name = validate.require_model(body, "model" if body.get("model") not in (None, "") else "name")
        agent = self.agents.get(name)
        model = agent.model if agent else name
        backend = await self._backend_with(model)
        if backend is None:
            raise GatewayError(404, f"model '{name}' not found")
        if backend.kind != "ollama":
            await ex.respond(200, _dumps(_show_for_openai_model(model)), [(b"x-claw-backend", backend.name.encode())])
            return
        content = raw if agent is None else _dumps(dict(body, model=model))
        try:
            async with asyncio.timeout(backend.connect_timeout_s + 30):
                response = await backend.send("POST", "/api/show", content, {"Content-Type": "application/json"})
                out = await response.read()
        except UPSTREAM_ERRORS as exc:
            raise GatewayError(
                502, f"backend '{backend.name}' failed: {exc or type(exc).__name__}", error_type="api_error"
            ) from None
        if agent is not None and response.status == 200:
            out = _dumps(_show_for_agent(json.loads(out), agent))
        await ex.respond(response.status, out, [(b"x-claw-backend", backend.name.encode())])

    async def _backend_with(self, model: str) -> Backend | None:
        known, unknown = self.router.serving(model)
        if not known:
            await self.router.refresh_for(model)
            known, unknown = self.router.serving(model)
        healthy = [b for b in known if b.in_rotation]
        candidates = healthy or known or unknown
        return candidates[0] if candidates else None

    async def legacy_embeddings(self, ex: Exchange) -> None:
        body, raw = await self._read_json(ex)
        model = validate.require_model(body)
        backend = await self._backend_with(self.agents[model].model if model in self.agents else model)
        if backend is None or backend.kind != "ollama":
            raise GatewayError(404, f"model '{model}' not found on an Ollama backend")
        await self._forward(ex, backend, "POST", raw)

    async def admin(self, ex: Exchange) -> None:
        """/api/create, /api/pull, /api/copy, /api/delete: sent to an Ollama backend as they are."""
        body, raw = await self._read_json(ex)
        validate.admin_request(ex.path, body)
        backend = self._admin_backend(ex, body)
        try:
            await self._forward(ex, backend, ex.method, raw, before_end=backend.refresh_models)
        finally:
            backend.forget_models()

    def _admin_backend(self, ex: Exchange, body: dict[str, Any]) -> Backend:
        ollama = [b for b in self.backends if b.kind == "ollama"]
        named = ex.header(BACKEND_HEADER)
        if named:
            for backend in self.backends:
                if backend.name == named:
                    if backend.kind != "ollama":
                        raise GatewayError(
                            400,
                            f"backend '{named}' is OpenAI-compatible: models are managed on it "
                            "directly, not through the Ollama API",
                        )
                    return backend
            raise GatewayError(404, f"no backend named '{named}'")
        if not ollama:
            raise GatewayError(
                501, "managing models needs an Ollama backend; the configured backends are all OpenAI-compatible"
            )
        for field in ("from", "source", "model", "name"):
            name = body.get(field)
            if ex.path == "/api/pull" or not isinstance(name, str) or not name:
                continue
            for backend in ollama:
                if backend.has_model(name):
                    return backend
            break
        return next((b for b in ollama if b.in_rotation), ollama[0])

    async def _forward(
        self,
        ex: Exchange,
        backend: Backend,
        method: str,
        raw: bytes,
        before_end: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """Send the request to one backend as it is and relay the answer as it comes (status, type, chunks)."""
        ex.watch()
        try:
            response = await backend.send(method, ex.path, raw, {"Content-Type": "application/json"})
        except (aiohttp.ClientError, OSError) as exc:
            raise GatewayError(
                502, f"backend '{backend.name}' unreachable at {backend.url}: {exc}", error_type="api_error"
            ) from None
        try:
            headers = [(b"x-claw-backend", backend.name.encode())]
            content_type = response.headers.get("content-type")
            if content_type:
                headers.append((b"content-type", content_type.encode()))
            await ex.start(response.status, headers)
            try:
                async for chunk in response.content.iter_any():
                    await ex.write(chunk)
            except (aiohttp.ClientError, OSError) as exc:
                await ex.write(_dumps({"error": f"backend '{backend.name}' failed mid-stream: {exc}"}) + b"\n")
            if before_end is not None:
                try:
                    await before_end()
                except UPSTREAM_ERRORS as exc:
                    log.debug("after %s: %s", ex.path, exc)
            await ex.end()
        finally:
            response.close()


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _show_for_agent(shown: dict[str, Any], agent: Agent) -> dict[str, Any]:
    out = dict(shown)
    if agent.system:
        out["system"] = agent.system
    lines = [out.get("parameters") or ""] if out.get("parameters") else []
    for key, value in agent.options.items():
        lines.append(f"{key:<30} {json.dumps(value)}")
    if lines:
        out["parameters"] = "\n".join(lines)
    details = dict(out.get("details") or {})
    details["parent_model"] = agent.model
    out["details"] = details
    return out


def _show_for_openai_model(model: str) -> dict[str, Any]:
    return {
        "modelfile": f"FROM {model}\n",
        "parameters": "",
        "template": "",
        "details": {
            "parent_model": "",
            "format": "",
            "family": "",
            "families": None,
            "parameter_size": "",
            "quantization_level": "",
        },
        "model_info": {},
        "capabilities": ["completion"],
    }
