"""Sending a metered request upstream: backend choice, admission, retries before the first byte, fallback models,
timeouts (connect, first token, idle between chunks, total) — until one backend starts answering."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from claw_tui.gateway import ollama_compat as olc
from claw_tui.gateway import openai_compat as oai
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.backends import CONNECT_ERRORS, Backend, describe_error, unreachable_message
from claw_tui.gateway.collect import merge_ndjson
from claw_tui.gateway.errors import GatewayError, retry_after
from claw_tui.gateway.policies import VramGate
from claw_tui.gateway.relay import (
    EmbedRelay,
    NdjsonRelay,
    NdjsonToOpenAI,
    OpenAIToNdjson,
    OpenAIWholeRelay,
    Relay,
    SseRelay,
)
from claw_tui.gateway.router import NoBackend, Router
from claw_tui.ledger import Ledger, RequestRecord

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}
MAX_ERROR_BODY = 64 * 1024
NOT_RETRIED = frozenset({501, 505})  # "not implemented" is the same on the next try
RETRY_BACKOFF_S = 0.1


@dataclass
class Call:
    """One metered request: what the client asked, after its agent was applied."""

    surface: str  # "ollama" | "openai": the client's side
    op: str  # "chat" | "generate" | "embed"
    path: str  # the client's path
    body: dict[str, Any]  # the body to send (model = the model first asked for)
    raw: bytes | None  # the client's bytes, forwarded as they are when nothing had to change
    stream: bool
    model: str
    requested: str  # the name the client used (a model or an agent)
    record: RequestRecord
    agent: Agent | None = None
    fallbacks: list[str] = field(default_factory=list)
    include_usage: bool = False
    deadline: float = 0.0  # monotonic time when the whole request must end


@dataclass
class Opened:
    """A backend has started answering: the first client bytes are in hand, nothing has been sent yet."""

    backend: Backend
    model: str
    relay: Relay
    response: aiohttp.ClientResponse | None
    first: bytes  # for a whole answer, all of it
    complete: bool  # the answer is already whole (not streamed to the client)
    held_since: float
    closed: bool = False
    eof: bool = False

    async def next_raw(self) -> bytes | None:
        if self.response is None:  # a whole answer: `first` held all of it
            self.eof = True
            return None
        data = await self.response.content.readany()
        if not data:
            self.eof = True
            return None
        return data


class Upstream:
    def __init__(
        self,
        ledger: Ledger,
        router: Router,
        vram: VramGate,
        *,
        retries: int,
        first_token_timeout_s: float,
        idle_timeout_s: float,
        before_forward: list[Callable[[RequestRecord], Awaitable[None]]],
        on_retry: Callable[[Backend], None] = lambda b: None,
        resident: Callable[[Backend, str], bool | None] = lambda b, m: None,
    ) -> None:
        self.resident = resident
        self.ledger = ledger
        self.router = router
        self.vram = vram
        self.retries = retries
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.before_forward = before_forward
        self.on_retry = on_retry

    # ---- opening: attempts, retries, fallbacks --------------------------------------------------------------
    async def open(self, call: Call) -> Opened:
        """Try the model, then its fallbacks, each on up to 1 + retries backends, until one starts answering."""
        errors: list[GatewayError] = []
        for index, model in enumerate([call.model, *call.fallbacks]):
            tried: list[Backend] = []
            for _ in range(1 + self.retries):
                try:
                    backend = await self.pick(model, tried)
                except NoBackend as exc:
                    errors.append(GatewayError(404, str(exc), error_type="not_found_error"))
                    break
                if tried:
                    self.on_retry(backend)
                    if backend in tried:
                        await asyncio.sleep(RETRY_BACKOFF_S * tried.count(backend))
                tried.append(backend)
                try:
                    opened = await self.attempt(call, backend, model)
                except GatewayError as exc:
                    if not exc.retryable:
                        raise
                    errors.append(exc)
                    continue
                if index > 0:
                    call.record.downgraded_from = call.model
                return opened
        raise _most_telling(errors)

    async def pick(self, model: str, tried: list[Backend]) -> Backend:
        try:
            return self.router.pick(model, exclude=tried)
        except NoBackend:
            await self.router.refresh_for(model)
            return self.router.pick(model, exclude=tried)

    async def attempt(self, call: Call, backend: Backend, model: str) -> Opened:
        record = call.record
        await backend.admission.acquire()
        held_since = time.monotonic()
        response: aiohttp.ClientResponse | None = None
        try:
            await self.vram.wait(backend.gpu)
            path, content, relay = self.plan(call, backend, model)
            record.backend, record.model = backend.name, model
            if record.t_upstream_start is None:
                for hook in self.before_forward:
                    await hook(record)
                self.ledger.mark_upstream_start(record, backend.gpu, self.resident(backend, model))
            else:
                record.gpu = backend.gpu
            collect = _collects(call, backend)
            whole = not call.stream and not collect and (call.op == "embed" or _upstream_whole(call, backend))
            left = call.deadline - time.monotonic()
            first_wait = left if whole else min(self.first_token_timeout_s, left)
            try:
                async with asyncio.timeout(max(0.0, first_wait)) as first_token_limit:
                    response = await backend.send("POST", path, content, JSON_HEADERS)
                    if response.status >= 400:
                        raise await self._status_error(response, backend, model)
                    if whole:
                        first = relay.whole(await response.read())
                        complete = True
                    elif collect:
                        first = await self._collect(relay, response, first_token_limit, call, backend, model)
                        complete = True
                    else:
                        first, complete = await self._first_bytes(relay, response, record)
            except TimeoutError:
                if first_wait >= left:
                    raise GatewayError(
                        504, "the request ran past the gateway's total timeout", error_type="api_error"
                    ) from None
                raise self._failure(
                    backend,
                    model,
                    504,
                    f"no first token from backend '{backend.name}' within {first_wait:g}s",
                    retry_in=1,
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                unreachable = isinstance(exc, CONNECT_ERRORS)
                if unreachable:
                    message = unreachable_message(backend, exc)
                else:
                    message = f"backend '{backend.name}' at {backend.url} failed before answering: "
                    message += describe_error(exc)
                raise self._failure(backend, model, 502, message, transport=True, unreachable=unreachable) from None
            if relay.error is not None and (complete or not relay.first_token_seen):
                # never a 200 that carries an error: a whole answer that is an error is answered as one
                raise self._failure(backend, model, 500, relay.error)
            backend.record_success()
            opened = Opened(backend, model, relay, response, first, complete, held_since, eof=complete)
            if complete:
                await self.close(opened)
            return opened
        except BaseException:
            if response is not None:
                response.close()
            backend.admission.release(time.monotonic() - held_since)
            raise

    async def _collect(
        self,
        relay: Relay,
        response: aiohttp.ClientResponse,
        first_token_limit: asyncio.Timeout,
        call: Call,
        backend: Backend,
        model: str,
    ) -> bytes:
        """A non-streamed answer read as a stream (so the first-token timeout holds for it too) and merged into the
        one JSON object the client asked for. Once the first token is in, the idle and total timeouts apply."""
        received: list[bytes] = []
        seen = 0
        while True:
            if relay.first_token_seen and first_token_limit.when() is not None:
                first_token_limit.reschedule(None)
            if first_token_limit.when() is None:
                data = await self._read_within_idle(response, call.deadline, backend, model)
            else:
                data = await response.content.readany()
            if not data:
                break
            relay.feed(data)
            received.append(data)
            count = relay.progress()
            if count != seen:
                seen = count
                self.ledger.progress(call.record, count)
        relay.end()
        if relay.error is not None:
            return b""
        merged = merge_ndjson(b"".join(received), chat=call.op == "chat")
        if merged is None:
            message = f"backend '{backend.name}' closed the answer without its final chunk"
            raise self._failure(backend, model, 502, message, retry_in=1)
        return _dumps(merged)

    async def _read_within_idle(
        self, response: aiohttp.ClientResponse, deadline: float, backend: Backend, model: str
    ) -> bytes:
        left = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, min(self.idle_timeout_s, left))):
                return await response.content.readany()
        except TimeoutError:
            if self.idle_timeout_s < left:
                message = f"backend '{backend.name}' sent nothing for {self.idle_timeout_s:g}s (idle timeout)"
                raise self._failure(backend, model, 504, message, retry_in=1) from None
            raise GatewayError(
                504, "the request ran past the gateway's total timeout", error_type="api_error"
            ) from None

    async def _first_bytes(
        self, relay: Relay, response: aiohttp.ClientResponse, record: RequestRecord
    ) -> tuple[bytes, bool]:
        """Read until the relay has something for the client (or the answer ended, when it is not streamed to the
        client: the chunks still tell the ledger when each token came)."""
        seen = 0
        while True:
            data = await response.content.readany()
            if not data:
                return relay.end(), True
            out = relay.feed(data)
            count = relay.progress()
            if count != seen:
                seen = count
                self.ledger.progress(record, count)
            if out:
                return out, False

    async def _status_error(self, response: aiohttp.ClientResponse, backend: Backend, model: str) -> GatewayError:
        """The backend answered an error status. A 5xx is its failure (counted, retried elsewhere); 429 is its
        back-pressure (retried, not counted); 404 may be a model another backend has (retried); any other 4xx is
        the request's own fault: answered as it is, never retried, never counted."""
        content = await response.content.read(MAX_ERROR_BODY)
        message = _error_message(content) or f"backend '{backend.name}' answered {response.status}"
        status = response.status
        headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else {}
        if status in (429, 503) and not headers:
            headers = retry_after(1)
        if status >= 500:
            backend.note_error(f"answered {status}: {message}")
            backend.record_outcome(model, False)
            return GatewayError(
                status,
                message,
                error_type="api_error",
                headers=headers,
                retryable=status not in NOT_RETRIED,
                backend_fault=True,
            )
        if status == 429:
            return GatewayError(status, message, error_type="api_error", headers=headers, retryable=True)
        if status == 404:
            backend.model_missing(model)
            return GatewayError(404, message, error_type="not_found_error", retryable=True)
        return GatewayError(status, message, headers=headers)

    @staticmethod
    def _failure(
        backend: Backend,
        model: str,
        status: int,
        message: str,
        *,
        transport: bool = False,
        unreachable: bool = False,
        retry_in: float = 5,
    ) -> GatewayError:
        """A failure of the backend: counted in its error rate for `model`; a transport failure (refused, reset)
        also counts against the backend as a whole."""
        if transport:
            backend.record_failure(message, unreachable=unreachable)
        else:
            backend.note_error(message)
        backend.record_outcome(model, False)
        return GatewayError(
            status,
            message,
            error_type="api_error",
            headers=retry_after(retry_in),
            retryable=True,
            backend_fault=True,
        )

    # ---- after the first byte ---------------------------------------------------------------------------------
    async def next_chunk(self, opened: Opened, deadline: float) -> bytes | None:
        """The next raw upstream chunk within the idle timeout (and the request's deadline); None at the end."""
        left = deadline - time.monotonic()
        try:
            async with asyncio.timeout(min(self.idle_timeout_s, left)):
                return await opened.next_raw()
        except TimeoutError:
            if left <= self.idle_timeout_s:  # the deadline was the nearer limit (the loop may wake a hair early)
                raise UpstreamTimeout("the request ran past the gateway's total timeout") from None
            raise UpstreamTimeout(
                f"backend '{opened.backend.name}' sent nothing for {self.idle_timeout_s:g}s (idle timeout)"
            ) from None

    async def close(self, opened: Opened) -> None:
        """Give the connection back when the answer was read to its end; otherwise close it, which tells the
        backend to stop generating."""
        if opened.closed:
            return
        opened.closed = True
        if opened.response is not None:
            if opened.eof:
                opened.response.release()
            else:
                opened.response.close()
        opened.backend.admission.release(time.monotonic() - opened.held_since)

    # ---- what to send where ---------------------------------------------------------------------------------
    def plan(self, call: Call, backend: Backend, model: str) -> tuple[str, bytes, Relay]:
        """The upstream path and body for this backend, and the relay that shapes its answer for the client."""
        record = call.record

        def first_token() -> None:
            self.ledger.mark_first_token(record)

        body = call.body
        if model != call.model or call.raw is None:
            body = dict(body, model=model)
        if call.surface == backend.kind:
            content = call.raw if (call.raw is not None and model == call.model) else None
            if call.op == "embed":
                return call.path, content or _dumps(body), EmbedRelay(None, call.surface)
            if call.surface == "ollama":
                if _collects(call, backend):  # asked whole, read as a stream: see _collect
                    return call.path, _dumps(dict(body, stream=True)), NdjsonRelay(first_token, False)
                return call.path, content or _dumps(body), NdjsonRelay(first_token, call.stream)
            if call.stream:
                options = body.get("stream_options")
                if not (isinstance(options, dict) and options.get("include_usage")):
                    body = dict(body, stream_options={**(options or {}), "include_usage": True})
                    content = None
                return call.path, content or _dumps(body), SseRelay(first_token, call.include_usage)
            return call.path, content or _dumps(body), OpenAIWholeRelay(first_token)
        if call.surface == "openai":  # OpenAI client, Ollama backend
            if call.op == "embed":
                path, request = oai.embed_request(body, model)
                embed = EmbedRelay(
                    lambda c: oai.embeddings_answer(c, call.requested, body.get("encoding_format")), "openai"
                )
                return path, _dumps(request), embed
            native = oai.to_ollama_chat(body)
            native["model"] = model
            if call.agent is not None and call.agent.options:
                native["options"] = {**call.agent.options, **native.get("options", {})}
            writer = oai.ChunkWriter(f"chatcmpl-{record.id}", model, call.include_usage)
            return "/api/chat", _dumps(native), NdjsonToOpenAI(first_token, writer, call.stream)
        # Ollama client, OpenAI-compatible backend
        if call.op == "embed":
            path, request = olc.embed_request(body, model)
            started = time.monotonic_ns()
            embed = EmbedRelay(lambda c: olc.embed_answer(c, model, time.monotonic_ns() - started), "ollama")
            return path, _dumps(request), embed
        path, request = (olc.chat_request if call.op == "chat" else olc.generate_request)(body, model, call.stream)
        relay = OpenAIToNdjson(first_token, model, call.op == "chat", call.stream, think=body.get("think"))
        return path, _dumps(request), relay


class UpstreamTimeout(Exception):
    pass


def _upstream_whole(call: Call, backend: Backend) -> bool:
    """Non-streamed requests go upstream whole, except the OpenAI surface over Ollama (read as a stream to keep
    Ollama's exact timings)."""
    return not (call.surface == "openai" and backend.kind == "ollama")


def _collects(call: Call, backend: Backend) -> bool:
    """A non-streamed Ollama chat or generate over an Ollama backend is read as a stream and merged."""
    return not call.stream and call.op in ("chat", "generate") and call.surface == backend.kind == "ollama"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_message(content: bytes) -> str:
    try:
        obj = json.loads(content)
    except ValueError:
        return content.decode(errors="replace").strip()[:500]
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
        if obj.get("detail"):
            return str(obj["detail"])
    return content.decode(errors="replace").strip()[:500]


def _most_telling(errors: list[GatewayError]) -> GatewayError:
    """The error that says most: a backend failure over "model not found" (another backend may have listed it)."""
    for error in errors:
        if error.status != 404:
            return error
    return errors[0] if errors else GatewayError(503, "no backend configured", error_type="api_error")
