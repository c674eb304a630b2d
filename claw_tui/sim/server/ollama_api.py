"""The Ollama surface: /api/* as Ollama answers it (field names and order, NDJSON streams, errors)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from claw_tui.sim.models import (
    GIB,
    MIB,
    InstalledModel,
    canonical_name,
    is_valid_name,
)
from claw_tui.sim.server.responses import DeferredResponse, ErrorItem, Reply, ollama_error, ollama_error_item
from claw_tui.sim.server.scheduler import Admission, Final, GenRequest, SimState, to_ns
from claw_tui.sim.server.wire import (
    FOREVER_DISPLAY_S,
    JSON_MEDIA,
    NDJSON,
    OLLAMA_VERSION,
    RequestError,
    expect_type,
    go_json,
    json_kind,
    now_rfc3339,
    parse_keep_alive,
    read_json_body,
    rfc3339_nano,
    rfc3339_to_unix,
)
from claw_tui.sim.text import count_chat_tokens, count_tokens, embedding_vector, normalize


class OllamaApi:
    def __init__(self, state: SimState) -> None:
        self.state = state

    # ---- simple endpoints -----------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return Response(go_json({"version": OLLAMA_VERSION}), media_type=JSON_MEDIA)

    async def tags(self, request: Request) -> Response:
        models = sorted(self.state.models.values(), key=lambda m: rfc3339_to_unix(m.modified_at), reverse=True)
        entries = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": m.modified_at,
                "size": m.size_bytes,
                "digest": m.digest,
                "details": m.details(include_parent=False),
            }
            for m in models
        ]
        return Response(go_json({"models": entries}), media_type=JSON_MEDIA)

    async def ps(self, request: Request) -> Response:
        now = time.time()
        entries = []
        for runner in self.state.loaded().values():
            expires = runner.expires_at
            if expires is None:  # in use: the keep-alive starts counting when it finishes
                expires = now + runner.keep_alive_s
            if math.isinf(expires):
                expires = now + FOREVER_DISPLAY_S
            entries.append(
                (
                    expires,
                    {
                        "name": runner.name,
                        "model": runner.name,
                        "size": runner.size_bytes,
                        "digest": runner.model.digest,
                        "details": runner.model.details(include_parent=False),
                        "expires_at": rfc3339_nano(int(expires * 1e9)),
                        "size_vram": runner.vram_bytes,
                        "context_length": runner.num_ctx,
                    },
                )
            )
        entries.sort(key=lambda e: e[0], reverse=True)  # longest remaining first, as Ollama sorts
        return Response(go_json({"models": [entry for _, entry in entries]}), media_type=JSON_MEDIA)

    async def show(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.ShowRequest")
            expect_type(data, "model", ("string",), "ShowRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not name:
                raise RequestError(400, "model is required")
            model = self.state.find_model(name)
            if model is None:
                raise RequestError(404, f"model '{name}' not found")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        body: dict[str, Any] = {}
        if model.license:
            body["license"] = "\n".join(model.license)
        body["modelfile"] = model.modelfile()
        if model.parameters:
            body["parameters"] = model.show_parameters()
        if model.template:
            body["template"] = model.template
        if model.system:
            body["system"] = model.system
        body["details"] = model.details()
        if model.messages:
            body["messages"] = model.messages
        body["model_info"] = model.model_info()
        if data.get("verbose"):
            body["tensors"] = _tensor_summary(model)
        body["capabilities"] = model.capabilities
        body["modified_at"] = model.modified_at
        return Response(go_json(body), media_type=JSON_MEDIA)

    # ---- inference ------------------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Reply:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.ChatRequest")
            _check_generate_fields(data, "ChatRequest", chat=True)
            model, label = self._require_model(data.get("model"))
            keep_alive = parse_keep_alive(data.get("keep_alive"))
            messages = data.get("messages") or []
            if not messages and keep_alive == 0:
                self.state.expire_runner(model.name)
                return self._json(
                    {
                        "model": label,
                        "created_at": now_rfc3339(),
                        "message": {"role": "assistant", "content": ""},
                        "done_reason": "unload",
                        "done": True,
                    }
                )
            if data.get("tools") and "tools" not in model.capabilities:
                raise RequestError(400, f"registry.ollama.ai/library/{model.name} does not support tools")
            think = resolve_think(data.get("think"), model, label)
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support chat')
            options = self.state.resolve_options(model, data.get("options"))
            keep_alive_s = self.state.keep_alive_or_default(keep_alive)
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        if not messages:
            return self._load_only_response(
                model,
                options,
                keep_alive_s,
                admission,
                {"model": label, "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True},
            )

        conversation = list(model.messages) + list(messages)
        if conversation and conversation[0].get("role") != "system" and model.system:
            conversation.insert(0, {"role": "system", "content": model.system})
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=last_user_text(conversation),
            context=conversation_text(conversation),
            prompt_tokens=count_chat_tokens(conversation),
            options=options,
            keep_alive_s=keep_alive_s,
            think=think,
            response_format=_format_of(data),
            arrived=arrived,
        )
        return self._generation_response(req, admission, _stream_flag(data), chat=True)

    async def generate(self, request: Request) -> Reply:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.GenerateRequest")
            _check_generate_fields(data, "GenerateRequest", chat=False)
            model, label = self._require_model(data.get("model"))
            keep_alive = parse_keep_alive(data.get("keep_alive"))
            prompt = data.get("prompt") or ""
            if not prompt and keep_alive == 0:
                self.state.expire_runner(model.name)
                return self._json(
                    {"model": label, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": "unload"}
                )
            if data.get("raw") and (data.get("template") or data.get("system") or data.get("context")):
                raise RequestError(400, "raw mode does not support template, system, or context")
            think = resolve_think(data.get("think"), model, label)
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support generate')
            options = self.state.resolve_options(model, data.get("options"))
            keep_alive_s = self.state.keep_alive_or_default(keep_alive)
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        if not prompt:
            return self._load_only_response(
                model,
                options,
                keep_alive_s,
                admission,
                {"model": label, "response": "", "done": True, "done_reason": "load"},
            )

        system = data.get("system") or model.system
        if data.get("raw"):
            prompt_tokens = count_tokens(prompt)
        else:
            turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            prompt_tokens = count_chat_tokens(turns)
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=prompt,
            context=f"{system}\n{data.get('suffix') or ''}",
            prompt_tokens=prompt_tokens,
            options=options,
            keep_alive_s=keep_alive_s,
            think=think,
            response_format=_format_of(data),
            arrived=arrived,
        )
        return self._generation_response(req, admission, _stream_flag(data), chat=False)

    async def embed(self, request: Request) -> Reply:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.EmbedRequest")
            expect_type(data, "model", ("string",), "EmbedRequest", "string")
            model, label = self._require_model(data.get("model"))
            texts = embed_inputs(data.get("input"))
            keep_alive_s = self.state.keep_alive_or_default(parse_keep_alive(data.get("keep_alive")))
            options = self.state.resolve_options(model, data.get("options"))
            dimensions = data.get("dimensions") or 0
            if isinstance(dimensions, bool) or not isinstance(dimensions, int):
                raise RequestError(
                    400,
                    f"json: cannot unmarshal {json_kind(dimensions)} into Go struct field "
                    "EmbedRequest.dimensions of type int",
                )
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def body() -> AsyncGenerator[bytes | ErrorItem, None]:
            counts, load_s, _ = await self.state.embed(model, texts, keep_alive_s, options, admission)
            vectors = [embedding_for(self.state, model, text, dimensions) for text in texts]
            total_s = time.monotonic() - arrived
            result: dict[str, Any] = {"model": label, "embeddings": vectors}
            if texts:
                result.update(total_duration=to_ns(total_s), load_duration=to_ns(load_s), prompt_eval_count=sum(counts))
            yield go_json(result)

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    async def embeddings(self, request: Request) -> Reply:
        """The legacy /api/embeddings: one prompt, one vector."""
        try:
            data = await read_json_body(request, "api.EmbeddingRequest")
            model, _ = self._require_model(data.get("model"))
            prompt = data.get("prompt") or ""
            keep_alive_s = self.state.keep_alive_or_default(parse_keep_alive(data.get("keep_alive")))
            options = self.state.resolve_options(model, data.get("options"))
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def body() -> AsyncGenerator[bytes | ErrorItem, None]:
            texts = [prompt] if prompt else []
            await self.state.embed(model, texts, keep_alive_s, options, admission)
            vector = embedding_for(self.state, model, prompt, 0) if prompt else []
            yield go_json({"embedding": vector})

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    # ---- model management -----------------------------------------------------------------------------------

    async def create(self, request: Request) -> Reply:
        try:
            data = await read_json_body(request, "api.CreateRequest")
            for key in ("model", "name", "from", "system", "template", "quantize"):
                expect_type(data, key, ("string",), "CreateRequest", "string")
            expect_type(data, "parameters", ("object",), "CreateRequest", "map[string]interface {}")
            expect_type(data, "messages", ("array",), "CreateRequest", "[]api.Message")
            license_texts = _license_list(data.get("license"))
            name = data.get("model") or data.get("name") or ""
            if not is_valid_name(name):
                raise RequestError(400, "invalid model name")
            base_name = data.get("from") or ""
            if not base_name and data.get("files"):
                raise RequestError(400, "creating models from files is not supported by the claw simulator")
            if not base_name:
                raise RequestError(400, "neither 'from' or 'files' was specified")
            quantize = _quantize_level(data.get("quantize"))
            base = self.state.find_model(base_name)
            pull_spec = None
            if base is None:
                pull_spec = self.state.pullable.get(canonical_name(base_name))
            source = base or (InstalledModel.from_spec(pull_spec) if pull_spec else None)
            if quantize and source is not None and source.quantization_level not in ("F16", "F32"):
                raise RequestError(400, "quantization is only supported for F16 and F32 models")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def statuses() -> AsyncGenerator[dict[str, Any] | ErrorItem, None]:
            if source is None:
                yield {"status": "pulling manifest"}
                await self._pause(0.05)
                yield ollama_error_item(500, "pull model manifest: file does not exist")
                return
            if base is None:
                async for line in self._pull_lines(source, include_success=False):
                    yield line
                self.state.models[source.name] = source
            new = source.derive(canonical_name(name), now_rfc3339())
            new.parent_model = source.name
            _apply_create_fields(new, data, license_texts)
            if quantize:
                yield {
                    "status": f"quantizing {source.quantization_level} model to {quantize}",
                    "digest": "0",
                    "total": source.spec.size_bytes,
                    "completed": 0,
                }
                await self._pause(0.2)
                yield {
                    "status": f"quantizing {source.quantization_level} model to {quantize}",
                    "digest": "0",
                    "total": source.spec.size_bytes,
                    "completed": source.spec.size_bytes,
                }
                new.quantization_level = quantize
                yield {"status": "verifying conversion"}
            existing = {digest for _, digest in source.layer_digests()}
            for _, digest in new.layer_digests():
                verb = "using existing" if digest in existing else "creating new"
                yield {"status": f"{verb} layer sha256:{digest}"}
                await self._pause(0.01)
            yield {"status": "writing manifest"}
            self.state.invalidate(new.name)
            self.state.models[new.name] = new
            yield {"status": "success"}

        return self._status_response(statuses(), _stream_flag(data))

    async def pull(self, request: Request) -> Reply:
        try:
            data = await read_json_body(request, "api.PullRequest")
            expect_type(data, "model", ("string",), "PullRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not is_valid_name(name):
                raise RequestError(400, "invalid model name")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        spec = self.state.pullable.get(canonical_name(name))

        async def statuses() -> AsyncGenerator[dict[str, Any] | ErrorItem, None]:
            if spec is None:
                yield {"status": "pulling manifest"}
                await self._pause(0.05)
                yield ollama_error_item(500, "pull model manifest: file does not exist")
                return
            fresh = InstalledModel.from_spec(spec)
            have = self.state.models.get(spec.name)
            async for line in self._pull_lines(fresh, include_success=False, cached=have is not None):
                yield line
            if have is None or have.digest != fresh.digest:
                self.state.invalidate(spec.name)
                self.state.models[spec.name] = fresh
            yield {"status": "success"}

        return self._status_response(statuses(), _stream_flag(data))

    async def delete(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.DeleteRequest")
            expect_type(data, "model", ("string",), "DeleteRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not name:
                raise RequestError(400, f'name "{name}" is invalid')
            model = self.state.find_model(name)
            if model is None:
                raise RequestError(404, f"model '{name}' not found")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        del self.state.models[model.name]
        self.state.invalidate(model.name)
        return Response(status_code=200)

    async def copy(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.CopyRequest")
            expect_type(data, "source", ("string",), "CopyRequest", "string")
            expect_type(data, "destination", ("string",), "CopyRequest", "string")
            source_name = data.get("source") or ""
            destination = data.get("destination") or ""
            if not is_valid_name(source_name):
                raise RequestError(400, f'source "{source_name}" is invalid')
            if not is_valid_name(destination):
                raise RequestError(400, f'destination "{destination}" is invalid')
            source = self.state.find_model(source_name)
            if source is None:
                raise RequestError(404, f'model "{source_name}" not found')
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        copy = source.derive(canonical_name(destination), now_rfc3339())
        self.state.invalidate(copy.name)
        self.state.models[copy.name] = copy
        return Response(status_code=200)

    # ---- helpers --------------------------------------------------------------------------------------------

    def _require_model(self, name: Any) -> tuple[InstalledModel, str]:
        if not name:
            raise RequestError(400, "model is required")
        model = self.state.find_model(name)
        if model is None:
            raise RequestError(404, f"model '{name}' not found")
        return model, name

    def _json(self, body: dict[str, Any], status: int = 200) -> Response:
        return Response(go_json(body), status_code=status, media_type=JSON_MEDIA)

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.state.speed)

    async def _pull_lines(
        self, model: InstalledModel, *, include_success: bool, cached: bool = False
    ) -> AsyncGenerator[dict[str, Any], None]:
        yield {"status": "pulling manifest"}
        await self._pause(0.05)
        layers = [
            (digest, model.spec.size_bytes if kind == "model" else 400 + len(kind) * 97)
            for kind, digest in model.layer_digests()
        ]
        for digest, total in layers:
            steps = 1 if cached or total < MIB else 4
            for step in range(1, steps + 1):
                yield {
                    "status": f"pulling {digest[:12]}",
                    "digest": f"sha256:{digest}",
                    "total": total,
                    "completed": total * step // steps,
                }
                await self._pause(0.02 if cached else 0.3 * total / GIB / steps + 0.01)
        for status in ("verifying sha256 digest", "writing manifest", "removing unused layers"):
            yield {"status": status}
            await self._pause(0.01)
        if include_success:
            yield {"status": "success"}

    def _status_response(self, statuses: AsyncGenerator[dict[str, Any] | ErrorItem, None], stream: bool) -> Reply:
        async def lines() -> AsyncGenerator[bytes | ErrorItem, None]:
            async for status in statuses:
                yield status if isinstance(status, ErrorItem) else go_json(status) + b"\n"

        async def last_only() -> AsyncGenerator[bytes | ErrorItem, None]:
            latest: dict[str, Any] = {}
            async for status in statuses:
                if isinstance(status, ErrorItem):
                    yield status
                    return
                latest = status
            yield go_json(latest)

        if stream:
            return DeferredResponse(lines(), media_type=NDJSON, streaming=True)
        return DeferredResponse(last_only(), media_type=JSON_MEDIA, streaming=False)

    def _load_only_response(
        self,
        model: InstalledModel,
        options: dict[str, Any],
        keep_alive_s: float,
        admission: Admission,
        reply: dict[str, Any],
    ) -> Reply:
        async def body() -> AsyncGenerator[bytes | ErrorItem, None]:
            await self.state.load_only(model, options, keep_alive_s, admission)
            yield go_json(
                {
                    "model": reply["model"],
                    "created_at": now_rfc3339(),
                    **{k: v for k, v in reply.items() if k != "model"},
                }
            )

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    def _generation_response(self, req: GenRequest, admission: Admission, stream: bool, *, chat: bool) -> Reply:
        plan = self.state.faults.take_stream_plan()
        events = self.state.generate(req, admission, plan)
        label = req.model_label
        if stream:
            items = _ollama_stream(events, label, chat)
            return DeferredResponse(items, media_type=NDJSON, streaming=True, on_close=admission.release)
        return DeferredResponse(
            _ollama_single(events, label, chat), media_type=JSON_MEDIA, streaming=False, on_close=admission.release
        )


def embedding_for(state: SimState, model: InstalledModel, text: str, dimensions: int) -> list[float]:
    vector = embedding_vector(text, model.spec.embedding_length, model=model.spec.name, seed=state.seed)
    if 0 < dimensions < len(vector):
        vector = normalize(vector[:dimensions])
    return [float(f"{v:.8g}") for v in vector]  # float32 precision, as Ollama sends them


def _ollama_chunk(label: str, chat: bool, kind: str, token: str) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": label, "created_at": now_rfc3339()}
    if chat:
        message = {"role": "assistant", "content": token if kind == "content" else ""}
        if kind == "thinking":
            message["thinking"] = token
        chunk["message"] = message
    else:
        chunk["response"] = token if kind == "content" else ""
        if kind == "thinking":
            chunk["thinking"] = token
    chunk["done"] = False
    return chunk


def _ollama_final(label: str, chat: bool, final: Final, content: str = "", thinking: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"model": label, "created_at": now_rfc3339()}
    if chat:
        message = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        body["message"] = message
        body["done_reason"] = final.done_reason
        body["done"] = True
    else:
        body["response"] = content
        if thinking:
            body["thinking"] = thinking
        body["done"] = True
        body["done_reason"] = final.done_reason
    body.update(final.ollama_metrics())
    return body


async def _ollama_stream(
    events: AsyncGenerator[tuple[str, Any], None], label: str, chat: bool
) -> AsyncGenerator[bytes | ErrorItem, None]:
    try:
        async for kind, value in events:
            if kind == "done":
                yield go_json(_ollama_final(label, chat, value)) + b"\n"
            elif kind == "error":
                yield ollama_error_item(500, value)
                return
            else:
                yield go_json(_ollama_chunk(label, chat, kind, value)) + b"\n"
    finally:
        await events.aclose()


async def _ollama_single(
    events: AsyncGenerator[tuple[str, Any], None], label: str, chat: bool
) -> AsyncGenerator[bytes | ErrorItem, None]:
    content: list[str] = []
    thinking: list[str] = []
    try:
        async for kind, value in events:
            if kind == "content":
                content.append(value)
            elif kind == "thinking":
                thinking.append(value)
            elif kind == "error":
                yield ollama_error_item(500, value)
                return
            elif kind == "done":
                yield go_json(_ollama_final(label, chat, value, "".join(content), "".join(thinking)))
    finally:
        await events.aclose()


def _check_generate_fields(data: dict[str, Any], struct_name: str, *, chat: bool) -> None:
    expect_type(data, "model", ("string",), struct_name, "string")
    expect_type(data, "stream", ("bool",), struct_name, "bool")
    expect_type(data, "options", ("object",), struct_name, "map[string]interface {}")
    if chat:
        expect_type(data, "messages", ("array",), struct_name, "[]api.Message")
        expect_type(data, "tools", ("array",), struct_name, "api.Tools")
        for message in data.get("messages") or []:
            if not isinstance(message, dict):
                raise RequestError(
                    400,
                    f"json: cannot unmarshal {json_kind(message)} into Go struct field "
                    f"{struct_name}.messages of type api.Message",
                )
            for key in ("role", "content", "thinking"):
                expect_type(message, key, ("string",), f"{struct_name}.messages", "string")
    else:
        for key in ("prompt", "system", "template", "suffix"):
            expect_type(data, key, ("string",), struct_name, "string")
        expect_type(data, "raw", ("bool",), struct_name, "bool")
    think = data.get("think")
    if think is not None and not isinstance(think, bool) and think not in ("low", "medium", "high"):
        raise RequestError(
            400, f'invalid think value: {json.dumps(think)} (must be "high", "medium", "low", true, or false)'
        )


def resolve_think(think: Any, model: InstalledModel, label: str) -> bool | str:
    if "thinking" in model.capabilities:
        return True if think is None else think
    if think:
        raise RequestError(400, f'"{label}" does not support thinking')
    return False


def _stream_flag(data: dict[str, Any]) -> bool:
    stream = data.get("stream")
    return True if stream is None else bool(stream)


def _format_of(data: dict[str, Any]) -> Any:
    fmt = data.get("format")
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    return None


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message)
    return _content_text(messages[-1]) if messages else ""


def conversation_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', '')}: {_content_text(m)}" for m in messages)


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestError(400, "invalid input type")


def _license_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestError(400, "license must be a string or an array of strings")


def _quantize_level(value: Any) -> str | None:
    if not value:
        return None
    levels = {"q4_k_m": "Q4_K_M", "q4_k_s": "Q4_K_S", "q8_0": "Q8_0"}
    level = levels.get(str(value).lower())
    if level is None:
        raise RequestError(400, f"unsupported quantization type {value}")
    return level


def _apply_create_fields(model: InstalledModel, data: dict[str, Any], license_texts: list[str]) -> None:
    """Parameters merge over the base's (new keys win, stored unvalidated); the rest replaces when given."""
    parameters = data.get("parameters")
    if isinstance(parameters, dict):
        model.parameters.update({k: v for k, v in parameters.items() if v is not None})
    if data.get("system"):
        model.system = data["system"]
    if data.get("template"):
        model.template = data["template"]
    if license_texts:
        model.license = license_texts
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        model.messages = [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in messages
            if isinstance(m, dict)
        ]


def _tensor_summary(model: InstalledModel) -> list[dict[str, Any]]:
    spec = model.spec
    return [
        {"name": "token_embd.weight", "type": model.quantization_level, "shape": [spec.embedding_length, 151936]},
        {
            "name": "blk.0.attn_q.weight",
            "type": model.quantization_level,
            "shape": [spec.embedding_length, spec.head_count * spec.head_dim],
        },
        {"name": "output_norm.weight", "type": "F32", "shape": [spec.embedding_length]},
    ]
