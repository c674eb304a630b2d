"""`claw bench`: a load generator that goes through claw's gateway and reports latency, throughput and energy.

Client-side it measures TTFT, inter-token latency (ITL) and latency per request; energy comes from the gateway's
own records of the bench's requests (`/claw/v1/requests`, matched by `X-Claw-Request-Id`) and from the session
totals before and after the run (`/claw/v1/summary`), so idle time between requests is charged as well. The result
is a summary in the export schema (`claw.summary/1`), so `claw compare` puts two runs side by side.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from claw_tui.store import record_from_json
from claw_tui.summary import percentiles, summarize
from claw_tui.summary_types import Summary

WORKLOADS = ("short", "long", "mixed")
LONG_SHARE_IN_MIXED = 0.2
ENERGY_WAIT_S = 10.0

TOPICS = (
    "the water cycle",
    "public key cryptography",
    "sourdough fermentation",
    "how GPUs schedule warps",
    "the history of the printing press",
    "solar panel efficiency",
    "garbage collection in Python",
    "the French revolution",
    "how vaccines train the immune system",
    "TCP congestion control",
    "photosynthesis",
    "how a compiler optimises loops",
    "plate tectonics",
    "the rules of chess openings",
    "container orchestration",
    "the economics of renewable energy",
    "how noise-cancelling headphones work",
    "the life cycle of stars",
    "database indexing",
    "the causes of inflation",
)
SHORT_TEMPLATES = (
    "Explain {topic} in two sentences.",
    "What is the single most important idea behind {topic}?",
    "Give me three quick facts about {topic}.",
    "How would you describe {topic} to a ten-year-old?",
    "What is a common misconception about {topic}?",
)
FILLER = (
    "The report describes the observations collected over several weeks by the field team.",
    "Each measurement was checked twice and the outliers were marked for a later review.",
    "Several participants noted that the conditions changed noticeably in the afternoon.",
    "The appendix lists the instruments, their calibration dates and the people who used them.",
    "A second section compares the results with those of the previous season.",
    "The authors caution that the sample is small and that the trends may not generalise.",
    "Costs rose in the third month, mostly because of transport and replacement parts.",
    "The final pages propose a schedule for the next round and a revised budget.",
)


class WorkloadError(ValueError):
    """A workload file that cannot be used; the message names the line."""


@dataclass
class BenchPrompt:
    messages: list[dict[str, Any]]
    max_tokens: int
    kind: str  # "short" | "long" | "file"
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def synthetic_prompt(kind: str, rng: random.Random) -> BenchPrompt:
    topic = rng.choice(TOPICS)
    if kind == "short":
        text = rng.choice(SHORT_TEMPLATES).format(topic=topic)
        return BenchPrompt([{"role": "user", "content": text}], max_tokens=rng.randint(64, 160), kind="short")
    sentences = [rng.choice(FILLER) for _ in range(rng.randint(90, 160))]  # ~1,500-2,600 tokens of context
    text = (
        f"Here is a long field report about {topic}.\n\n"
        + " ".join(sentences)
        + "\n\nSummarise the report in detail, then list its open questions."
    )
    return BenchPrompt([{"role": "user", "content": text}], max_tokens=rng.randint(384, 640), kind="long")


def synthetic_prompts(workload: str, seed: int = 0) -> Iterator[BenchPrompt]:
    """An endless, seeded stream of prompts for a built-in workload."""
    if workload not in WORKLOADS:
        raise WorkloadError(f"unknown workload {workload!r} (expected {', '.join(WORKLOADS)} or a .jsonl file)")
    rng = random.Random(f"claw-bench:{workload}:{seed}")

    def stream() -> Iterator[BenchPrompt]:
        while True:
            kind = workload if workload != "mixed" else ("long" if rng.random() < LONG_SHARE_IN_MIXED else "short")
            yield synthetic_prompt(kind, rng)

    return stream()


def load_workload_file(path: str | Path) -> list[BenchPrompt]:
    """JSONL, one request per line: {"prompt": str} or {"messages": [...]}, optional "model", "max_tokens",
    "options"; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"cannot read {path}: {exc.strerror or exc}") from None
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise WorkloadError(f"{where}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise WorkloadError(f"{where}: expected a JSON object")
        if isinstance(item.get("messages"), list) and item["messages"]:
            messages = item["messages"]
        elif isinstance(item.get("prompt"), str) and item["prompt"]:
            messages = [{"role": "user", "content": item["prompt"]}]
        else:
            raise WorkloadError(f'{where}: needs "prompt" (a string) or "messages" (a list)')
        max_tokens = item.get("max_tokens", 256)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            raise WorkloadError(f"{where}: max_tokens must be a positive integer")
        model = item.get("model")
        if model is not None and not isinstance(model, str):
            raise WorkloadError(f"{where}: model must be a string")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise WorkloadError(f"{where}: options must be an object")
        prompts.append(BenchPrompt(messages, max_tokens, "file", model, options))
    if not prompts:
        raise WorkloadError(f"{path}: no requests in the file")
    return prompts


def file_prompts(prompts: list[BenchPrompt]) -> Iterator[BenchPrompt]:
    while True:
        yield from prompts


# ---- one request -------------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    kind: str
    model: str
    started: float  # wall clock
    status: str = "ok"  # ok | error
    http_status: int | None = None
    error: str | None = None
    request_id: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    prompt_tokens: int = 0


@dataclass
class BenchConfig:
    url: str
    model: str
    workload: str = "mixed"
    concurrency: int = 4
    requests: int | None = None
    duration_s: float | None = None
    rate: float | None = None  # open-loop arrivals per second (Poisson); None = closed loop
    api: str = "ollama"  # "ollama" (/api/chat) | "openai" (/v1/chat/completions)
    seed: int = 0
    timeout_s: float = 600.0
    token: str = ""

    def total_label(self) -> str:
        return f"{self.requests} requests" if self.requests else f"{self.duration_s:g} s"


async def send_one(client: httpx.AsyncClient, cfg: BenchConfig, prompt: BenchPrompt) -> BenchResult:
    model = prompt.model or cfg.model
    result = BenchResult(kind=prompt.kind, model=model, started=time.time())
    t0 = time.perf_counter()
    last_token: float | None = None
    if cfg.api == "openai":
        path = "/v1/chat/completions"
        body = {
            "model": model,
            "messages": prompt.messages,
            "max_tokens": prompt.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **prompt.options,
        }
    else:
        path = "/api/chat"
        body = {
            "model": model,
            "messages": prompt.messages,
            "stream": True,
            "options": {"num_predict": prompt.max_tokens, **prompt.options},
        }
    try:
        async with client.stream("POST", path, json=body) as response:
            result.http_status = response.status_code
            result.request_id = response.headers.get("x-claw-request-id")
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                result.status, result.error = "error", _error_text(text) or f"HTTP {response.status_code}"
                return result
            async for line in response.aiter_lines():
                event = _parse_line(line, cfg.api)
                if event is None:
                    continue
                if event.get("error"):
                    result.status, result.error = "error", str(event["error"])
                    break
                if event.get("text"):
                    now = time.perf_counter()
                    if result.ttft_s is None:
                        result.ttft_s = now - t0
                    elif last_token is not None:
                        result.itl_s.append(now - last_token)
                    last_token = now
                    result.completion_tokens += 1
                if event.get("usage"):
                    result.prompt_tokens, completion = event["usage"]
                    result.completion_tokens = completion or result.completion_tokens
    except httpx.HTTPError as exc:
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
    result.latency_s = time.perf_counter() - t0
    return result


def _error_text(text: str) -> str:
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text.strip()[:200]
    return error.get("message", str(error)) if isinstance(error, dict) else str(error)


def _parse_line(line: str, api: str) -> dict[str, Any] | None:
    """{text?, usage?: (prompt, completion), error?} from one NDJSON line or one SSE `data:` line."""
    line = line.strip()
    if api == "openai":
        if not line.startswith("data:"):
            return None
        line = line[5:].strip()
        if line == "[DONE]":
            return None
    if not line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if "error" in obj:
        error = obj["error"]
        return {"error": error.get("message", error) if isinstance(error, dict) else error}
    if api == "openai":
        text = "".join((c.get("delta") or {}).get("content") or "" for c in obj.get("choices") or [])
        usage = obj.get("usage")
        return {
            "text": text,
            "usage": (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)) if usage else None,
        }
    message = obj.get("message") or {}
    text = message.get("content") or message.get("thinking") or obj.get("response") or ""
    usage = (obj.get("prompt_eval_count", 0), obj.get("eval_count", 0)) if obj.get("done") else None
    return {"text": text, "usage": usage}


