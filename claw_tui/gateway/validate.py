"""Checking request bodies before anything goes upstream: a clear 400 naming the field, never a 500 later.

The door (`parse_json_object`): UTF-8 only, strict JSON (no NaN or Infinity, no number that overflows to
Infinity), a nesting limit, and no text that cannot be encoded (lone surrogates such as "\\ud800"). Then each
endpoint's fields: types, the values Ollama and OpenAI accept, Ollama's `options` against its parameter table, and
model names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any, NoReturn

from claw_tui.gateway.errors import GatewayError
from claw_tui.ollama.parameters import PARAMETERS, ParameterError, coerce_option

MAX_DEPTH = 64  # objects and arrays inside one another; deep enough for any JSON schema a client sends
MAX_MODEL_NAME = 512
THINK_LEVELS = ("low", "medium", "high")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")

_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Ollama's model names (types/model/name.go): [host/][namespace/]model[:tag], each part starting with a letter,
# digit or underscore; `..`, absolute paths and backslashes never match.
_OLLAMA_NAME = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}/)?(?:[A-Za-z0-9_][A-Za-z0-9_-]{0,79}/)?"
    r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,79})?",
    re.ASCII,
)


def describe(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


# ---- the door ---------------------------------------------------------------------------------------------------


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON (send a finite number or null)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise GatewayError(400, "missing request body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GatewayError(400, f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise GatewayError(400, f"invalid JSON body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise GatewayError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, f"request body must be a JSON object, got {describe(body)}")
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if deep or surrogates:
        _check_tree(body, surrogates)
    return body


def _check_tree(body: dict[str, Any], surrogates: bool) -> None:
    """Depth of nesting, and (when the text escapes surrogates) strings that cannot be encoded as UTF-8."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        items: Iterable[tuple[object, object]]
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = ((None, item) for item in value)
        else:
            continue
        if depth > MAX_DEPTH:
            raise GatewayError(400, f"invalid JSON body: nested deeper than {MAX_DEPTH} levels")
        for key, item in items:
            if surrogates:
                _check_text(key)
                _check_text(item)
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))


def _check_text(value: object) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise GatewayError(
                400, "invalid JSON body: a string contains a lone UTF-16 surrogate (such as \\ud800) that is not text"
            ) from None


# ---- fields -----------------------------------------------------------------------------------------------------


def _bad(field: str, expected: str, value: object) -> GatewayError:
    return GatewayError(400, f"'{field}' must be {expected}, got {describe(value)}", param=field)


