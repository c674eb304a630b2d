"""The OpenAI-compatible surface: /v1/* as Ollama answers it (SSE streams, OpenAI-shaped errors)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from claw_tui.sim.models import InstalledModel
from claw_tui.sim.server.ollama_api import conversation_text, embed_inputs, embedding_for, last_user_text, resolve_think
from claw_tui.sim.server.responses import DeferredResponse, ErrorItem, Reply, openai_error, openai_error_item
from claw_tui.sim.server.scheduler import Admission, Final, GenRequest, SimState
from claw_tui.sim.server.wire import (
    JSON_MEDIA,
    SSE_MEDIA,
    RequestError,
    expect_type,
    go_json,
    json_kind,
    read_json_body,
    rfc3339_to_unix,
)
from claw_tui.sim.text import count_chat_tokens, count_tokens


class OpenAIApi:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def models(self, request: Request) -> Response:
        models = sorted(self.state.models.values(), key=lambda m: rfc3339_to_unix(m.modified_at), reverse=True)
        data = [self._model_entry(m) for m in models]
        return Response(go_json({"object": "list", "data": data}), media_type=JSON_MEDIA)

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        model = self.state.find_model(name)
        if model is None:
            return openai_error(404, f"model '{name}' not found")
        return Response(go_json(self._model_entry(model)), media_type=JSON_MEDIA)

    async def chat_completions(self, request: Request) -> Reply:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "openai.ChatCompletionRequest")
            self._check_fields(data, "ChatCompletionRequest")
            expect_type(data, "messages", ("array",), "ChatCompletionRequest", "[]openai.Message")
            model, label = self._require_model(data.get("model"))
            messages = data.get("messages") or []
            if not messages:
                raise RequestError(400, "[] is too short - 'messages'")
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support chat')
            think = resolve_think(_openai_think(data), model, label)
            options = self.state.resolve_options(model, self._options(data))
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)
        conversation = list(model.messages) + [m for m in messages if isinstance(m, dict)]
        if conversation and conversation[0].get("role") != "system" and model.system:
            conversation.insert(0, {"role": "system", "content": model.system})
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=last_user_text(conversation),
            context=conversation_text(conversation),
            prompt_tokens=count_chat_tokens(conversation),
            options=options,
            keep_alive_s=self.state.keep_alive_or_default(None),
            think=think,
            response_format=_openai_format(data.get("response_format")),
            arrived=arrived,
        )
        return self._completion_response(req, admission, data, chat=True)

    async def completions(self, request: Request) -> Reply:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "openai.CompletionRequest")
            self._check_fields(data, "CompletionRequest")
            model, label = self._require_model(data.get("model"))
            prompt = data.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError(400, "invalid type for 'prompt' field")
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support generate')
            options = self.state.resolve_options(model, self._options(data))
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=prompt,
            context=data.get("suffix") or "",
            prompt_tokens=count_tokens(prompt),
            options=options,
            keep_alive_s=self.state.keep_alive_or_default(None),
            think=False,
            arrived=arrived,
        )
        return self._completion_response(req, admission, data, chat=False)

    async def embeddings(self, request: Request) -> Reply:
        try:
            data = await read_json_body(request, "openai.EmbedRequest")
            expect_type(data, "model", ("string",), "EmbedRequest", "string")
            model, label = self._require_model(data.get("model"))
            raw_input = data.get("input")
            if raw_input is None or raw_input == "" or raw_input == []:
                raise RequestError(400, "invalid input")
            texts = embed_inputs(raw_input)
            encoding = data.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise RequestError(400, f"invalid encoding format: {encoding}")
            dimensions = data.get("dimensions") or 0
            options = self.state.resolve_options(model, None)
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)

        async def body() -> AsyncGenerator[bytes | ErrorItem, None]:
            counts, _, _ = await self.state.embed(
                model, texts, self.state.keep_alive_or_default(None), options, admission
            )
            data_items = []
            for i, text in enumerate(texts):
                vector = embedding_for(self.state, model, text, int(dimensions) if isinstance(dimensions, int) else 0)
                embedding: Any = vector
                if encoding == "base64":
                    embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data_items.append({"object": "embedding", "embedding": embedding, "index": i})
            tokens = sum(counts)
            yield go_json(
                {
                    "object": "list",
                    "data": data_items,
                    "model": label,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        return DeferredResponse(
            body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release, error_item=openai_error_item
        )

    # ---- helpers --------------------------------------------------------------------------------------------

    def _model_entry(self, model: InstalledModel) -> dict[str, Any]:
        owner = model.name.split("/")[0] if "/" in model.name else "library"
        return {"id": model.name, "object": "model", "created": rfc3339_to_unix(model.modified_at), "owned_by": owner}

    def _require_model(self, name: Any) -> tuple[InstalledModel, str]:
        if not name:
            raise RequestError(400, "model is required")
        model = self.state.find_model(name)
        if model is None:
            raise RequestError(404, f"model '{name}' not found")
        return model, name

    def _check_fields(self, data: dict[str, Any], struct_name: str) -> None:
        expect_type(data, "model", ("string",), struct_name, "string")
        expect_type(data, "stream", ("bool",), struct_name, "bool")
        expect_type(data, "stream_options", ("object",), struct_name, "openai.StreamOptions")
        for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            expect_type(data, key, ("number",), struct_name, "float64")
        for key in ("max_tokens", "max_completion_tokens", "seed"):
            expect_type(data, key, ("number",), struct_name, "int")
        stop = data.get("stop")
        if stop is not None and not isinstance(stop, (str, list)):
            raise RequestError(
                400,
                f"json: cannot unmarshal {json_kind(stop)} into Go struct field {struct_name}.stop of type []string",
            )

    def _options(self, data: dict[str, Any]) -> dict[str, Any]:
        """OpenAI fields → Ollama options; temperature and top_p default to 1.0 as Ollama forces them."""
        options: dict[str, Any] = {"temperature": data.get("temperature", 1.0), "top_p": data.get("top_p", 1.0)}
        if options["temperature"] is None:
            options["temperature"] = 1.0
        if options["top_p"] is None:
            options["top_p"] = 1.0
        max_tokens = data.get("max_completion_tokens") or data.get("max_tokens")
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        for key in ("seed", "frequency_penalty", "presence_penalty"):
            if data.get(key) is not None:
                options[key] = data[key]
        stop = data.get("stop")
        if isinstance(stop, str):
            options["stop"] = [stop]
        elif isinstance(stop, list):
            options["stop"] = stop
        return options

    def _completion_response(self, req: GenRequest, admission: Admission, data: dict[str, Any], *, chat: bool) -> Reply:
        plan = self.state.faults.take_stream_plan()
        events = self.state.generate(req, admission, plan)
        prefix = "chatcmpl" if chat else "cmpl"
        completion_id = f"{prefix}-{self.state.next_id()}"
        created = int(time.time())
        if data.get("stream"):
            options = data.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
            items = _openai_stream(events, req.model_label, completion_id, created, chat, include_usage)
            return DeferredResponse(items, media_type=SSE_MEDIA, streaming=True, on_close=admission.release)
        items = _openai_single(events, req.model_label, completion_id, created, chat)
        return DeferredResponse(items, media_type=JSON_MEDIA, streaming=False, on_close=admission.release)


def _openai_think(data: dict[str, Any]) -> Any:
    effort = data.get("reasoning_effort")
    reasoning = data.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if effort is None:
        return None
    if effort == "none":
        return False
    if effort in ("low", "medium", "high"):
        return effort
    raise RequestError(400, f'invalid reasoning value: \'{effort}\' (must be "high", "medium", "low", or "none")')


def _openai_format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _usage(final: Final) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.eval_count,
        "total_tokens": final.prompt_tokens + final.eval_count,
    }


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + go_json(obj) + b"\n\n"


async def _openai_stream(
    events: AsyncGenerator[tuple[str, Any], None],
    label: str,
    completion_id: str,
    created: int,
    chat: bool,
    include_usage: bool,
) -> AsyncGenerator[bytes | ErrorItem, None]:
    kind_name = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return _sse(
            {
                "id": completion_id,
                "object": kind_name,
                "created": created,
                "model": label,
                "system_fingerprint": "fp_ollama",
                "choices": choices,
                **extra,
            }
        )

    first = True
    try:
        async for kind, value in events:
            if kind == "error":
                yield openai_error_item(500, value)
                return
            if kind == "done":
                if chat:
                    yield chunk([{"index": 0, "delta": {}, "finish_reason": value.done_reason}])
                else:
                    yield chunk([{"text": "", "index": 0, "finish_reason": value.done_reason}])
                if include_usage:
                    yield chunk([], usage=_usage(value))
                yield b"data: [DONE]\n\n"
                return
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
                if kind == "thinking":
                    delta["reasoning"] = value
                else:
                    delta["content"] = value
                first = False
                yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
            elif kind == "content":
                yield chunk([{"text": value, "index": 0, "finish_reason": None}])
    finally:
        await events.aclose()


async def _openai_single(
    events: AsyncGenerator[tuple[str, Any], None], label: str, completion_id: str, created: int, chat: bool
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
                yield openai_error_item(500, value)
                return
            elif kind == "done":
                if chat:
                    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
                    if thinking:
                        message["reasoning"] = "".join(thinking)
                    choice = {"index": 0, "message": message, "finish_reason": value.done_reason}
                    kind_name = "chat.completion"
                else:
                    choice = {"text": "".join(content), "index": 0, "finish_reason": value.done_reason}
                    kind_name = "text_completion"
                yield go_json(
                    {
                        "id": completion_id,
                        "object": kind_name,
                        "created": created,
                        "model": label,
                        "system_fingerprint": "fp_ollama",
                        "choices": [choice],
                        "usage": _usage(value),
                    }
                )
    finally:
        await events.aclose()
