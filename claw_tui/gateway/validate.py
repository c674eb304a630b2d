"""Checking request bodies before anything goes upstream: wrong types get a clear 400 naming the field."""

from __future__ import annotations

import json

from claw_tui.gateway.errors import GatewayError

_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def describe(value) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def parse_json_object(raw: bytes) -> dict:
    if not raw.strip():
        raise GatewayError(400, "missing request body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GatewayError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, f"request body must be a JSON object, got {describe(body)}")
    return body


def _bad(field: str, expected: str, value) -> GatewayError:
    return GatewayError(400, f"'{field}' must be {expected}, got {describe(value)}", param=field)


def expect(body: dict, field: str, expected: str, *types: type) -> None:
    if field not in body or body[field] is None:
        return
    value = body[field]
    if isinstance(value, bool) and bool not in types:
        raise _bad(field, expected, value)
    if not isinstance(value, types):
        raise _bad(field, expected, value)


def require_model(body: dict) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise GatewayError(400, "model is required", param="model")
    if not isinstance(model, str):
        raise _bad("model", "a string", model)
    return model


def _check_messages(messages, *, openai: bool) -> None:
    if not isinstance(messages, list):
        raise _bad("messages", "an array", messages)
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(where, "an object", message)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise GatewayError(400, f"'{where}.role' must be a non-empty string", param="messages")
        content = message.get("content")
        if openai and isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise GatewayError(400, f"'{where}.content' parts must be objects with a 'type'", param="messages")
        elif content is not None and not isinstance(content, str):
            raise _bad(f"{where}.content", "a string" + (" or an array of parts" if openai else ""), content)
        images = message.get("images")
        if images is not None and (not isinstance(images, list) or not all(isinstance(i, str) for i in images)):
            raise _bad(f"{where}.images", "an array of base64 strings", images)
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise _bad(f"{where}.tool_calls", "an array", calls)


def ollama_inference(body: dict, op: str) -> None:
    expect(body, "stream", "a boolean", bool)
    expect(body, "options", "an object", dict)
    expect(body, "keep_alive", "a number or a duration string", int, float, str)
    if op == "chat":
        if "messages" in body and body["messages"] is not None:
            _check_messages(body["messages"], openai=False)
        expect(body, "tools", "an array", list)
        expect(body, "think", "a boolean or low/medium/high", bool, str)
    elif op == "generate":
        for field in ("prompt", "system", "template", "suffix"):
            expect(body, field, "a string", str)
        expect(body, "raw", "a boolean", bool)
        expect(body, "images", "an array of base64 strings", list)
        expect(body, "think", "a boolean or low/medium/high", bool, str)
    elif op == "embed":
        value = body.get("input")
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise _bad("input", "a string or an array of strings", value)
        expect(body, "truncate", "a boolean", bool)
        expect(body, "dimensions", "an integer", int)
    fmt = body.get("format")
    if fmt is not None and fmt != "" and fmt != "json" and not isinstance(fmt, dict):
        raise GatewayError(
            400, f"'format' must be \"json\" or a JSON schema object, got {describe(fmt)}", param="format"
        )


def openai_chat(body: dict) -> None:
    messages = body.get("messages")
    if messages is None:
        raise GatewayError(400, "'messages' is required", param="messages")
    _check_messages(messages, openai=True)
    if not messages:
        raise GatewayError(400, "'messages' must not be empty", param="messages")
    expect(body, "stream", "a boolean", bool)
    expect(body, "stream_options", "an object", dict)
    for field in ("max_tokens", "max_completion_tokens", "seed", "n"):
        expect(body, field, "an integer", int)
    for field in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        expect(body, field, "a number", int, float)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop", "a string or an array of strings", stop)
    expect(body, "tools", "an array", list)
    expect(body, "response_format", "an object", dict)


def openai_embeddings(body: dict) -> None:
    value = body.get("input")
    if value is None or value == "" or value == []:
        raise GatewayError(400, "'input' is required", param="input")
    if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise _bad("input", "a string or an array of strings", value)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise GatewayError(
            400, f'\'encoding_format\' must be "float" or "base64", got {json.dumps(encoding)}', param="encoding_format"
        )
    expect(body, "dimensions", "an integer", int)