# ---- the run -----------------------------------------------------------------------------------------------------
class Bench:
    """Runs the load: a closed loop of `concurrency` workers, or open-loop Poisson arrivals at `rate` per second
    with at most `concurrency` in flight. Stops after `requests` requests or `duration_s` seconds."""

    def __init__(
        self, cfg: BenchConfig, prompts: Iterator[BenchPrompt], on_progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.prompts = prompts
        self.on_progress = on_progress
        self.results: list[BenchResult] = []
        self.errors = 0
        self.started_at = 0.0
        self.ended_at = 0.0
        self._issued = 0
        self._rng = random.Random(f"claw-bench-arrivals:{cfg.seed}")

    def _headers(self) -> dict[str, Any]:
        return {"Authorization": f"Bearer {self.cfg.token}"} if self.cfg.token else {}

    def _take(self, deadline: float | None) -> BenchPrompt | None:
        if self.cfg.requests is not None and self._issued >= self.cfg.requests:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return None
        self._issued += 1
        return next(self.prompts)

    def _done(self, result: BenchResult) -> None:
        self.results.append(result)
        if result.status != "ok":
            self.errors += 1
        if self.on_progress is not None:
            self.on_progress(len(self.results), self.errors)

    async def run(self) -> list[BenchResult]:
        cfg = self.cfg
        timeout = httpx.Timeout(connect=10.0, read=cfg.timeout_s, write=30.0, pool=cfg.timeout_s)
        limits = httpx.Limits(max_connections=cfg.concurrency + 4, max_keepalive_connections=cfg.concurrency + 4)
        deadline = time.monotonic() + cfg.duration_s if cfg.duration_s else None
        self.started_at = time.time()
        async with httpx.AsyncClient(
            base_url=cfg.url, timeout=timeout, limits=limits, headers=self._headers()
        ) as client:
            if cfg.rate:
                await self._open_loop(client, deadline, cfg.rate)
            else:
                await asyncio.gather(*(self._worker(client, deadline) for _ in range(cfg.concurrency)))
        self.ended_at = time.time()
        return self.results

    async def _worker(self, client: httpx.AsyncClient, deadline: float | None) -> None:
        while (prompt := self._take(deadline)) is not None:
            self._done(await send_one(client, self.cfg, prompt))

    async def _open_loop(self, client: httpx.AsyncClient, deadline: float | None, rate: float) -> None:
        slots = asyncio.Semaphore(self.cfg.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one(prompt: BenchPrompt) -> None:
            try:
                self._done(await send_one(client, self.cfg, prompt))
            finally:
                slots.release()

        while True:
            await asyncio.sleep(self._rng.expovariate(rate))
            prompt = self._take(deadline)
            if prompt is None:
                break
            await slots.acquire()
            task = asyncio.create_task(one(prompt))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


# ---- energy from the gateway -------------------------------------------------------------------------------------
async def claw_summary(client: httpx.AsyncClient) -> dict[str, Any] | None:
    """The gateway's live summary, or None when the URL is not a claw gateway."""
    try:
        response = await client.get("/claw/v1/summary", timeout=30)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("schema") else None


async def _recent_records(client: httpx.AsyncClient, wanted: int) -> list[dict[str, Any]]:
    """The gateway's newest `wanted` records, a page at a time."""
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while len(rows) < wanted:
        try:
            response = await client.get("/claw/v1/requests", params=params, timeout=30)
            page = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            break
        rows += page.get("requests") or []
        if not page.get("next_before"):
            break
        params = {"limit": 1000, "before": page["next_before"]}
    return rows


async def gateway_records(
    client: httpx.AsyncClient, ids: set[str], wait_s: float = ENERGY_WAIT_S
) -> list[dict[str, Any]]:
    """The gateway's records of these requests, once their energy is final (or after `wait_s`)."""
    deadline = time.monotonic() + wait_s
    found: dict[str, dict[str, Any]] = {}
    while True:
        found = {r["id"]: r for r in await _recent_records(client, len(ids) + 2_000) if r.get("id") in ids}
        if len(found) == len(ids) and all(r.get("energy_final") for r in found.values()):
            return list(found.values())
        if time.monotonic() >= deadline:
            return list(found.values())
        await asyncio.sleep(0.1)


ENERGY_KEYS = (
    "total_j",
    "active_j",
    "load_j",
    "unmetered_j",
    "idle_j",
    "pending_j",
    "active_s",
    "load_s",
    "unmetered_s",
    "idle_s",
)
GOVERNOR_SUMS = (
    "downclocked_s",
    "wakes",
    "idle_j_downclocked",
    "idle_s_downclocked",
    "idle_j_normal",
    "idle_s_normal",
    "models_unloaded",
)


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float | None:
    a, b = after.get(key), before.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    return a - b


def window_energy(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[dict[str, float], float | None]:
    """The session's energy totals over the bench window: `after` minus `before` of the gateway's summaries."""
    if not before or not after:
        return dict.fromkeys(ENERGY_KEYS, 0.0), None
    energy = {key: _delta(after["energy"], before["energy"], key) or 0.0 for key in ENERGY_KEYS}
    return energy, _delta(after["energy"], before["energy"], "counter_j")


def window_governor(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    if not before or not after:
        return {}
    b, a = before.get("governor") or {}, after.get("governor") or {}
    out = {"enabled": a.get("enabled"), "mode": a.get("mode")}
    for key in GOVERNOR_SUMS:
        value = _delta(a, b, key)
        out[key] = round(value, 3) if value is not None else None
    for state, key in (("downclocked", "idle_power_w_downclocked"), ("normal", "idle_power_w_normal")):
        joules, seconds = out.get(f"idle_j_{state}"), out.get(f"idle_s_{state}")
        out[key] = round(joules / seconds, 3) if joules and seconds else None
    return out


def build_bench_summary(
    cfg: BenchConfig,
    bench: Bench,
    records: list[dict[str, Any]],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    demo: bool,
) -> Summary:
    """The bench run as a summary (`claw.summary/1`), with a `bench` section of client-side measurements."""
    energy, counter_j = window_energy(before, after)
    by_id = {r["id"]: record_from_json(r) for r in records}
    results = bench.results
    stored = []
    for result in results:
        record = by_id.get(result.request_id or "")
        if record is None:  # not a claw gateway, or the record aged out: keep the client's view
            record = record_from_json(
                {
                    "id": result.request_id or uuid.uuid4().hex[:16],
                    "model": result.model,
                    "status": result.status,
                    "completion_tokens": result.completion_tokens,
                    "prompt_tokens": result.prompt_tokens,
                    "times": {
                        "arrival": result.started,
                        "first_token": result.started + result.ttft_s if result.ttft_s is not None else None,
                        "end": result.started + (result.latency_s or 0.0),
                    },
                }
            )
        stored.append(record)
    duration = bench.ended_at - bench.started_at
    itl_ms = [x * 1000 for r in results for x in r.itl_s]
    session = {
        "id": f"bench-{time.strftime('%Y%m%d-%H%M%S', time.localtime(bench.started_at))}",
        "started_at": bench.started_at,
        "ended_at": bench.ended_at,
        "duration_s": round(duration, 3),
        "host": socket.gethostname(),
        "demo": demo,
        "gateway_session": (after or {}).get("session", {}).get("id"),
    }
    completion = sum(r.completion_tokens for r in results if r.status == "ok")
    bench_section = {
        "url": cfg.url,
        "model": cfg.model,
        "api": cfg.api,
        "workload": cfg.workload,
        "concurrency": cfg.concurrency,
        "rate_per_s": cfg.rate,
        "requests_sent": len(results),
        "errors": bench.errors,
        "error_samples": sorted({r.error for r in results if r.error})[:5],
        "client_ttft_ms": percentiles([r.ttft_s * 1000 for r in results if r.ttft_s is not None]),
        "client_latency_ms": percentiles(
            [r.latency_s * 1000 for r in results if r.latency_s is not None and r.status == "ok"]
        ),
        "itl_ms": percentiles(itl_ms),
        "client_tokens_per_s": round(completion / duration, 3) if duration > 0 else None,
        "energy_measured": after is not None
        and (after.get("energy") or {}).get("total_j") is not None
        and bool(energy["total_j"]),
        "records_matched": sum(1 for r in results if r.request_id in by_id),
    }
    return summarize(
        session=session,
        gpus=(after or {}).get("gpus") or [],
        records=stored,
        energy=energy,
        counter_j=counter_j,
        power_stddev_w=((after or {}).get("energy") or {}).get("power_stddev_w"),
        governor=window_governor(before, after),
        alerts=(after or {}).get("alerts") or {},
        bench=bench_section,
    )


def render_report(summary: Summary) -> str:
    """What `claw bench` prints: the run, percentiles, throughput and energy."""
    b, e, eff = summary.bench or {}, summary.energy, summary.efficiency

    def ms(d: dict[str, Any]) -> str:
        return "  ".join(f"{p} {d[p]:8.1f}" if d.get(p) is not None else f"{p}      n/a" for p in ("p50", "p95", "p99"))

    def num(value: float | None, fmt: str, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:{fmt}}{unit}"

    lines = [
        f"claw bench: {b['requests_sent']} requests ({b['errors']} errors) to {b['model']} via {b['url']} "
        f"[{b['workload']}, concurrency {b['concurrency']}"
        + (f", {b['rate_per_s']:g}/s" if b["rate_per_s"] else "")
        + f"] in {summary.session['duration_s']:.1f} s",
        f"  TTFT ms        {ms(b['client_ttft_ms'])}",
        f"  ITL ms         {ms(b['itl_ms'])}",
        f"  latency ms     {ms(b['client_latency_ms'])}",
        f"  throughput     {num(b['client_tokens_per_s'], '.1f', ' tokens/s')}, "
        f"{summary.tokens.completion} completion tokens",
    ]
    if b["energy_measured"]:
        lines += [
            f"  energy         {num(e.total_j, ',.1f', ' J')} in the window: {num(e.active_j, ',.1f', ' J')} "
            f"requests, {num(e.load_j, ',.1f', ' J')} model loads, "
            f"{num(e.unmetered_j, ',.1f', ' J')} unmetered, {num(e.idle_j, ',.1f', ' J')} idle; "
            f"avg {num(e.avg_power_w, '.1f', ' W')}, idle {num(e.idle_power_w, '.1f', ' W')}",
            f"  efficiency     {num(eff.tokens_per_joule, '.3f', ' tok/J all-in')} "
            f"({num(eff.joules_per_token, '.3f', ' J/token')}), "
            f"{num(eff.active_tokens_per_joule, '.3f', ' tok/J requests')}",
        ]
        g = summary.governor
        if g.enabled or g.downclocked_s:
            lines.append(
                f"  governor       {g.mode}: downclocked {num(g.downclocked_s, '.1f', ' s')}, "
                f"{g.wakes or 0} wakes, wake P95 {num(g.wake_latency_ms_p95, '.2f', ' ms')}"
            )
    else:
        lines.append("  energy         not measured (the URL is not a claw gateway with GPU telemetry)")
    if b["error_samples"]:
        lines.append("  errors seen    " + "; ".join(b["error_samples"]))
    return "\n".join(lines) + "\n"
