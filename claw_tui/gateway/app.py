"""The gateway: Ollama-native and OpenAI-compatible surfaces in front of the backends, metered into the ledger.

`Gateway` is itself the ASGI application (a dictionary of routes, no framework on the hot path). Every request
passes the front policies (auth, rate limit, body limit); metered requests (chat, generate, embeddings) then go
through the degradation ladder, singleflight or supersede when switched on, and `Upstream` (backend choice,
admission, retries, fallbacks, timeouts), and their answer is relayed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from claw_tui import __version__
from claw_tui.config import GatewayConfig
from claw_tui.gateway import openai_compat as oai
from claw_tui.gateway import validate
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.backends import CONNECT_ERRORS, UPSTREAM_ERRORS, Backend
from claw_tui.gateway.cache import AnswerCache, Flight, FlightError, Singleflight, StoredAnswer, request_key
from claw_tui.gateway.errors import GatewayError, error_body, surface_of_path
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.health import HealthChecker
from claw_tui.gateway.ladder import DegradationLadder
from claw_tui.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from claw_tui.gateway.metrics import GatewayMetrics, LiveCollector
from claw_tui.gateway.policies import Authenticator, RateLimiter, VramGate, bearer_token
from claw_tui.gateway.relay import estimate_first_token, static_answer
from claw_tui.gateway.router import GpuView, Router
from claw_tui.gateway.supersede import CONVERSATION_HEADER, Superseder, Turn, conversation_key
from claw_tui.gateway.upstream import Call, Opened, Upstream, UpstreamTimeout
from claw_tui.ledger import Ledger, RequestRecord

log = logging.getLogger(__name__)

OLLAMA_API_VERSION = "0.32.15"  # answered by /api/version when no Ollama backend said its own
TEXT = b"text/plain; charset=utf-8"
UNMETERED_PATHS = frozenset({"/", "/metrics"})  # not rate-limited: probes and scrapes
ADMIN_ENDPOINTS = ("/api/create", "/api/delete", "/api/pull", "/api/copy")
CLIENT_HEADER = b"x-claw-client"
BACKEND_HEADER = b"x-claw-backend"
CACHE_MAX_BYTES = 1 << 20

Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    handler: Handler


class Gateway:
    """Routing state and policies; the instance is the ASGI app the Session serves (`gateway.app`)."""

    def __init__(self, *, backends: list[Backend], ledger: Ledger, agents: list[Agent], session: Any = None,
                 config: GatewayConfig | None = None, first_token_timeout_s: float | None = None) -> None:
        quiet_http_client_logs()
        cfg = config or GatewayConfig()
        if first_token_timeout_s is not None:
            cfg = dataclasses.replace(cfg, first_token_timeout_s=first_token_timeout_s)
        self.config = cfg
        self.backends = backends
        for backend in backends:
            backend.configure_admission(cfg.max_in_flight, cfg.queue_size, cfg.queue_timeout_s)
        self.ledger = ledger
        self.session = session
        self.agents = {agent.name: agent for agent in agents}
        self.before_forward: list[Callable[[RequestRecord], Awaitable[None]]] = []
        self.auth = Authenticator(cfg.tokens, cfg.admin_tokens)
        # claw's own clients (the console's chat pane, warm-up) use this token when auth is on
        self.internal_token = secrets.token_urlsafe(24)
        if self.auth.enabled:
            self.auth.add_token(self.internal_token, admin=True)
        self.rate = RateLimiter(cfg.rate_limit_rpm, cfg.rate_limit_burst)
        self.vram = VramGate(cfg.vram_admission_pct, self._vram_pct, timeout_s=cfg.queue_timeout_s,
                             max_waiting=max(1, cfg.queue_size))
        self.router = Router(backends, self._gpu_view, pressure=lambda gpu: self.vram.over(gpu) is not None)
        self.metrics = GatewayMetrics()
        self.metrics.add_live(LiveCollector(lambda: self.backends, self._gpus_json, ledger.totals,
                                            lambda: self.active))
        ledger.add_finalized_listener(self.metrics.observe)
        self.upstream = Upstream(ledger, self.router, self.vram, retries=cfg.retries,
                                 first_token_timeout_s=cfg.first_token_timeout_s,
                                 idle_timeout_s=cfg.idle_timeout_s, before_forward=self.before_forward,
                                 on_retry=lambda b: self.metrics.retries.labels(b.name).inc())
        self.cache = AnswerCache(cfg.cache_ttl_s)
        self.flights = Singleflight() if cfg.singleflight else None
        self.superseder = Superseder() if cfg.supersede else None
        self.ladder = DegradationLadder(cfg.error_rate_threshold, cache=self.cache.enabled,
                                        fallback=cfg.degrade_to_fallback, static_reply=cfg.static_reply)
        self.fallback_models = {k: v for k, v in cfg.fallback_models.items() if isinstance(v, str) and v}
        self.health = HealthChecker(backends)
        self.active = 0
        self.routes = self._routes()
        self._warmup: asyncio.Task | None = None
        self.warmup_results: dict[str, str] = {}
        self._flight_records: set[str] = set()  # leaders' records, metered by their flight's producer
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = 0

    @property
    def app(self) -> "Gateway":
        return self

    def set_agents(self, agents: list[Agent]) -> None:
        self.agents = {agent.name: agent for agent in agents}

    def client_headers(self) -> dict[str, str]:
        """Headers for claw's own requests to this gateway."""
        return {"Authorization": f"Bearer {self.internal_token}"} if self.auth.enabled else {}

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self, url: str = "") -> None:
        """Probe the backends (the first answers tell which models each one serves), then warm models up."""
        await self.health.start()
        if url and self.config.warmup_prompt:
            self._warmup = asyncio.get_running_loop().create_task(self.warm_up(url), name="claw-warmup")

    async def stop(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()
        await self.health.stop()

    async def warm_up(self, url: str) -> dict[str, str]:
        """Send the warm-up prompt to each model (through the gateway itself, so it is metered)."""
        models = list(dict.fromkeys(self.config.warmup_models or [a.model for a in self.agents.values()]))
        headers = {**self.client_headers(), "X-Claw-Client": "warmup"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=self.config.first_token_timeout_s) as c:
            for model in models:
                body = {"model": model, "prompt": self.config.warmup_prompt, "stream": False,
                        "options": {"num_predict": 1}}
                try:
                    response = await c.post("/api/generate", json=body)
                    result = "ok" if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    result = f"failed: {exc}"
                self.warmup_results[model] = result
                log.info("warm-up of %s: %s", model, result)
        return self.warmup_results

    # ---- ASGI -----------------------------------------------------------------------------------------------------
    def _routes(self) -> dict[str, Route]:
        def r(methods: str, handler: Handler) -> Route:
            return Route(frozenset(methods.split()), handler)

        return {
            "/": r("GET HEAD", self.root),
            "/api/version": r("GET HEAD", self.version),
            "/api/tags": r("GET HEAD", self.tags),
            "/api/ps": r("GET", self.ps),
            "/api/show": r("POST", self.show),
            "/api/chat": r("POST", lambda ex: self.inference(ex, "ollama", "chat")),
            "/api/generate": r("POST", lambda ex: self.inference(ex, "ollama", "generate")),
            "/api/embed": r("POST", lambda ex: self.inference(ex, "ollama", "embed")),
            "/api/embeddings": r("POST", self.legacy_embeddings),
            "/api/create": r("POST", self.admin),
            "/api/pull": r("POST", self.admin),
            "/api/copy": r("POST", self.admin),
            "/api/delete": r("DELETE", self.admin),
            "/v1/chat/completions": r("POST", lambda ex: self.inference(ex, "openai", "chat")),
            "/v1/embeddings": r("POST", lambda ex: self.inference(ex, "openai", "embed")),
            "/v1/models": r("GET", self.openai_models),
            "/metrics": r("GET", self.prometheus),
            "/claw/v1/status": r("GET", self.claw_status),
            "/claw/v1/requests": r("GET", self.claw_requests),
            "/claw/v1/summary": r("GET", self.claw_summary),
            "/claw/v1/backends": r("GET", self.claw_backends),
            "/claw/v1/governor": r("GET POST", self.claw_governor),
        }

    def _route(self, path: str) -> Route | None:
        route = self.routes.get(path)
        if route is None and path.startswith("/v1/models/"):
            return Route(frozenset({"GET"}), self.openai_model)
        return route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send, surface_of_path(scope["path"]))
        try:
            route = self._route(ex.path)
            if route is None:
                raise GatewayError(404, f"no such endpoint: {ex.method} {ex.path}")
            if ex.method not in route.methods:
                raise GatewayError(405, f"{ex.method} is not allowed on {ex.path} (use {', '.join(sorted(route.methods))})",
                                   headers={"Allow": ", ".join(sorted(route.methods))})
            if self.auth.enabled:
                try:
                    self.auth.check(ex.path, bearer_token(scope["headers"], scope.get("query_string", b"")))
                except GatewayError:
                    self.metrics.rejections.labels("auth").inc()
                    raise
            await route.handler(ex)
        except GatewayError as exc:
            if exc.status == 413:
                self.metrics.rejections.labels("body_too_large").inc()
            if not ex.started:
                await ex.respond_error(exc)
        except asyncio.CancelledError:
            if not (ex.gone or ex.interrupted):
                raise
            asyncio.current_task().uncancel()
            if ex.interrupted and not ex.started:
                await ex.respond_error(GatewayError(409, ex.interrupted, error_type="conflict_error"))
        except Exception:
            log.exception("%s %s failed", ex.method, ex.path)
            if not ex.started:
                await ex.respond_error(GatewayError(500, "internal gateway error (see the claw log)",
                                                    error_type="api_error"))
        finally:
            ex.close()

    # ---- metered requests -----------------------------------------------------------------------------------------
    async def inference(self, ex: Exchange, surface: str, op: str) -> None:
        body, raw = await self._read_json(ex)
        requested = validate.require_model(body)
        if surface == "ollama":
            validate.ollama_inference(body, op)
            stream = op != "embed" and body.get("stream", True) is not False
        else:
            (validate.openai_chat if op == "chat" else validate.openai_embeddings)(body)
            stream = op == "chat" and bool(body.get("stream"))
        agent = self.agents.get(requested)
        model = agent.model if agent else requested
        record = self.ledger.open_request(
            id=self._next_id(), model=model, endpoint=ex.path, surface=surface,
            agent=agent.name if agent else None, stream=stream, client=ex.header(CLIENT_HEADER) or ex.client_host)
        ex.request_id = record.id
        self.active += 1
        try:
            ex.watch()
            await self._answer(ex, surface, op, body, raw, stream, requested, agent, record)
        except GatewayError as exc:
            refused = exc.status in (401, 403, 409, 413, 429) or (exc.status == 503 and record.t_upstream_start is None)
            if exc.status == 429:
                self.metrics.rejections.labels("rate_limit").inc()
            elif refused and exc.status == 503:
                self.metrics.rejections.labels("busy").inc()
            if record.id not in self._flight_records:
                self.ledger.finish(record, "rejected" if refused else "error", exc.status, exc.message)
            raise
        except asyncio.CancelledError:
            if record.id in self._flight_records:
                pass  # the flight still serves others; its producer finishes this record
            elif ex.interrupted:
                self.ledger.finish(record, "cancelled", 409, ex.interrupted)
            else:
                phase = "after the first token" if record.t_first_token else "before the first token"
                self.ledger.finish(record, "cancelled", 499, f"client disconnected {phase}")
            raise
        except Exception as exc:
            self.ledger.finish(record, "error", 500, f"internal gateway error: {exc!r}")
            raise
        finally:
            self.active -= 1

    def _next_id(self) -> str:
        """A request id unique to this gateway: a random prefix and a counter (no syscall per request)."""
        self._id_counter += 1
        return f"{self._id_prefix}{self._id_counter:08x}"

    async def _read_json(self, ex: Exchange) -> tuple[dict, bytes]:
        raw = await ex.read_body(self.config.max_body_bytes)
        return validate.parse_json_object(raw), raw

    def _identity(self, ex: Exchange) -> str:
        token = bearer_token(ex.scope["headers"], ex.scope.get("query_string", b""))
        return f"token:{token}" if token else f"addr:{ex.client_host}"

    def fallbacks_for(self, model: str, agent: Agent | None) -> list[str]:
        chain: list[str] = []
        first = agent.fallback if agent is not None and agent.fallback else self.fallback_models.get(model)
        while first and first != model and first not in chain and len(chain) < 3:
            chain.append(first)
            first = self.fallback_models.get(first)
        return chain

    def _prepare(self, surface: str, op: str, body: dict, raw: bytes, agent: Agent | None) -> tuple[dict, bytes | None, int]:
        """The body to send for this agent (system prompt, options, limits, trimmed context)."""
        if agent is None:
            return body, raw, 0
        trimmed = 0
        if op == "chat":
            messages, trimmed = agent.messages_for(body.get("messages"))
            if surface == "ollama":
                body = agent.apply_to_chat(body)
            else:
                body = agent.apply_to_openai_chat(body)
            body["messages"] = messages
        elif op == "generate":
            body = agent.apply_to_generate(body)
        else:
            body = dict(body, model=agent.model)
        return body, None, trimmed

    async def _answer(self, ex: Exchange, surface: str, op: str, body: dict, raw: bytes, stream: bool,
                      requested: str, agent: Agent | None, record: RequestRecord) -> None:
        cfg = self.config
        identity = self._identity(ex) if (self.rate.enabled or self.superseder is not None) else ""
        if self.rate.enabled:
            self.rate.check(identity)
        send_body, send_raw, trimmed = self._prepare(surface, op, body, raw, agent)
        call = Call(surface=surface, op=op, path=ex.path, body=send_body, raw=send_raw, stream=stream,
                    model=record.model, requested=requested, record=record, agent=agent,
                    fallbacks=self.fallbacks_for(record.model, agent),
                    include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                    deadline=time.monotonic() + cfg.total_timeout_s)
        extra: list[tuple[bytes, bytes]] = [(b"x-claw-context-trimmed", str(trimmed).encode())] if trimmed else []
        key = request_key(ex.path, body) if (self.cache.enabled or self.flights is not None) else None

        if self.ladder.any_step and self.ladder.active():
            if await self._degraded_reply(ex, call, key, extra):
                return
            if self.ladder.fallback and call.fallbacks:
                self.ladder.served["fallback"] += 1
                self.metrics.degraded.labels("fallback").inc()
                call.model, call.fallbacks = call.fallbacks[0], call.fallbacks[1:]
                call.record.downgraded_from = record.model
                call.raw = None

        if self.flights is not None and key is not None:
            await self._singleflight(ex, call, key, extra)
            return

        turn = self._begin_turn(ex, identity, requested, body, record)
        try:
            try:
                opened = await self.upstream.open(call)
            except GatewayError as exc:
                self._outcome(exc)
                if self.ladder.any_step and self.ladder.active() and await self._degraded_reply(
                        ex, call, key, extra, after_failure=exc, allow_fallback=False):
                    return
                raise
            if turn is not None:
                turn.answering = True
            await self._relay(ex, call, opened, extra, key)
        finally:
            if turn is not None:
                self.superseder.end(turn)

    def _begin_turn(self, ex: Exchange, identity: str, requested: str, body: dict,
                    record: RequestRecord) -> Turn | None:
        if self.superseder is None:
            return None
        key = conversation_key(identity, requested, body, ex.header(CONVERSATION_HEADER))
        if key is None:
            return None
        turn = Turn(key=key, request_id=record.id, interrupt=ex.interrupt)
        self.superseder.begin(turn)
        return turn

    def _outcome(self, exc: GatewayError | None) -> None:
        """Feed the error-rate window: backend failures count, refusals and client mistakes do not."""
        if not self.ladder.any_step:
            return
        if exc is None:
            self.ladder.window.add(True)
        elif exc.retryable and exc.status >= 500 and "is busy" not in exc.message:
            self.ladder.window.add(False)

    def _headers(self, call: Call, opened: Opened, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        record = call.record
        headers = [(b"content-type", opened.relay.media_type), (b"x-claw-request-id", record.id.encode()),
                   (b"x-claw-backend", opened.backend.name.encode()), (b"x-claw-model", opened.model.encode())]
        if record.downgraded_from:
            headers.append((b"x-claw-model-downgraded", opened.model.encode()))
            self.metrics.fallbacks.labels(record.downgraded_from, opened.model).inc()
        return headers + extra

    async def _relay(self, ex: Exchange, call: Call, opened: Opened, extra: list[tuple[bytes, bytes]],
                     key: str | None) -> None:
        headers = self._headers(call, opened, extra)
        kept: list[bytes] | None = [] if key is not None and self.cache.enabled else None
        if opened.complete:
            status, error = ("error", opened.relay.error) if opened.relay.error else ("ok", None)
            await ex.respond(200, opened.first, headers[1:], opened.relay.media_type)
            if kept is not None:
                kept.append(opened.first)
        else:
            await ex.start(200, headers)

            async def sink(data: bytes) -> None:
                await ex.write(data)
                if kept is not None and sum(map(len, kept)) < CACHE_MAX_BYTES:
                    kept.append(data)

            status, error = await self.pump(call, opened, sink)
            await ex.end()
        self._finish(call, opened, status, error)
        if kept is not None and status == "ok":
            prompt, completion = opened.relay.usage()
            self.cache.put(key, StoredAnswer(200, opened.relay.media_type, kept, opened.model, opened.backend.name,
                                             prompt, completion))

    async def pump(self, call: Call, opened: Opened, sink: Callable[[bytes], Awaitable[None]]) -> tuple[str, str | None]:
        """Relay the rest of an opened answer into `sink`; returns the outcome (status, error)."""
        relay = opened.relay
        try:
            await sink(opened.first)
            while True:
                data = await self.upstream.next_chunk(opened, call.deadline)
                if data is None:
                    await sink(relay.end())
                    break
                out = relay.feed(data)
                if out:
                    await sink(out)
        except (aiohttp.ClientError, OSError, UpstreamTimeout) as exc:
            message = str(exc) if isinstance(exc, UpstreamTimeout) else (
                f"backend '{opened.backend.name}' failed mid-stream: {type(exc).__name__} {exc}".rstrip())
            opened.backend.record_failure(message)
            await sink(relay.failure(message))
            return "error", message
        finally:
            await self.upstream.close(opened)
        return ("error", relay.error) if relay.error else ("ok", None)

    def _finish(self, call: Call, opened: Opened, status: str, error: str | None) -> None:
        record = call.record
        opened.relay.apply_to(record)
        if record.t_first_token is None:
            at = estimate_first_token(record, opened.relay)
            if at is not None:
                self.ledger.mark_first_token(record, at=at)
        self.ledger.finish(record, status, 200, error)
        self._outcome(None if status == "ok" else GatewayError(502, error or "", retryable=True))

    # ---- the degradation ladder ---------------------------------------------------------------------------------
    async def _degraded_reply(self, ex: Exchange, call: Call, key: str | None, extra: list[tuple[bytes, bytes]],
                              *, after_failure: GatewayError | None = None, allow_fallback: bool = True) -> bool:
        """Answer from the cache, or with the static reply, when the ladder says so; False when neither applies."""
        record = call.record
        cached = self.cache.get(key) if key is not None else None
        if cached is not None:
            self.ladder.served["cache"] += 1
            self.metrics.degraded.labels("cache").inc()
            headers = [(b"x-claw-request-id", record.id.encode()), (b"x-claw-backend", b"cache"),
                       (b"x-claw-model", cached.model.encode()), (b"x-claw-cache", b"hit"),
                       (b"x-claw-degraded", b"cache")] + extra
            record.backend = "cache"
            record.prompt_tokens, record.completion_tokens = cached.prompt_tokens, cached.completion_tokens
            await self._send_chunks(ex, cached.media_type, cached.chunks, headers, record)
            self.ledger.finish(record, "ok", 200, "served from the answer cache (degraded)")
            return True
        if allow_fallback and self.ladder.fallback and call.fallbacks:
            return False
        if self.ladder.static_reply and call.op != "embed":
            self.ladder.served["static"] += 1
            self.metrics.degraded.labels("static").inc()
            media, content = static_answer(call.surface, call.op, call.requested, self.ladder.static_reply,
                                           call.stream, record.id)
            headers = [(b"x-claw-request-id", record.id.encode()), (b"x-claw-backend", b"static"),
                       (b"x-claw-model", call.requested.encode()), (b"x-claw-degraded", b"static")] + extra
            record.backend = "static"
            await self._send_chunks(ex, media, [content], headers, record)
            reason = f"static reply: error rate {self.ladder.window.rate():.0%}"
            if after_failure is not None:
                reason += f"; {after_failure.message}"
            self.ledger.finish(record, "rejected", 200, reason)
            return True
        return False

    async def _send_chunks(self, ex: Exchange, media_type: bytes, chunks: list[bytes],
                           headers: list[tuple[bytes, bytes]], record: RequestRecord) -> None:
        self.ledger.mark_first_token(record)
        if media_type.startswith(b"application/json"):
            await ex.respond(200, b"".join(chunks), headers, media_type)
            return
        await ex.start(200, [(b"content-type", media_type)] + headers)
        for chunk in chunks:
            await ex.write(chunk)
        await ex.end()

    # ---- singleflight ---------------------------------------------------------------------------------------------
    async def _singleflight(self, ex: Exchange, call: Call, key: str, extra: list[tuple[bytes, bytes]]) -> None:
        record = call.record
        flight = self.flights.join(key)
        leader = flight is None
        if leader:
            self._flight_records.add(record.id)
            flight = self.flights.lead(key, record.id, lambda f: self._produce(f, call, extra, key))
        try:
            try:
                head = await asyncio.shield(flight.head)
            except FlightError as exc:
                if not leader:
                    self.ledger.finish(record, "error", exc.status, "the shared request failed")
                await ex.respond(exc.status, exc.body, [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()])
                return
            except asyncio.CancelledError:
                if flight.head.cancelled() and not ex.gone and not ex.interrupted:
                    raise GatewayError(502, "the shared upstream request was cancelled", error_type="api_error")
                raise
            own = [(b"x-claw-request-id", record.id.encode())]
            if not leader:
                own.append((b"x-claw-singleflight", flight.leader_id.encode()))
                record.backend = head.backend
                record.model = head.model
            await ex.start(200, [h for h in head.headers if h[0] != b"x-claw-request-id"] + own)
            async for chunk in flight.read():
                if not leader:
                    self.ledger.mark_first_token(record)
                await ex.write(chunk)
            await ex.end()
            if not leader:
                record.prompt_tokens, record.completion_tokens = flight.prompt_tokens, flight.completion_tokens
                self.ledger.finish(record, "error" if flight.error else "ok", 200, flight.error)
        finally:
            self.flights.leave(flight)

    async def _produce(self, flight: Flight, call: Call, extra: list[tuple[bytes, bytes]], key: str) -> None:
        """The shared upstream request of a flight; it meters into the leader's record."""
        record = call.record
        try:
            try:
                opened = await self.upstream.open(call)
            except GatewayError as exc:
                self._outcome(exc)
                self.ledger.finish(record, "error", exc.status, exc.message)
                flight.head.set_exception(FlightError(exc.status, error_body(call.surface, exc), exc.headers))
                return
            headers = self._headers(call, opened, extra)
            flight.head.set_result(FlightHead(headers, opened.backend.name, opened.model))

            async def publish(data: bytes) -> None:
                if data:
                    flight.publish(data)

            if opened.complete:
                await publish(opened.first)
                status, error = ("error", opened.relay.error) if opened.relay.error else ("ok", None)
            else:
                status, error = await self.pump(call, opened, publish)
            flight.prompt_tokens, flight.completion_tokens = opened.relay.usage()
            self._finish(call, opened, status, error)
            flight.finish(error)
        except asyncio.CancelledError:
            self.ledger.finish(record, "cancelled", 499, "every client of the shared request disconnected")
            raise
        finally:
            self._flight_records.discard(record.id)

    # ---- passthrough endpoints ------------------------------------------------------------------------------------
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

    async def all_models(self) -> list[dict]:
        """Every backend's models, merged by name, then the agents as virtual models."""
        merged: dict[str, dict] = {}
        results = await asyncio.gather(*(b.models() for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results):
            if isinstance(result, BaseException):
                backend.record_failure(f"listing models failed: {result or type(result).__name__}",
                                       unreachable=isinstance(result, CONNECT_ERRORS))
                continue
            for tag in result:
                merged.setdefault(tag.get("name") or tag.get("model"), tag)
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
        async def loaded(backend: Backend) -> list[dict]:
            if backend.kind != "ollama":  # an OpenAI-compatible server keeps its models loaded
                return [dict(tag, size_vram=tag.get("size", 0), expires_at="0001-01-01T00:00:00Z",
                             context_length=0) for tag in await backend.models()]
            return (await backend.get_json("/api/ps")).get("models") or []

        models: list[dict] = []
        results = await asyncio.gather(*(loaded(b) for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results):
            if isinstance(result, BaseException):
                log.debug("/api/ps of %s failed: %s", backend.name, result)
                continue
            models.extend(result)
        await ex.respond(200, _dumps({"models": models}))

    async def show(self, ex: Exchange) -> None:
        body, raw = await self._read_json(ex)
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise GatewayError(400, "model is required")
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
            raise GatewayError(502, f"backend '{backend.name}' failed: {exc or type(exc).__name__}",
                               error_type="api_error") from None
        if agent is not None and response.status == 200:
            out = _dumps(_show_for_agent(json.loads(out), agent))
        await ex.respond(response.status, out, [(b"x-claw-backend", backend.name.encode())])

    async def _backend_with(self, model: str) -> Backend | None:
        known, unknown = self.router.serving(model)
        if not known:
            await self.router.refresh_for(model)
            known, unknown = self.router.serving(model)
        healthy = [b for b in known if b.in_rotation]
        return (healthy or known or unknown or [None])[0]

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
        backend = self._admin_backend(ex, body)
        try:
            await self._forward(ex, backend, ex.method, raw, before_end=backend.refresh_models)
        finally:
            backend.forget_models()

    def _admin_backend(self, ex: Exchange, body: dict) -> Backend:
        ollama = [b for b in self.backends if b.kind == "ollama"]
        named = ex.header(BACKEND_HEADER)
        if named:
            for backend in self.backends:
                if backend.name == named:
                    if backend.kind != "ollama":
                        raise GatewayError(400, f"backend '{named}' is OpenAI-compatible: models are managed on it "
                                                "directly, not through the Ollama API")
                    return backend
            raise GatewayError(404, f"no backend named '{named}'")
        if not ollama:
            raise GatewayError(501, "managing models needs an Ollama backend; the configured backends are all "
                                    "OpenAI-compatible")
        for field in ("from", "source", "model", "name"):
            name = body.get(field)
            if ex.path == "/api/pull" or not isinstance(name, str) or not name:
                continue
            for backend in ollama:
                if backend.has_model(name):
                    return backend
            break
        return next((b for b in ollama if b.in_rotation), ollama[0])

    async def _forward(self, ex: Exchange, backend: Backend, method: str, raw: bytes,
                       before_end: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Send the request to one backend as it is and relay the answer as it comes (status, type, chunks)."""
        ex.watch()
        try:
            response = await backend.send(method, ex.path, raw, {"Content-Type": "application/json"})
        except (aiohttp.ClientError, OSError) as exc:
            raise GatewayError(502, f"backend '{backend.name}' unreachable at {backend.url}: {exc}",
                               error_type="api_error") from None
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

    # ---- claw's own endpoints ------------------------------------------------------------------------------------
    async def prometheus(self, ex: Exchange) -> None:
        body = await asyncio.to_thread(self.metrics.exposition)
        await ex.respond(200, body, media_type=METRICS_CONTENT_TYPE.encode())

    async def claw_status(self, ex: Exchange) -> None:
        status = await asyncio.to_thread(self.session.status_json) if self.session is not None else {}
        status["gateway_policies"] = self.policies_json()
        await ex.respond(200, _dumps(status))

    def policies_json(self) -> dict:
        cfg = self.config
        return {
            "auth": self.auth.enabled,
            "rate_limit_rpm": cfg.rate_limit_rpm,
            "max_in_flight": cfg.max_in_flight,
            "queue_size": cfg.queue_size,
            "vram_admission_pct": cfg.vram_admission_pct,
            "singleflight": {"on": self.flights is not None, "shared": self.flights.shared if self.flights else 0},
            "supersede": {"on": self.superseder is not None,
                          "superseded": self.superseder.superseded if self.superseder else 0},
            "ladder": self.ladder.to_json(),
            "cache_entries": len(self.cache),
            "warmup": dict(self.warmup_results),
        }

    async def claw_requests(self, ex: Exchange) -> None:
        try:
            limit = int(ex.query("limit") or "100")
        except ValueError:
            raise GatewayError(400, "limit must be an integer") from None
        if self.session is not None:
            await asyncio.to_thread(self.session.refresh_telemetry)
        records = self.ledger.records(max(0, min(limit, 10_000)))
        await ex.respond(200, _dumps({"requests": [r.to_json() for r in reversed(records)]}))

    async def claw_summary(self, ex: Exchange) -> None:
        await asyncio.to_thread(self.session.refresh_telemetry)
        await ex.respond(200, _dumps(await asyncio.to_thread(self.session.summary_json)))

    async def claw_backends(self, ex: Exchange) -> None:
        await ex.respond(200, _dumps({"backends": [b.to_json() for b in self.backends]}))

    async def claw_governor(self, ex: Exchange) -> None:
        """GET: the governor's status; POST {"enabled": bool, "idle_after_s"?: s, "unload_after_s"?: s}."""
        governor = getattr(self.session, "governor", None)
        if governor is None:
            raise GatewayError(503, "the governor is not running", headers={"Retry-After": "60"})
        if ex.method == "GET":
            await ex.respond(200, _dumps(governor.status_json()))
            return
        body, _ = await self._read_json(ex)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise GatewayError(400, 'expected {"enabled": true|false}')
        limits = {}
        for key in ("idle_after_s", "unload_after_s"):
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise GatewayError(400, f"{key} must be a number of seconds >= 0")
            limits[key] = float(value)
        await ex.respond(200, _dumps(await governor.set_enabled(enabled, **limits)))

    # ---- telemetry for the router and VRAM admission ----------------------------------------------------------------
    def _snapshots(self) -> list:
        sampler = getattr(self.session, "sampler", None)
        return sampler.latest_all() if sampler is not None else []

    def _gpus_json(self) -> list[dict]:
        return [s.to_json() for s in self._snapshots()]

    def _gpu_view(self, gpu: int | None) -> GpuView | None:
        for snap in self._snapshots():
            if gpu is None or snap.index == gpu:
                return GpuView(snap.name, snap.util_pct, snap.temp_c)
        return None

    def _vram_pct(self, gpu: int | None) -> float | None:
        worst = None
        for snap in self._snapshots():
            if gpu is not None and snap.index != gpu:
                continue
            if snap.vram_used_mib is None or not snap.vram_total_mib:
                continue
            pct = 100.0 * snap.vram_used_mib / snap.vram_total_mib
            worst = pct if worst is None else max(worst, pct)
        return worst


@dataclass(frozen=True)
class FlightHead:
    headers: list[tuple[bytes, bytes]]
    backend: str
    model: str


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def quiet_http_client_logs() -> None:
    """httpx logs every request at INFO: on the hot path that is a formatted line per request. Keep it to warnings
    unless someone chose its level."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _show_for_agent(shown: dict, agent: Agent) -> dict:
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


def _show_for_openai_model(model: str) -> dict:
    return {
        "modelfile": f"FROM {model}\n",
        "parameters": "",
        "template": "",
        "details": {"parent_model": "", "format": "", "family": "", "families": None, "parameter_size": "",
                    "quantization_level": ""},
        "model_info": {},
        "capabilities": ["completion"],
    }
