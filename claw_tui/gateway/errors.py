"""Errors answered to clients, each in the shape of the surface it called.

Ollama: `{"error": "message"}`. OpenAI: `{"error": {"message", "type", "param", "code"}}`. claw's own endpoints use
the Ollama shape.
"""

from __future__ import annotations

import json
import math
from typing import Any


class GatewayError(Exception):
    """An error answered to the client; `headers` travel with it (Retry-After, WWW-Authenticate)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool = False,
        backend_fault: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.headers = headers or {}
        self.retryable = retryable  # a failure of one backend that another attempt may not meet
        # The backend failed (5xx, unreachable, timed out, broke the answer): counts against its health and the
        # model's error rate. Refusals and the client's own mistakes never do.
        self.backend_fault = backend_fault


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def openai_error_type(status: int) -> str:
    if status == 404:
        return "not_found_error"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status == 409:
        return "conflict_error"
    if status == 413 or status < 500:
        return "invalid_request_error"
    return "api_error"


def openai_error_object(
    message: str, error_type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_body(surface: str, exc: GatewayError) -> bytes:
    if surface == "openai":
        obj = openai_error_object(exc.message, exc.error_type or openai_error_type(exc.status), exc.param)
    else:
        obj = {"error": exc.message}
    return json.dumps(obj, separators=(",", ":")).encode()


def surface_of_path(path: str) -> str:
    return "openai" if path.startswith("/v1/") else "ollama"
