"""`claw doctor --load N`: N requests sent at once through the gateway (claw bench's machinery), judged against the
`[doctor]` budgets: the share of failed requests and the 95th percentile of their latency.

The requests ask for short answers: the check is about the serving path under concurrency (admission, queues,
timeouts, parallel slots on the backend); `claw bench` measures generation itself.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from claw_tui.bench import Bench, BenchConfig, BenchPrompt, BenchResult, synthetic_prompts
from claw_tui.commands.checklist import Check
from claw_tui.config import Config
from claw_tui.quantiles import percentile

LOAD_MAX_TOKENS = 8  # a short answer: the load checks the path, not the generation speed
REQUEST_TIMEOUT_S = 300.0


@dataclass
class LoadTarget:
    url: str
    headers: dict[str, str]
    where: str  # "the claw running at …", "a gateway started for this check", "the simulated box (demo)"


def check_load(config: Config, target: LoadTarget, n: int, model: str | None) -> Check:
    return asyncio.run(run_load(config, target, n, model))


async def run_load(config: Config, target: LoadTarget, n: int, model: str | None) -> Check:
    name = "load"
    token = bearer(target.headers)
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=30) as client:
        model = model or config.doctor.load_model or await pick_model(client)
        if model is None:
            return Check(name, "fail", f"no model at {target.url} to send the load to", "pull one, or pass --model")
    print(f"claw doctor: {n} requests at once to {model} through {target.where}", file=sys.stderr, flush=True)
    prompts = short_prompts()
    warm = await run_bench(target.url, token, model, 1, prompts)  # loads the model: not part of the measure
    if warm.errors:
        return Check(
            name,
            "fail",
            f"a first request to {model} failed: {warm.results[0].error}",
            "check the model (claw bench --requests 1) and the backend's log",
        )
    bench = await run_bench(target.url, token, model, n, prompts)
    return judge(config, bench.results, n, model, target)


def short_prompts() -> Iterator[BenchPrompt]:
    for prompt in synthetic_prompts("short", seed=0):
        yield BenchPrompt(prompt.messages, LOAD_MAX_TOKENS, prompt.kind)


async def run_bench(url: str, token: str, model: str, n: int, prompts: Iterator[BenchPrompt]) -> Bench:
    bench = Bench(
        BenchConfig(
            url=url, model=model, workload="short", concurrency=n, requests=n, token=token, timeout_s=REQUEST_TIMEOUT_S
        ),
        prompts,
    )
    await bench.run()
    return bench


async def pick_model(client: httpx.AsyncClient) -> str | None:
    """A chat model already in memory (what the box serves), else the first chat model the gateway lists."""
    for path in ("/api/ps", "/api/tags"):
        try:
            response = await client.get(path)
            models = (response.json().get("models") or []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        names: list[str] = [m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
        for name in filter(None, names):
            if await can_chat(client, name):
                return name
    return None


async def can_chat(client: httpx.AsyncClient, model: str) -> bool:
    """False for a model whose /api/show capabilities leave out completion (an embedding model)."""
    try:
        response = await client.post("/api/show", json={"model": model})
        capabilities = response.json().get("capabilities") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return True  # cannot tell: let the load say
    return not isinstance(capabilities, list) or "completion" in capabilities


def judge(config: Config, results: list[BenchResult], n: int, model: str, target: LoadTarget) -> Check:
    budget = config.doctor
    errors = [r for r in results if r.status != "ok"]
    rate = len(errors) / n
    latencies = [r.latency_s * 1000 for r in results if r.status == "ok" and r.latency_s is not None]
    p95 = percentile(latencies, 95) if latencies else None
    p50 = percentile(latencies, 50) if latencies else None
    detail = (
        f"{n} at once to {model} ({target.where}): {len(errors)} failed ({100 * rate:.1f}%, budget "
        f"{100 * budget.max_error_rate:g}%), latency P95 {fmt_ms(p95)} (budget {fmt_ms(budget.p95_latency_ms)}), "
        f"P50 {fmt_ms(p50)}"
    )
    hints = []
    if rate > budget.max_error_rate:
        seen = sorted({r.error or f"HTTP {r.http_status}" for r in errors})
        detail += "; errors: " + "; ".join(seen[:3])
        hints.append(error_hint(config, n, seen))
    if p95 is not None and p95 > budget.p95_latency_ms:
        hints.append(
            "more parallel slots on the backend (OLLAMA_NUM_PARALLEL, another backend or GPU), a smaller model, or a "
            f"larger budget: [doctor] p95_latency_ms = {budget.p95_latency_ms:g}"
        )
    return Check("load", "fail" if hints else "pass", detail, "; ".join(hints))


def error_hint(config: Config, n: int, errors: list[str]) -> str:
    gateway = config.gateway
    capacity = len(config.backends) * (gateway.max_in_flight + gateway.queue_size)
    text = " ".join(errors)
    if n > capacity or "waiting" in text:
        return (
            f"the gateway admits {capacity} requests at once ([gateway] max_in_flight {gateway.max_in_flight} + "
            f"queue_size {gateway.queue_size} per backend): raise queue_size to at least "
            f"{max(n - gateway.max_in_flight, gateway.queue_size + 1)}"
        )
    if "no free slot" in text or "queue" in text:
        return (
            f"requests waited longer than [gateway] queue_timeout_s = {gateway.queue_timeout_s:g}: raise it, or add "
            "parallel slots on the backend (OLLAMA_NUM_PARALLEL)"
        )
    limit = config.doctor.max_error_rate
    return f"more errors under load than [doctor] max_error_rate = {limit:g} allows: see the backend's log"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def bearer(headers: dict[str, str]) -> str:
    value = headers.get("Authorization", "")
    return value.removeprefix("Bearer ").strip()
