"""`claw doctor`'s production checks: GPU memory headroom with the models that hold it, every agent's context
budget against its model's real context length, tokens whenever the gateway listens beyond loopback, and
`/metrics` answering. Each failing line says what to change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from claw_tui.commands.checklist import Check, worst
from claw_tui.config import BackendConfig, GatewayConfig
from claw_tui.gateway.policies import is_loopback_host
from claw_tui.telemetry.types import GpuSnapshot

HTTP_TIMEOUT_S = 3.0
GIB = 1024**3


class AgentLike(Protocol):
    name: str
    model: str
    max_context_tokens: int
    options: dict[str, Any]


@dataclass
class LoadedModel:
    """A model in a backend's memory, as Ollama's /api/ps tells it."""

    name: str
    backend: BackendConfig
    vram_bytes: int
    context_length: int | None


@dataclass
class OllamaFacts:
    """What the Ollama backends say about their models: the loaded ones, and each model's trained context length."""

    backends: list[BackendConfig]
    loaded: list[LoadedModel] = field(default_factory=list)
    _context: dict[str, tuple[int | None, str]] = field(default_factory=dict)

    @classmethod
    def gather(cls, backends: Sequence[BackendConfig]) -> OllamaFacts:
        facts = cls([b for b in backends if b.kind == "ollama"])
        for backend in facts.backends:
            body = request_json(backend, "GET", "/api/ps")
            for entry in (body or {}).get("models") or []:
                if isinstance(entry, dict) and entry.get("name"):
                    facts.loaded.append(
                        LoadedModel(
                            entry["name"],
                            backend,
                            int(entry.get("size_vram") or 0),
                            entry.get("context_length") if isinstance(entry.get("context_length"), int) else None,
                        )
                    )
        return facts

    def loaded_model(self, model: str) -> LoadedModel | None:
        return next((m for m in self.loaded if same_model(m.name, model)), None)

    def context_length(self, model: str) -> tuple[int | None, str]:
        """The model's trained context length from /api/show model_info, and the backend that said it."""
        if model not in self._context:
            self._context[model] = (None, "")
            for backend in self.backends:
                body = request_json(backend, "POST", "/api/show", {"model": model})
                length = trained_context_length(body)
                if length is not None:
                    self._context[model] = (length, backend.name)
                    break
        return self._context[model]