def expect(body: dict[str, Any], field: str, expected: str, *types: type) -> None:
    if field not in body or body[field] is None:
        return
    value = body[field]
    if isinstance(value, bool) and bool not in types:
        raise _bad(field, expected, value)
    if not isinstance(value, types):
        raise _bad(field, expected, value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_model(body: dict[str, Any], field: str = "model") -> str:
    """The model a request names: a non-empty string without control characters (an OpenAI-compatible server
    may call its models by a path, so nothing stricter)."""
    model = body.get(field)
    if model is None or model == "":
        raise GatewayError(400, f"{field} is required", param=field)
    if not isinstance(model, str):
        raise _bad(field, "a string", model)
    if len(model) > MAX_MODEL_NAME or _CONTROL.search(model):
        raise GatewayError(
            400, f"'{field}' is not a model name (control characters, or longer than {MAX_MODEL_NAME})", param=field
        )
    return model


def ollama_model_name(body: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    """A model name as Ollama stores it ([host/][namespace/]model[:tag]): model management sends these on to
    Ollama, which turns them into paths of its model store."""
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise GatewayError(400, f"'{field}' is required", param=field)
        return None
    if not isinstance(value, str):
        raise _bad(field, "a model name", value)
    if not _OLLAMA_NAME.fullmatch(value):
        shown = json.dumps(value[:80])
        raise GatewayError(
            400,
            f"'{field}' is not a valid model name: {shown} (expected [host/][namespace/]model[:tag] with letters, "
            "digits, '_', '-' and '.')",
            param=field,
        )
    return value


def admin_request(path: str, body: dict[str, Any]) -> None:
    """/api/create, /api/pull, /api/copy, /api/delete: the names they carry are valid Ollama model names."""
    if path == "/api/copy":
        ollama_model_name(body, "source")
        ollama_model_name(body, "destination")
        return
    named = [f for f in ("model", "name") if body.get(f) not in (None, "")]
    if not named:
        raise GatewayError(400, "'model' is required", param="model")
    for field in named:
        ollama_model_name(body, field)
    if path == "/api/create":
        ollama_model_name(body, "from", required=False)
        parameters = body.get("parameters")
        if parameters is not None:
            ollama_options(parameters, "parameters")
    expect(body, "stream", "a boolean", bool)


# ---- Ollama surface ---------------------------------------------------------------------------------------------


def ollama_options(options: object, field: str = "options") -> None:
    """Values of Ollama's runner parameters, with Ollama's own wording (`option "temperature" must be of type
    float32`). Unknown names pass: Ollama ignores them."""
    if not isinstance(options, dict):
        raise _bad(field, "an object", options)
    for name, value in options.items():
        if name not in PARAMETERS:
            continue  # Ollama ignores it (and looking for a did-you-mean here would cost every request)
        try:
            coerce_option(name, value)
        except ParameterError as exc:
            if exc.severity != "error":
                continue
            hint = f" ({exc.suggestion})" if exc.suggestion else ""
            raise GatewayError(400, f"{exc.message}{hint}", param=f"{field}.{name}") from None


def _check_tools(tools: object) -> None:
    if not isinstance(tools, list):
        raise _bad("tools", "an array", tools)
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _bad(where, "an object", tool)
        kind = tool.get("type", "function")
        if kind != "function":
            raise GatewayError(400, f"'{where}.type' must be \"function\", got {json.dumps(kind)[:80]}", param="tools")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _bad(f"{where}.function", "an object", function)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise GatewayError(400, f"'{where}.function.name' must be a non-empty string", param="tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad(f"{where}.function.parameters", "an object (a JSON schema)", parameters)


def _check_content_parts(where: str, parts: list[object]) -> None:
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise GatewayError(400, f"'{at}' must be an object with a 'type'", param="messages")
        kind = part["type"]
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _bad(f"{at}.text", "a string", part.get("text"))
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                raise GatewayError(
                    400, f"'{at}.image_url.url' must be a non-empty string (an https: or data: URL)", param="messages"
                )


def _check_messages(messages: object, *, openai: bool) -> None:
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
            _check_content_parts(where, content)
        elif content is not None and not isinstance(content, str):
            raise _bad(f"{where}.content", "a string" + (" or an array of parts" if openai else ""), content)
        images = message.get("images")
        if images is not None and (not isinstance(images, list) or not all(isinstance(i, str) for i in images)):
            raise _bad(f"{where}.images", "an array of base64 strings", images)
        calls = message.get("tool_calls")
        if calls is not None and (not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls)):
            raise _bad(f"{where}.tool_calls", "an array of objects", calls)


def _check_think(body: dict[str, Any]) -> None:
    think = body.get("think")
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise GatewayError(
            400, f'\'think\' must be true, false, "low", "medium" or "high", got {json.dumps(think)[:80]}'
        )
    expect(body, "think", "a boolean or low/medium/high", bool, str)


def ollama_inference(body: dict[str, Any], op: str) -> None:
    expect(body, "stream", "a boolean", bool)
    if body.get("options") is not None:
        ollama_options(body["options"])
    expect(body, "keep_alive", "a number or a duration string", int, float, str)
    if op == "chat":
        if "messages" in body and body["messages"] is not None:
            _check_messages(body["messages"], openai=False)
        if body.get("tools") is not None:
            _check_tools(body["tools"])
        _check_think(body)
    elif op == "generate":
        for field in ("prompt", "system", "template", "suffix"):
            expect(body, field, "a string", str)
        expect(body, "raw", "a boolean", bool)
        images = body.get("images")
        if images is not None and (not isinstance(images, list) or not all(isinstance(i, str) for i in images)):
            raise _bad("images", "an array of base64 strings", images)
        context = body.get("context")
        if context is not None and (not isinstance(context, list) or not all(_is_int(t) for t in context)):
            raise _bad("context", "an array of token ids (integers) from an earlier answer", context)
        _check_think(body)
    elif op == "embed":
        value = body.get("input")
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise _bad("input", "a string or an array of strings", value)
        expect(body, "truncate", "a boolean", bool)
        _positive_int(body, "dimensions")
    fmt = body.get("format")
    if fmt is not None and fmt != "" and fmt != "json" and not isinstance(fmt, dict):
        raise GatewayError(
            400, f"'format' must be \"json\" or a JSON schema object, got {describe(fmt)}", param="format"
        )


# ---- OpenAI surface ---------------------------------------------------------------------------------------------


def _positive_int(body: dict[str, Any], field: str) -> None:
    value = body.get(field)
    if value is None:
        return
    if not _is_int(value):
        raise _bad(field, "an integer", value)
    if value < 1:
        raise GatewayError(400, f"'{field}' must be at least 1, got {value}", param=field)


def _number_in(body: dict[str, Any], field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if not _is_number(value):
        raise _bad(field, "a number", value)
    if not low <= value <= high:
        raise GatewayError(400, f"'{field}' must be between {low:g} and {high:g}, got {value}", param=field)


def openai_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise GatewayError(400, "'messages' is required", param="messages")
    _check_messages(messages, openai=True)
    if not messages:
        raise GatewayError(400, "'messages' must not be empty", param="messages")
    expect(body, "stream", "a boolean", bool)
    expect(body, "stream_options", "an object", dict)
    for field in ("max_tokens", "max_completion_tokens"):
        _positive_int(body, field)
    expect(body, "seed", "an integer", int)
    n = body.get("n")
    if n is not None:
        if not _is_int(n):
            raise _bad("n", "an integer", n)
        if n != 1:
            raise GatewayError(400, f"'n' must be 1: claw answers one choice per request (got {n})", param="n")
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1)
    _number_in(body, "frequency_penalty", -2, 2)
    _number_in(body, "presence_penalty", -2, 2)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop", "a string or an array of strings", stop)
    if body.get("tools") is not None:
        _check_tools(body["tools"])
    _check_response_format(body.get("response_format"))


def _check_response_format(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _bad("response_format", "an object", value)
    kind = value.get("type")
    if kind not in RESPONSE_FORMATS:
        allowed = ", ".join(f'"{k}"' for k in RESPONSE_FORMATS)
        raise GatewayError(
            400,
            f"'response_format.type' must be one of {allowed}, got {json.dumps(kind)[:80]}",
            param="response_format",
        )
    if kind == "json_schema":
        schema = value.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise GatewayError(
                400,
                "'response_format.json_schema' must be an object with a 'name' and a 'schema'",
                param="response_format",
            )
        if schema.get("schema") is not None and not isinstance(schema["schema"], dict):
            raise _bad("response_format.json_schema.schema", "an object", schema["schema"])


def openai_embeddings(body: dict[str, Any]) -> None:
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
    _positive_int(body, "dimensions")
