"""The gateway: Ollama-native and OpenAI-compatible surfaces in front of the backends, metered into the ledger.

`Gateway` is itself the ASGI application (a dictionary of routes, no framework on the hot path). Every request
passes the front policies (auth, rate limit, body limit); metered requests (chat, generate, embeddings) then go
through the degradation ladder (degraded.py), singleflight (shared.py) or supersede when switched on, and
`Upstream` (backend choice, admission, retries, fallbacks, timeouts), and their answer is relayed chunk by chunk
(forward.py). What the gateway reads from its host, the Session, is `GatewayHost` (host.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from claw_tui.batch import api as batch_api
from claw_tui.config import GatewayConfig
from claw_tui.gateway import validate
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.backends import Backend
from claw_tui.gateway.cache import AnswerCache, Singleflight, request_key
from claw_tui.gateway.catalog import ModelEndpoints
from claw_tui.gateway.claw_api import ClawEndpoints
from claw_tui.gateway.degraded import DegradedReplies
from claw_tui.gateway.errors import GatewayError, surface_of_path
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.forward import Forwarder
from claw_tui.gateway.health import HealthChecker
from claw_tui.gateway.host import GatewayHost
from claw_tui.gateway.ladder import DegradationLadder
from claw_tui.gateway.metrics import OTHER as OTHER_LABEL
from claw_tui.gateway.metrics import GatewayMetrics, LiveCollector
from claw_tui.gateway.model_ops import WARMUP_CLIENT, model_operation
from claw_tui.gateway.policies import Authenticator, RateLimiter, VramGate, bearer_token
from claw_tui.gateway.residency import ResidencyWatcher
from claw_tui.gateway.router import GpuView, Router
from claw_tui.gateway.shared import SharedRequests
from claw_tui.gateway.supersede import CONVERSATION_HEADER, Superseder
from claw_tui.gateway.upstream import Call, Upstream
from claw_tui.ledger import Ledger, RequestRecord
from claw_tui.logs import REQUEST_ID

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from claw_tui.telemetry.types import GpuSnapshot

log = logging.getLogger(__name__)

CLIENT_HEADER = b"x-claw-client"
BATCH_HEADER = b"x-claw-batch"  # on batch lines (X-Claw-Client: batch): which job and line the request serves

Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    handler: Handler


class Gateway(ModelEndpoints, ClawEndpoints):
    """Routing state and policies; the instance is the ASGI app the Session serves (`gateway.app`)."""

    def __init__(
        self,
        *,
        backends: list[Backend],
        ledger: Ledger,
        agents: list[Agent],
        session: GatewayHost | None = None,
        config: GatewayConfig | None = None,
        first_token_timeout_s: float | None = None,
    ) -> None:
        quiet_http_client_logs()
        cfg = config or GatewayConfig()
        if first_token_timeout_s is not None:
            cfg = dataclasses.replace(cfg, first_token_timeout_s=first_token_timeout_s)
        self.config = cfg
        self.backends = backends
        for backend in backends:
            backend.configure_admission(cfg.max_in_flight, cfg.queue_size, cfg.queue_timeout_s)
            backend.configure_error_rates(cfg.error_rate_threshold, cfg.error_rate_window_s, cfg.error_rate_min_samples)
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
        self.vram = VramGate(
            cfg.vram_admission_pct, self._vram_pct, timeout_s=cfg.queue_timeout_s, max_waiting=max(1, cfg.queue_size)
        )
        self.router = Router(backends, self._gpu_view, pressure=lambda gpu: self.vram.over(gpu) is not None)
        self.metrics = GatewayMetrics(label_model=self.model_label, label_agent=self.agent_label)
        self.metrics.add_live(LiveCollector(lambda: self.backends, self._gpus_json, ledger.totals, lambda: self.active))
        ledger.add_finalized_listener(self.metrics.observe)
        self.upstream = Upstream(
            ledger,
            self.router,
            self.vram,
            resident=lambda backend, model: self.residency.is_resident(backend, model),
            retries=cfg.retries,
            first_token_timeout_s=cfg.first_token_timeout_s,
            idle_timeout_s=cfg.idle_timeout_s,
            before_forward=self.before_forward,
            on_retry=lambda b: self.metrics.retries.labels(b.name).inc(),
        )
        self.cache = AnswerCache(cfg.cache_ttl_s)
        self.flights = Singleflight() if cfg.singleflight else None
        self.superseder = Superseder() if cfg.supersede else None
        self.ladder = DegradationLadder(
            cfg.error_rate_threshold,
            cache=self.cache.enabled,
            fallback=cfg.degrade_to_fallback,
            static_reply=cfg.static_reply,
            window_s=cfg.error_rate_window_s,
            min_samples=cfg.error_rate_min_samples,
        )
        self.fallback_models = {k: v for k, v in cfg.fallback_models.items() if isinstance(v, str) and v}
        self.health = HealthChecker(backends)
        self.residency = ResidencyWatcher(backends, ledger.set_resident)
        # the steps of a metered request after its call is built
        self.forward = Forwarder(ledger, self.upstream, self.residency, self.ladder, self.cache, self.metrics)
        self.degraded = DegradedReplies(ledger, self.ladder, self.cache, self.metrics)
        self.shared = SharedRequests(self.flights, ledger, self.forward) if self.flights is not None else None
        # leaders' records of shared requests, metered by their flight's producer
        self._flight_records: set[str] = self.shared.records if self.shared is not None else set()
        self.active = 0
        self.routes = self._routes()
        self._warmup: asyncio.Task[dict[str, str]] | None = None
        self.warmup_results: dict[str, str] = {}
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = 0

    @property
    def app(self) -> Gateway:
        return self

    def set_agents(self, agents: list[Agent]) -> None:
        self.agents = {agent.name: agent for agent in agents}

    def model_label(self, name: str) -> str:
        """A model's name as a metric label: one a backend serves or the configuration names; else "other"."""
        if any(backend.lists(name) for backend in self.backends):
            return name
        configured = (
            {a.model for a in self.agents.values()} | set(self.fallback_models) | set(self.fallback_models.values())
        )
        return name if name in configured else OTHER_LABEL

    def agent_label(self, name: str) -> str:
        return name if name in self.agents else OTHER_LABEL

    def client_headers(self) -> dict[str, str]:
        """Headers for claw's own requests to this gateway."""
        return {"Authorization": f"Bearer {self.internal_token}"} if self.auth.enabled else {}

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self, url: str = "") -> None:
        """Probe the backends (the first answers tell which models each one serves), then warm models up."""
        await self.health.start()
        await self.residency.start()
        if url and self.config.warmup_prompt:
            self._warmup = asyncio.get_running_loop().create_task(self.warm_up(url), name="claw-warmup")

    async def stop(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()
        await self.residency.stop()
        await self.health.stop()

    async def warm_up(self, url: str) -> dict[str, str]:
        """Send the warm-up prompt to each model (through the gateway itself, so it is metered)."""
        models = list(dict.fromkeys(self.config.warmup_models or [a.model for a in self.agents.values()]))
        headers = {**self.client_headers(), "X-Claw-Client": WARMUP_CLIENT}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=self.config.first_token_timeout_s) as c:
            for model in models:
                body = {
                    "model": model,
                    "prompt": self.config.warmup_prompt,
                    "stream": False,
                    "options": {"num_predict": 1},
                }
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
            "/claw/v1/model-events": r("GET", self.claw_model_events),
            "/claw/v1/summary": r("GET", self.claw_summary),
            "/claw/v1/backends": r("GET", self.claw_backends),
            "/claw/v1/governor": r("GET POST", self.claw_governor),
            "/claw/v1/events": r("GET", self.claw_events),
            "/claw/v1/telemetry": r("GET", self.claw_telemetry),
            "/claw/v1/agents": r("GET POST PUT DELETE", self.claw_agents),
            "/claw/v1/conversations": r("GET POST", self.claw_conversations),
            **{path: r("GET POST", lambda ex: batch_api.handle(self, ex)) for path in batch_api.PATHS},
        }

    def _route(self, path: str) -> Route | None:
        route = self.routes.get(path)
        if route is None and path.startswith("/v1/models/"):
            return Route(frozenset({"GET"}), self.openai_model)
        if route is None and path.startswith("/claw/v1/conversations/"):
            return Route(frozenset({"GET", "PUT", "DELETE"}), self.claw_conversation)
        if route is None and batch_api.owns(path):
            return Route(frozenset({"GET", "POST"}), lambda ex: batch_api.handle(self, ex))
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send, surface_of_path(scope["path"]))
        try:
            route = self._route(ex.path)
            if route is None:
                raise GatewayError(404, f"no such endpoint: {ex.method} {ex.path}")
            if ex.method not in route.methods:
                allowed = ", ".join(sorted(route.methods))
                raise GatewayError(
                    405, f"{ex.method} is not allowed on {ex.path} (use {allowed})", headers={"Allow": allowed}
                )
            if self.auth.enabled:
                try:
                    self.auth.check(ex.path, bearer_token(scope["headers"], scope.get("query_string", b"")), ex.method)
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
            task = asyncio.current_task()
            assert task is not None  # the server runs each request in a task
            task.uncancel()
            if ex.interrupted and not ex.started:
                await ex.respond_error(GatewayError(409, ex.interrupted, error_type="conflict_error"))
        except Exception:
            log.exception("%s %s failed", ex.method, ex.path)
            if not ex.started:
                await ex.respond_error(
                    GatewayError(500, "internal gateway error (see the claw log)", error_type="api_error")
                )
        finally:
            log.debug("%s %s answered %d", ex.method, ex.path, ex.status)
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
        client = ex.header(CLIENT_HEADER)
        record = self.ledger.open_request(
            id=self._next_id(),
            model=model,
            kind=model_operation(surface, op, body, client),
            endpoint=ex.path,
            surface=surface,
            agent=agent.name if agent else None,
            stream=stream,
            client=client or ex.client_host,
            batch=ex.header(BATCH_HEADER) if client == "batch" else None,
        )
        ex.request_id = record.id
        REQUEST_ID.set(record.id)  # every log line of this request's task names it
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

    async def _read_json(self, ex: Exchange) -> tuple[dict[str, Any], bytes]:
        raw = await ex.read_body(self.config.max_body_bytes, self.config.body_timeout_s)
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

    def _prepare(
        self, surface: str, op: str, body: dict[str, Any], raw: bytes, agent: Agent | None
    ) -> tuple[dict[str, Any], bytes | None, int]:
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

    async def _answer(
        self,
        ex: Exchange,
        surface: str,
        op: str,
        body: dict[str, Any],
        raw: bytes,
        stream: bool,
        requested: str,
        agent: Agent | None,
        record: RequestRecord,
    ) -> None:
        cfg = self.config
        identity = self._identity(ex) if (self.rate.enabled or self.superseder is not None) else ""
        if self.rate.enabled:
            self.rate.check(identity)
        send_body, send_raw, trimmed = self._prepare(surface, op, body, raw, agent)
        call = Call(
            surface=surface,
            op=op,
            path=ex.path,
            body=send_body,
            raw=send_raw,
            stream=stream,
            model=record.model,
            requested=requested,
            record=record,
            agent=agent,
            fallbacks=self.fallbacks_for(record.model, agent),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            deadline=time.monotonic() + cfg.total_timeout_s,
        )
        extra: list[tuple[bytes, bytes]] = [(b"x-claw-context-trimmed", str(trimmed).encode())] if trimmed else []
        key = request_key(ex.path, body) if (self.cache.enabled or self.flights is not None) else None

        if self.ladder.active(call.model):
            if await self.degraded.reply(ex, call, key, extra):
                return
            if self.ladder.fallback and call.fallbacks:
                self.degraded.to_fallback(call)

        if self.shared is not None and key is not None:
            await self.shared.serve(ex, call, key, extra)
            return

        superseder = self.superseder
        turn = None
        if superseder is not None:
            turn = superseder.begin_request(
                identity, requested, body, ex.header(CONVERSATION_HEADER), record.id, ex.interrupt
            )
        try:
            try:
                opened = await self.upstream.open(call)
            except GatewayError as exc:
                self.forward.outcome(call.model, exc)
                if self.ladder.active(call.model) and await self.degraded.reply(
                    ex, call, key, extra, after_failure=exc, allow_fallback=False
                ):
                    return
                raise
            if turn is not None:
                turn.answering = True
            await self.forward.relay(ex, call, opened, extra, key)
        finally:
            if turn is not None and superseder is not None:
                superseder.end(turn)

    # ---- telemetry for the router and VRAM admission ----------------------------------------------------------------
    def _snapshots(self) -> list[GpuSnapshot]:
        sampler = self.session.sampler if self.session is not None else None
        return sampler.latest_all() if sampler is not None else []

    def _gpus_json(self) -> list[dict[str, Any]]:
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


def quiet_http_client_logs() -> None:
    """httpx logs every request at INFO: on the hot path that is a formatted line per request. Keep it to warnings
    unless someone chose its level."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
