"""Ollama's wire formats, the way its Go server writes and reads them: JSON as Go's encoder writes it, RFC 3339
times, Go durations, keep_alive values, Go's JSON decoding errors, and the errors answered before any output."""

from __future__ import annotations

import calendar
import json
import logging
import math
import time
from typing import Any

from starlette.requests import Request

OLLAMA_VERSION = "0.32.15"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_CRASH_MESSAGE = "llama runner process has terminated: exit status 2"
FOREVER = math.inf
FOREVER_DISPLAY_S = 292 * 365.25 * 86400  # Go's time.Duration(math.MaxInt64), as Ollama shows "forever"
NDJSON = "application/x-ndjson"
JSON_MEDIA = "application/json; charset=utf-8"
SSE_MEDIA = "text/event-stream"
INFERENCE_PATHS = (
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
)
STREAM_ERROR_MESSAGE = "an error was encountered while running the model: unexpected EOF"


def go_json(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, > and & escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text.encode()


def rfc3339_nano(unix_ns: int) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds with trailing zeros trimmed."""
    secs, frac = divmod(unix_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def rfc3339_to_unix(text: str) -> int:
    base = text.split(".")[0].rstrip("Z")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds; raises ValueError with Go's message."""
    original = text
    quoted = '"' + original + '"'
    if text in ("0", "+0", "-0"):
        return 0.0
    if not text:
        raise ValueError(f"time: invalid duration {quoted}")
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while text:
        i = 0
        while i < len(text) and (text[i].isdigit() or text[i] == "."):
            i += 1
        number = text[:i]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f"time: invalid duration {quoted}")
        text = text[i:]
        j = 0
        while j < len(text) and not (text[j].isdigit() or text[j] == "."):
            j += 1
        unit = text[:j]
        text = text[j:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _GO_UNITS[unit]
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's keep_alive: a number of seconds or a Go duration string; negative means forever."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(400, "invalid duration")
    return keep_alive_seconds(value)


def keep_alive_seconds(value: float | str) -> float:
    """A keep_alive given (seconds, or a Go duration string) in seconds; FOREVER when negative."""
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
    else:
        seconds = float(value)
    return FOREVER if seconds < 0 else seconds


_JSON_KINDS = ((bool, "bool"), (str, "string"), ((int, float), "number"), (list, "array"), (dict, "object"))


def json_kind(value: Any) -> str:
    for types, name in _JSON_KINDS:
        if isinstance(value, types):
            return name
    return "null"


def go_syntax_error(body: bytes, exc: json.JSONDecodeError) -> str:
    """Roughly the message Go's JSON decoder gives for the same syntax error."""
    text = exc.doc
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    ch = text[exc.pos]
    quoted = "'\\''" if ch == "'" else f"'{ch}'"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {quoted} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {quoted} after object key"
    if exc.msg.startswith("Expecting ','"):
        return f"invalid character {quoted} after object key:value pair"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {quoted} after top-level value"
    return f"invalid character {quoted} looking for beginning of value"


class RequestError(Exception):
    """An error answered before any output, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RunnerGone(Exception):
    """The model was unloaded (deleted, replaced, server stopping) while a request waited for it to load."""


class StreamCut(Exception):
    """The answer ends here, cleanly, without its final chunk (a runner that died and a server that shrugged)."""


class SimulatedConnectionDrop(Exception):
    """Raised inside a response to make the server drop the connection mid-stream (a fault hook)."""


class _QuietDropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, SimulatedConnectionDrop):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


_drop_filter = _QuietDropFilter()
logging.getLogger("uvicorn.error").addFilter(_drop_filter)


async def read_json_body(request: Request, go_type: str) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        raise RequestError(400, "missing request body")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(400, go_syntax_error(body, exc)) from None
    except UnicodeDecodeError:
        raise RequestError(400, "invalid character looking for beginning of value") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestError(400, f"json: cannot unmarshal {json_kind(data)} into Go value of type {go_type}")
    return data


def expect_type(data: dict[str, Any], key: str, kinds: tuple[str, ...], struct_name: str, go_type: str) -> None:
    """Reject a field of the wrong JSON type the way Go's decoder does."""
    value = data.get(key)
    if value is None:
        return
    kind = json_kind(value)
    if kind not in kinds:
        raise RequestError(
            400, f"json: cannot unmarshal {kind} into Go struct field {struct_name}.{key} of type {go_type}"
        )