def request_json(backend: BackendConfig, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
    try:
        response = httpx.request(
            method, backend.url.rstrip("/") + path, json=body, headers=headers, timeout=HTTP_TIMEOUT_S
        )
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trained_context_length(show: dict[str, Any] | None) -> int | None:
    info = (show or {}).get("model_info") or {}
    for key, value in info.items():
        if key.endswith(".context_length") and isinstance(value, int) and value > 0:
            return value
    return None


def same_model(a: str, b: str) -> bool:
    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(a) == full(b)


# ---- GPU memory --------------------------------------------------------------------------------------------------
def check_gpu_memory(snapshots: list[GpuSnapshot] | None, facts: OllamaFacts, max_pct: float) -> Check:
    name = "GPU memory"
    if snapshots is None:
        return Check(name, "skip", "no GPU telemetry (see the NVML line)")
    findings = []
    statuses = []
    for snap in snapshots:
        if not snap.vram_total_mib or snap.vram_used_mib is None:
            findings.append(f"GPU {snap.index}: memory use not reported")
            statuses.append("warn")
            continue
        pct = 100 * snap.vram_used_mib / snap.vram_total_mib
        held = holders(snap, facts, len(snapshots))
        text = (
            f"GPU {snap.index}: {snap.vram_used_mib / 1024:.1f} of {snap.vram_total_mib / 1024:.1f} GiB "
            f"({pct:.0f}%{' > ' if pct > max_pct else ' ≤ '}{max_pct:g}%)"
        )
        findings.append(text + (f", held by {held}" if held else ""))
        statuses.append("fail" if pct > max_pct else "pass")
    status = worst(statuses)
    hint = (
        "unload a model (ollama stop MODEL, or a shorter keep_alive), lower num_ctx or OLLAMA_NUM_PARALLEL, or "
        f"move a model to another GPU; [doctor] max_vram_pct = {max_pct:g} sets the limit"
    )
    return Check(name, status, "; ".join(findings), hint if status != "pass" else "")


def holders(snap: GpuSnapshot, facts: OllamaFacts, gpu_count: int) -> str:
    """The models (from /api/ps) that hold this GPU's memory, else the processes NVML lists."""
    models = [m for m in facts.loaded if m.backend.gpu == snap.index or (m.backend.gpu is None and gpu_count == 1)]
    if models:
        return ", ".join(f"{m.name} ({m.vram_bytes / GIB:.1f} GiB, backend {m.backend.name})" for m in models)
    processes = sorted(snap.processes, key=lambda p: -(p.vram_mib or 0))
    return ", ".join(f"{p.name} pid {p.pid} ({(p.vram_mib or 0) / 1024:.1f} GiB)" for p in processes[:4])


# ---- agents' context -----------------------------------------------------------------------------------------------
def check_agent_context(agents: Sequence[AgentLike], facts: OllamaFacts) -> Check:
    """An agent trims conversations to max_context_tokens; beyond what its model really runs with, Ollama cuts the
    start of the prompt itself (the system prompt first), so the budget must fit the model's context."""
    name = "agent context"
    budgeted = [a for a in agents if a.max_context_tokens or a.options.get("num_ctx")]
    if not budgeted:
        return Check(name, "pass", "no agent sets max_context_tokens or num_ctx")
    if not facts.backends:
        return Check(name, "skip", "no Ollama backend to ask for context lengths (/api/show)")
    findings: list[tuple[str, str, str]] = [agent_context_finding(agent, facts) for agent in budgeted]
    status = worst([s for s, _, _ in findings])
    shown = [text for s, text, _ in findings if s == status] if status != "pass" else [t for _, t, _ in findings]
    hints = [hint for s, _, hint in findings if s == status and hint]
    return Check(name, status, "; ".join(shown), "; ".join(hints))


def agent_context_finding(agent: AgentLike, facts: OllamaFacts) -> tuple[str, str, str]:
    budget = agent.max_context_tokens
    num_ctx = agent.options.get("num_ctx")
    trained, _ = facts.context_length(agent.model)
    who = f"agent '{agent.name}' ({agent.model})"
    if trained is None:
        return (
            "warn",
            f"{who}: no Ollama backend reports the model's context length (/api/show)",
            f"pull {agent.model}, or check the budget by hand where an OpenAI-compatible server serves it",
        )
    if isinstance(num_ctx, int) and num_ctx > trained:
        return (
            "fail",
            f"{who}: num_ctx {num_ctx:,} > the model's context length {trained:,}",
            f"set options.num_ctx ≤ {trained} for agent '{agent.name}'",
        )
    if budget > trained:
        return (
            "fail",
            f"{who}: max_context_tokens {budget:,} > the model's context length {trained:,}",
            f"set max_context_tokens ≤ {trained} for agent '{agent.name}'",
        )
    if isinstance(num_ctx, int) and budget > num_ctx:
        return (
            "fail",
            f"{who}: max_context_tokens {budget:,} > its num_ctx {num_ctx:,}: Ollama cuts longer prompts",
            f"raise options.num_ctx to ≥ {budget} or lower max_context_tokens for agent '{agent.name}'",
        )
    loaded = facts.loaded_model(agent.model)
    if not isinstance(num_ctx, int) and loaded is not None and loaded.context_length and budget > loaded.context_length:
        return (
            "warn",
            f"{who}: max_context_tokens {budget:,} > the {loaded.context_length:,} tokens the model is loaded with "
            f"(/api/ps): Ollama cuts longer prompts",
            f"set options.num_ctx = {budget} for agent '{agent.name}' (or OLLAMA_CONTEXT_LENGTH on the server)",
        )
    runs_with = f"num_ctx {num_ctx:,}" if isinstance(num_ctx, int) else f"context length {trained:,}"
    return "pass", f"{who}: {budget:,} ≤ {runs_with}" if budget else f"{who}: num_ctx {num_ctx:,} ≤ {trained:,}", ""


# ---- who may call the gateway --------------------------------------------------------------------------------------
def check_exposure(gateway: GatewayConfig) -> Check:
    name = "gateway access"
    host, port = gateway.host_port()
    if is_loopback_host(host):
        auth = f"{len(gateway.tokens)} client tokens" if gateway.tokens else "no tokens needed"
        return Check(name, "pass", f"listens on loopback only ({host}:{port}); {auth}")
    if not gateway.tokens:
        return Check(
            name,
            "fail",
            f"listens on {host}:{port}, beyond loopback, without tokens: anyone who reaches the port may use the "
            "GPUs (claw serve refuses to start so)",
            'set [gateway] tokens = ["<a long random token>"] (clients send Authorization: Bearer), '
            "or listen on 127.0.0.1",
        )
    if not gateway.admin_tokens:
        return Check(
            name,
            "warn",
            f"listens on {host}:{port} with {len(gateway.tokens)} client tokens, but any of them may create, "
            "delete and pull models",
            'set [gateway] admin_tokens = ["<another token>"] for /api/create, /api/delete, /api/pull, /api/copy',
        )
    return Check(
        name,
        "pass",
        f"listens on {host}:{port} with {len(gateway.tokens)} client and {len(gateway.admin_tokens)} admin tokens",
    )


# ---- /metrics -----------------------------------------------------------------------------------------------------
def check_metrics(url: str | None, headers: dict[str, str], where: str) -> Check:
    name = "metrics"
    if url is None:
        return Check(
            name,
            "skip",
            f"no claw gateway runs at {where} to scrape",
            "start claw (or claw serve), then run claw doctor again",
        )
    try:
        response = httpx.get(url + "/metrics", headers=headers, timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Check(name, "fail", f"{url}/metrics: {exc or type(exc).__name__}", "is the gateway overloaded?")
    families = {line.split()[2] for line in response.text.splitlines() if line.startswith("# TYPE claw_")}
    if response.status_code == 401:
        return Check(
            name,
            "fail",
            f"{url}/metrics answers 401: the scraper needs a token",
            "give Prometheus a bearer token (authorization: credentials in the scrape config) from [gateway] tokens",
        )
    if response.status_code != 200 or not families:
        return Check(
            name,
            "fail",
            f"{url}/metrics answers HTTP {response.status_code} without claw's metrics",
            "is another program on this port? (ss -ltnp)",
        )
    return Check(name, "pass", f"{url}/metrics answers ({len(families)} claw metric families) — {where}")
