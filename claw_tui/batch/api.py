"""The Batch API's HTTP endpoints on the gateway (errors in OpenAI's shape, as everywhere under /v1):

POST /v1/files (multipart: `file`, `purpose=batch`) · GET /v1/files · GET /v1/files/{id} · GET /v1/files/{id}/content
POST /v1/batches · GET /v1/batches (`after`, `limit`) · GET /v1/batches/{id} · POST /v1/batches/{id}/cancel
"""

from __future__ import annotations

import asyncio
import json
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from claw_tui.batch.service import BatchError, BatchService
from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange

if TYPE_CHECKING:
    from claw_tui.gateway.app import Gateway

MULTIPART_OVERHEAD = 64 * 1024
MAX_PAGE = 100
JSONL = b"application/jsonl"
PATHS = ("/v1/files", "/v1/batches")


def owns(path: str) -> bool:
    return path in PATHS or path.startswith(("/v1/files/", "/v1/batches/"))


async def handle(gateway: Gateway, ex: Exchange) -> None:
    service: BatchService | None = getattr(gateway.session, "batch", None)
    if service is None:
        reason = getattr(gateway.session, "batch_off_reason", "") or "batch jobs are not served here"
        raise GatewayError(503, reason, headers={"Retry-After": "1"})
    try:
        await _dispatch(gateway, service, ex)
    except BatchError as exc:
        raise GatewayError(exc.status, exc.message, param=exc.param) from None


async def _dispatch(gateway: Gateway, service: BatchService, ex: Exchange) -> None:
    parts = ex.path.strip("/").split("/")  # ["v1", "files"|"batches", id?, action?]
    kind, rest = parts[1], parts[2:]
    if kind == "files":
        if not rest:
            if ex.method == "POST":
                await _upload(gateway, service, ex)
            else:
                _only(ex, "GET")
                page = await service.list_files(ex.query("purpose"), ex.query("after"), _limit(ex))
                await ex.respond(200, _dumps(page))
        elif len(rest) == 1:
            _only(ex, "GET")
            await ex.respond(200, _dumps(await service.get_file(rest[0])))
        elif len(rest) == 2 and rest[1] == "content":
            _only(ex, "GET")
            await ex.respond(200, await service.file_content(rest[0]), media_type=JSONL)
        else:
            raise GatewayError(404, f"no such endpoint: {ex.method} {ex.path}")
        return
    if not rest:
        if ex.method == "POST":
            body = validate_json(await ex.read_body(gateway.config.max_body_bytes, gateway.config.body_timeout_s))
            batch = await service.create_batch(
                body.get("input_file_id"), body.get("endpoint"), body.get("completion_window"), body.get("metadata")
            )
            await ex.respond(200, _dumps(batch))
        else:
            _only(ex, "GET")
            await ex.respond(200, _dumps(await service.list_batches(ex.query("after"), _limit(ex))))
    elif len(rest) == 1:
        _only(ex, "GET")
        await ex.respond(200, _dumps(await service.get_batch(rest[0])))
    elif len(rest) == 2 and rest[1] == "cancel":
        _only(ex, "POST")
        await ex.respond(200, _dumps(await service.cancel_batch(rest[0])))
    else:
        raise GatewayError(404, f"no such endpoint: {ex.method} {ex.path}")


def _only(ex: Exchange, method: str) -> None:
    if ex.method != method:
        raise GatewayError(405, f"{ex.method} is not allowed on {ex.path} (use {method})", headers={"Allow": method})


def _limit(ex: Exchange) -> int:
    raw = ex.query("limit")
    if raw is None or raw == "":
        return 20
    try:
        limit = int(raw)
    except ValueError:
        raise GatewayError(400, f"limit must be a whole number (got '{raw}')", param="limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise GatewayError(400, f"limit must be from 1 to {MAX_PAGE}", param="limit")
    return limit


def validate_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise GatewayError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object")
    return body


async def _upload(gateway: Gateway, service: BatchService, ex: Exchange) -> None:
    content_type = ex.header(b"content-type") or ""
    if not content_type.lower().startswith("multipart/form-data"):
        raise GatewayError(400, "upload the file as multipart/form-data with the fields 'file' and 'purpose'")
    raw = await ex.read_body(service.config.max_file_bytes + MULTIPART_OVERHEAD, gateway.config.body_timeout_s)
    fields = await asyncio.to_thread(parse_multipart, content_type, raw)
    if "file" not in fields:
        raise GatewayError(400, "the form has no 'file' field", param="file")
    purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
    if not purpose:
        raise GatewayError(400, "the form has no 'purpose' field (use purpose=batch)", param="purpose")
    filename, content = fields["file"]
    await ex.respond(200, _dumps(await service.create_file(filename or "", purpose, content)))


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data → {field name: (file name or None, content)}, with the standard library's MIME parser."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise GatewayError(400, "the multipart body cannot be read (is the boundary right?)")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
