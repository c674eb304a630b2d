"""Per-request energy on a real GPU: claw's `energy_j` against the GPU energy counter read around each request.

One command does everything. It starts a guard (every NVML setter raises), the decode backend
(benchmarks/device/decode_backend.py: an 8B-shaped Llama in bf16 behind Ollama's API), and `claw serve` in front of
it with real NVML telemetry and the governor off. Then it drives four scenarios through claw's gateway:

  a  sequential chats of different lengths (64 … 512 tokens) with idle gaps, streamed and not
  b  4 concurrent identical chats (150 tokens) on the serial backend (one computes, the others queue)
  d  GPU work that no request asks for (the backend's /burn, straight to the backend), nothing in flight
  c  the backend restarted in batched mode (4 sequences decode together), 4 concurrent identical chats

and compares each of claw's records (`/claw/v1/requests`, matched through the `X-Claw-Request-Id` each answer
carries, checked against the tag that starts every prompt) with the backend's ground-truth line for the same tag.
Targets: a and b median |error| ≤ 3 %, worst ≤ 8 %; c the batch's sum within 3 % and each request's share within
15 % of its token share; d the burn's energy lands in `unmetered_j`, not in `idle_j`.

Writes into $OUT (default /tmp/attribution-out): results.json (rows, checks, claw's records and summaries, the
truth lines), report.txt (the table printed at the end), truth.jsonl, serve.log, backend.log, config.toml.

On a GPU machine whose Python (3.12) has torch, aiohttp, httpx and nvidia-ml-py but not the rest of claw's
dependencies, from the repository root, with the wheels of the rest in .whl/ (git-ignored; the whole run takes
about 4 minutes):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 && \
        python3 benchmarks/device/attribution_gpu.py 2>&1 | tee $OUT/run.log

.whl/ holds textual, tomlkit, starlette, uvicorn, platformdirs, httptools, rich,
markdown-it-py, mdit-py-plugins, linkify-it-py, uc-micro-py, mdurl and pygments (about 3 MB), fetched with
`pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
--platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 -d .whl NAME==VERSION` at the versions of
the development environment. `--quick` sends 3 sequential requests instead of 6 and, unless `--scenarios` says
otherwise, runs scenario a alone (a smoke test).
Here, without a GPU: `--cpu-smoke` runs the same flow with the backend's tiny shape on the CPU and the test suite's
fake NVML (a constant 80 W) for claw and the backend alike, which proves the plumbing, not the physics:

    .venv/bin/python benchmarks/device/attribution_gpu.py --cpu-smoke --backend-python /tmp/devenv/bin/python

(`--backend-python` names an interpreter with torch and aiohttp when claw's own has none).
Never changes a GPU setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
BACKEND = ROOT / "benchmarks" / "device" / "decode_backend.py"
FAKE_NVML = ROOT / "tests" / "fake_nvml"
MODEL = "llama8b:bf16"

GUARD = """
import pynvml as _nvml

SETTERS = (
    "nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceSetMemoryLockedClocks",
    "nvmlDeviceResetMemoryLockedClocks", "nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetApplicationsClocks",
    "nvmlDeviceResetApplicationsClocks", "nvmlDeviceSetPersistenceMode", "nvmlDeviceSetComputeMode",
)


def _refuse(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"refused NVML setter {name} on a borrowed GPU")
    return refuse


for _name in set(dir(_nvml)) | set(SETTERS):
    if _name.startswith(("nvmlDeviceSet", "nvmlDeviceReset", "nvmlDeviceClear")):
        setattr(_nvml, _name, _refuse(_name))
"""

GUARD_CHECK = """
import pynvml
try:
    pynvml.nvmlDeviceSetGpuLockedClocks(None, 0, 0)
except RuntimeError as exc:
    print("refused" if "refused" in str(exc) else f"other: {exc}")
else:
    print("NOT REFUSED")
"""

FILLER = (
    "Explain, step by step and with care, how a transformer decodes one token at a time with a key-value cache, "
    "what limits its speed on a GPU, and where the energy of each token goes."
)

SEQUENTIAL = [(64, True), (128, False), (256, True), (512, False), (96, True), (300, True)]
CONCURRENT_TOKENS = 150
TARGETS = {"median_pct": 3.0, "worst_pct": 8.0, "batch_sum_pct": 3.0, "share_pct": 15.0}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_tag(scenario: str, index: int) -> str:
    """16 characters: the backend takes a request's tag from the first 16 characters of its last user message."""
    return f"{scenario}{index:02d}-{uuid.uuid4().hex}"[:16]


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, ValueError, OSError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- processes -----------------------------------------------------------------------------------------------------
class Run:
    """The processes of one run (guard, backend, claw serve) and where they write."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="claw-attribution-"))
        (self.work / "guard").mkdir()
        (self.work / "guard" / "sitecustomize.py").write_text(GUARD)
        paths = [str(self.work / "guard")]
        if args.cpu_smoke:
            paths.append(str(FAKE_NVML))
        paths += [str(ROOT), os.environ.get("PYTHONPATH", "")]
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), PYTHONUNBUFFERED="1")
        self.truth_path = self.out / "truth.jsonl"
        self.truth_path.write_text("")
        self.backend_port = free_port()
        self.gateway_port = free_port()
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.backend_url = f"http://127.0.0.1:{self.backend_port}"
        self.backend: subprocess.Popen | None = None
        self.serve: subprocess.Popen | None = None
        self.backend_log = open(self.out / "backend.log", "w")
        self.serve_log = open(self.out / "serve.log", "w")

    def guard_check(self) -> str:
        done = subprocess.run(
            [self.args.backend_python, "-c", GUARD_CHECK], env=self.env, capture_output=True, text=True, timeout=60
        )
        return (done.stdout.strip() or done.stderr.strip()[-300:]) or "no answer"

    def start_backend(self, batched: int = 0) -> None:
        command = [self.args.backend_python, str(BACKEND), "--port", str(self.backend_port), "--model", MODEL]
        command += ["--truth", str(self.truth_path)]
        if batched:
            command += ["--batched", str(batched)]
        if self.args.cpu_smoke:
            command += ["--tiny", "--pace-ms", "15"]
        self.backend_log.write(f"\n==== {' '.join(command)}\n")
        self.backend_log.flush()
        started = time.time()
        self.backend = subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=self.backend_log, stderr=subprocess.STDOUT
        )
        wait_until(
            lambda: self._alive(self.backend, "backend") and httpx.get(self.backend_url + "/api/version", timeout=2),
            900,
            "the decode backend",
        )
        log(f"backend up ({'batched ' + str(batched) if batched else 'serial'}) in {time.time() - started:.1f} s")

    def stop_backend(self) -> None:
        stop(self.backend)
        self.backend = None

    def write_config(self) -> Path:
        source = "nvml"
        config = self.work / "config.toml"
        config.write_text(
            textwrap.dedent(f"""
            [gateway]
            listen = "127.0.0.1:{self.gateway_port}"
            first_token_timeout_s = 600.0
            queue_timeout_s = 600.0

            [telemetry]
            source = "{source}"

            [governor]
            enabled = false
            allow_clock_control = false
            state_file = "{self.work / "governor.json"}"

            [store]
            path = "{self.work / "sessions.db"}"

            [[backends]]
            name = "decode"
            kind = "ollama"
            url = "{self.backend_url}"
            gpu = 0
            health_interval_s = 2.0
            """)
        )
        (self.out / "config.toml").write_text(config.read_text())
        return config

    def start_serve(self) -> None:
        config = self.write_config()
        env = dict(self.env, CLAW_CONFIG=str(config))
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "claw_tui", "serve"],
            env=env,
            cwd=ROOT,
            stdout=self.serve_log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: self._alive(self.serve, "claw serve") and httpx.get(self.gateway + "/claw/v1/status", timeout=2),
            120,
            "claw serve",
        )
        log(f"claw serve up on {self.gateway}")

    def wait_backend_in_claw(self) -> None:
        def up() -> bool:
            rows = httpx.get(self.gateway + "/claw/v1/backends", timeout=5).json()["backends"]
            return any(b["state"] == "up" and (b.get("models") or 0) >= 1 for b in rows)

        wait_until(up, 120, "claw to see the backend up")

    def _alive(self, process: subprocess.Popen | None, name: str) -> bool:
        if process is None or process.poll() is not None:
            raise SystemExit(f"{name} exited early (status {process.returncode if process else None}); see {self.out}")
        return True

    def close(self) -> None:
        stop(self.serve)
        stop(self.backend)
        self.serve_log.close()
        self.backend_log.close()


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- the client ----------------------------------------------------------------------------------------------------
async def chat(client: httpx.AsyncClient, scenario: str, tag: str, num_predict: int, stream: bool) -> dict[str, Any]:
    """One chat through claw's gateway; what the client saw of it."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"{tag} {FILLER}"}],
        "stream": stream,
        "options": {"num_predict": num_predict},
    }
    sent: dict[str, Any] = {"scenario": scenario, "tag": tag, "num_predict": num_predict, "stream": stream}
    sent["t_send"] = time.time()
    chunks = 0
    final: dict[str, Any] = {}
    async with client.stream("POST", "/api/chat", json=body, headers={"X-Truth-Tag": tag}) as response:
        sent["http_status"] = response.status_code
        sent["claw_id"] = response.headers.get("x-claw-request-id")
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if obj.get("done") is False:
                chunks += 1
            elif "error" in obj:
                sent["error"] = obj["error"]
            else:
                final = obj
    sent["t_end"] = time.time()
    sent["chunks"] = chunks
    sent["final"] = {k: v for k, v in final.items() if k not in ("message", "model", "created_at")}
    return sent


async def sequential(client: httpx.AsyncClient, plan: list[tuple[int, bool]], gap_s: float, sent: list[dict]) -> None:
    for index, (tokens, stream) in enumerate(plan, 1):
        sent.append(await chat(client, "a", new_tag("a", index), tokens, stream))
        took = sent[-1]["t_end"] - sent[-1]["t_send"]
        log(f"a{index:02d}: {tokens} tokens, {'stream' if stream else 'whole'}, {took:.2f} s")
        await asyncio.sleep(gap_s)


async def concurrent(client: httpx.AsyncClient, scenario: str, tokens: list[int]) -> list[dict]:
    started = time.time()
    results = await asyncio.gather(
        *(chat(client, scenario, new_tag(scenario, i), n, True) for i, n in enumerate(tokens, 1))
    )
    log(f"{scenario}: {len(tokens)} concurrent chats in {time.time() - started:.2f} s")
    return list(results)


async def drive(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """All scenarios, in the order a, b, d, c (c restarts the backend); a failure ends them, not the report."""
    driven: dict[str, Any] = {"sent": [], "summaries": {}, "burn": None, "meters": {}, "error": None}
    sent = driven["sent"]
    timeout = httpx.Timeout(900, connect=10)
    async with httpx.AsyncClient(base_url=run.gateway, timeout=timeout) as client:
        try:
            await asyncio.sleep(args.settle_s)  # idle first, so claw knows the resident model's idle power
            driven["summaries"]["start"] = await get_json(client, "/claw/v1/summary")
            if "a" in args.scenarios:
                await sequential(client, SEQUENTIAL[:3] if args.quick else SEQUENTIAL, args.gap_s, sent)
            if "b" in args.scenarios:
                sent += await concurrent(client, "b", [CONCURRENT_TOKENS] * 4)
                await asyncio.sleep(args.gap_s)
            if "d" in args.scenarios:
                driven["burn"] = await burn_scenario(client, run, args)
            driven["meters"]["serial"] = await backend_meter(run)
            if "c" in args.scenarios:
                run.stop_backend()
                await asyncio.to_thread(run.start_backend, 4)
                await asyncio.to_thread(run.wait_backend_in_claw)
                await asyncio.sleep(args.gap_s)
                sent += await concurrent(client, "c", [CONCURRENT_TOKENS] * 4)
                await asyncio.sleep(args.gap_s)
                driven["meters"]["batched"] = await backend_meter(run)
        except Exception as exc:
            driven["error"] = f"{type(exc).__name__}: {exc}"
            log(f"scenarios stopped: {driven['error']}")
        driven["records"] = await final_records(client, {s["claw_id"] for s in sent if s.get("claw_id")})
        driven["summaries"]["end"] = await get_json(client, "/claw/v1/summary")
        driven["status"] = await get_json(client, "/claw/v1/status")
    return driven


async def backend_meter(run: Run) -> dict[str, Any] | None:
    """How the backend's counter reader did: reads, cost of a read, the counter's step period."""
    try:
        async with httpx.AsyncClient(base_url=run.backend_url, timeout=10) as backend:
            return (await backend.get("/meter")).json()
    except (httpx.HTTPError, ValueError):
        return None


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path, timeout=60)
    response.raise_for_status()
    return response.json()


async def burn_scenario(client: httpx.AsyncClient, run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """A quiet stretch (claw's idle power), then the burn with nothing in flight, then a quiet tail."""
    quiet_before = await get_json(client, "/claw/v1/summary")
    t_quiet = time.time()
    await asyncio.sleep(args.quiet_s)
    before = await get_json(client, "/claw/v1/summary")
    t_before = time.time()
    async with httpx.AsyncClient(base_url=run.backend_url, timeout=300) as backend:
        response = await backend.post("/burn", json={"seconds": args.burn_s, "tag": "burn"})
        response.raise_for_status()
        truth = response.json()
    log(f"d: burn of {args.burn_s} s: {truth.get('energy_j')} J by the counter")
    await asyncio.sleep(args.tail_s)
    after = await get_json(client, "/claw/v1/summary")
    t_after = time.time()
    return {
        "truth": truth,
        "quiet": {"before": quiet_before["energy"], "after": before["energy"], "seconds": t_before - t_quiet},
        "before": before["energy"],
        "after": after["energy"],
        "window_s": t_after - t_before,
    }


async def final_records(client: httpx.AsyncClient, ids: set[str], wait_s: float = 60) -> list[dict]:
    """Every record of the run, once the energy of the ones we sent is final."""
    deadline = time.time() + wait_s
    while True:
        rows = (await get_json(client, "/claw/v1/requests?limit=1000"))["requests"]
        mine = [r for r in rows if r["id"] in ids]
        if (len(mine) == len(ids) and all(r.get("energy_final") for r in mine)) or time.time() > deadline:
            if time.time() > deadline:
                final = sum(1 for r in mine if r.get("energy_final"))
                log(f"warning: {final}/{len(ids)} records final after {wait_s} s")
            return rows
        await asyncio.sleep(0.5)


def read_truth(path: Path, tags: set[str], wait_s: float = 30) -> list[dict]:
    deadline = time.time() + wait_s
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        have = {line.get("tag") for line in lines if line.get("type") == "request"}
        in_batches = {q["tag"] for line in lines if line.get("type") == "batch" for q in line["requests"]}
        if (tags <= have and tags <= in_batches) or time.time() > deadline:
            return lines
        time.sleep(0.5)


# ---- analysis ------------------------------------------------------------------------------------------------------
def pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return 100.0 * (value - reference) / reference


def match(sent: list[dict], records: list[dict], truth: list[dict]) -> list[dict]:
    """One row per request sent: claw's record (by the id its answer carried, else by time) and the truth line."""
    by_id = {r["id"]: r for r in records}
    truth_by_tag = {t["tag"]: t for t in truth if t.get("type") == "request"}
    shares = step_shares(truth)
    used: set[str] = set()
    rows = []
    for s in sent:
        record = by_id.get(s.get("claw_id") or "")
        if record is None:  # no header: the record that arrived closest to when it was sent
            candidates = [r for r in records if r["id"] not in used and r.get("kind", "request") == "request"]
            candidates.sort(key=lambda r: abs((r["times"]["arrival"] or 0) - s["t_send"]))
            record = candidates[0] if candidates and abs(candidates[0]["times"]["arrival"] - s["t_send"]) < 1 else None
        if record is not None:
            used.add(record["id"])
        rows.append(row_of(s, record, truth_by_tag.get(s["tag"]), shares.get(s["tag"])))
    return rows


def step_shares(truth: list[dict]) -> dict[str, float | None]:
    """Each batched request's share of the forward steps it took part in, scaled so that a batch's shares add up to
    the batch's energy (the short gaps between steps are spread in proportion)."""
    shares: dict[str, float | None] = {}
    for batch in (t for t in truth if t.get("type") == "batch"):
        compute, energy = batch.get("compute_j"), batch.get("energy_j")
        scale = energy / compute if compute and energy else None
        for q in batch["requests"]:
            shares[q["tag"]] = q["share_j"] * scale if scale and q.get("share_j") is not None else None
    return shares


def row_of(sent: dict, record: dict | None, truth: dict | None, share_j: float | None) -> dict[str, Any]:
    """In serial mode the truth is the counter over the request's own compute; in batched mode, where windows
    overlap, it is the request's share of each forward step (see decode_backend.py)."""
    row: dict[str, Any] = {
        "scenario": sent["scenario"],
        "tag": sent["tag"],
        "stream": sent["stream"],
        "num_predict": sent["num_predict"],
        "claw_id": record["id"] if record else None,
        "client_chunks": sent["chunks"],
        "client_s": round(sent["t_end"] - sent["t_send"], 3),
    }
    if record:
        row.update(
            claw_j=record["energy_j"],
            claw_prefill_j=record["prefill_j"],
            claw_decode_j=record["decode_j"],
            claw_load_j=record.get("load_j"),
            attribution=record.get("attribution"),
            energy_final=record.get("energy_final"),
            claw_tokens=record["completion_tokens"],
            server_wait_ms=(record.get("server") or {}).get("wait_ms"),
        )
    if truth:
        busy = (truth["t_last_token"] or 0) - (truth["t_prefill_start"] or 0)
        decode = (truth["t_last_token"] or 0) - (truth["t_first_token"] or 0)
        batched = truth.get("mode", "serial") != "serial"
        row.update(
            truth_j=share_j if batched else truth["energy_j"],
            truth_kind="step share" if batched else "window",
            truth_window_j=truth["energy_j"],
            truth_tokens=truth["completion_tokens"],
            truth_busy_s=round(busy, 3),
            truth_wait_s=round((truth["t_prefill_start"] or 0) - truth["t_assigned"], 3),
            decode_tok_s=round((truth["completion_tokens"] - 1) / decode, 1) if decode > 0 else None,
            truth_mean_w=round(truth["energy_j"] / busy, 1) if truth["energy_j"] and busy > 0 else None,
            batch=truth.get("batch"),
        )
    row["error_pct"] = pct(row.get("claw_j"), row.get("truth_j"))
    row["tokens_agree"] = row.get("claw_tokens") == row.get("truth_tokens")
    return row


def scenario_check(rows: list[dict], name: str, targets: bool = True) -> dict[str, Any] | None:
    errors = [abs(r["error_pct"]) for r in rows if r["scenario"] == name and r["error_pct"] is not None]
    count = sum(1 for r in rows if r["scenario"] == name)
    if not count:
        return None
    if len(errors) < count:
        return {"requests": count, "compared": len(errors), "pass": False, "why": "some requests have no comparison"}
    median, worst = statistics.median(errors), max(errors)
    return {
        "requests": count,
        "median_abs_error_pct": round(median, 2),
        "worst_abs_error_pct": round(worst, 2),
        "pass": median <= TARGETS["median_pct"] and worst <= TARGETS["worst_pct"] if targets else None,
    }


def batched_check(rows: list[dict], truth: list[dict]) -> dict[str, Any] | None:
    mine = [r for r in rows if r["scenario"] == "c"]
    if not mine:
        return None
    tags = {r["tag"] for r in mine}
    batches = [t for t in truth if t.get("type") == "batch" and any(q["tag"] in tags for q in t["requests"])]
    shares_truth = {q["tag"]: q.get("share_j") for b in batches for q in b["requests"]}
    truth_j = sum(b["energy_j"] or 0 for b in batches) if all(b.get("energy_j") for b in batches) else None
    claw_j = sum(r.get("claw_j") or 0 for r in mine)
    tokens = sum(r.get("truth_tokens") or 0 for r in mine)
    share_sum = sum(v or 0 for v in shares_truth.values())
    per_request = []
    for r in mine:
        claw_share = (r.get("claw_j") or 0) / claw_j if claw_j else None
        token_share = (r.get("truth_tokens") or 0) / tokens if tokens else None
        step_share = (shares_truth.get(r["tag"]) or 0) / share_sum if share_sum else None
        per_request.append(
            {
                "tag": r["tag"],
                "claw_j": r.get("claw_j"),
                "claw_share": claw_share,
                "token_share": token_share,
                "step_share": step_share,
                "share_vs_tokens_pct": pct(claw_share, token_share),
                "share_vs_steps_pct": pct(claw_share, step_share),
            }
        )
    sum_error = pct(claw_j, truth_j)
    shares_ok = all(
        p["share_vs_tokens_pct"] is not None and abs(p["share_vs_tokens_pct"]) <= TARGETS["share_pct"]
        for p in per_request
    )
    return {
        "batches": [b["batch"] for b in batches],
        "batch_truth_j": truth_j,
        "batch_compute_j": sum(b.get("compute_j") or 0 for b in batches),
        "claw_sum_j": claw_j,
        "sum_error_pct": sum_error,
        "requests": per_request,
        "pass": sum_error is not None and abs(sum_error) <= TARGETS["batch_sum_pct"] and shares_ok,
    }


def burn_check(burn: dict | None) -> dict[str, Any] | None:
    if not burn:
        return None

    def delta(key: str, a: dict, b: dict) -> float | None:
        return None if a.get(key) is None or b.get(key) is None else b[key] - a[key]

    quiet = burn["quiet"]
    quiet_s = delta("idle_s", quiet["before"], quiet["after"]) or quiet["seconds"]
    idle_w = (delta("total_j", quiet["before"], quiet["after"]) or 0) / quiet["seconds"]
    keys = ("total_j", "idle_j", "unmetered_j", "active_j", "load_j", "pending_j")
    deltas = {k: delta(k, burn["before"], burn["after"]) for k in keys}
    burn_j = burn["truth"].get("energy_j")
    burn_s = burn["truth"]["t_end"] - burn["truth"]["t_start"]
    excess = None if burn_j is None else burn_j - idle_w * burn_s  # the burn beyond what idling would have drawn
    unmetered, idle = deltas["unmetered_j"], deltas["idle_j"]
    idle_expected = idle_w * burn["window_s"]
    result = {
        "burn_s": round(burn_s, 3),
        "burn_truth_j": burn_j,
        "idle_w_before": round(idle_w, 1),
        "quiet_s": round(quiet_s, 2),
        "excess_j": excess,
        "window_s": round(burn["window_s"], 2),
        "deltas": deltas,
        "idle_if_all_idle_j": round(idle_expected, 1),
    }
    if excess is not None and burn_j and excess < 0.05 * burn_j:
        result.update(
            **{"pass": None, "why": "the burn drew no more than idling (constant fake power): nothing to tell"}
        )
    elif unmetered is None or idle is None or excess is None:
        result.update(**{"pass": False}, why="no unmetered_j in claw's summary, or no counter reading")
    else:
        result["unmetered_share_of_excess_pct"] = round(100 * unmetered / excess, 1) if excess else None
        result["pass"] = unmetered >= 0.8 * excess and idle <= idle_expected + 0.2 * excess
    return result


def analyse(driven: dict[str, Any], truth: list[dict], run: Run, guard: str) -> dict[str, Any]:
    rows = match(driven["sent"], driven["records"], truth)
    start = next((t for t in truth if t.get("type") == "start"), {})
    checks = {
        "sequential": scenario_check(rows, "a"),
        "serial_concurrent": scenario_check(rows, "b"),
        "batched": batched_check(rows, truth),
        "batched_per_request": scenario_check(rows, "c", targets=False),
        "unmetered_burn": burn_check(driven["burn"]),
    }
    energy = (driven["summaries"].get("end") or {}).get("energy", {})
    parts = ("active_j", "load_j", "unmetered_j", "idle_j", "pending_j")
    conservation = None
    if energy.get("total_j") is not None:
        conservation = {"total_j": energy["total_j"], "sum_of_parts_j": sum(energy.get(k) or 0 for k in parts)}
    return {
        "error": driven["error"],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_smoke": run.args.cpu_smoke,
        "guard": guard,
        "backend": {k: start.get(k) for k in ("device", "dtype", "parameters", "shape", "load_s")},
        "backend_meter": driven["meters"],
        "claw_telemetry": (driven["status"] or {}).get("telemetry"),
        "targets": TARGETS,
        "checks": checks,
        "rows": rows,
        "conservation": conservation,
        "summaries": driven["summaries"],
        "status": driven["status"],
        "burn": driven["burn"],
        "records": [r for r in driven["records"] if r["id"] in {row["claw_id"] for row in rows}],
        "other_records": [r for r in driven["records"] if r["id"] not in {row["claw_id"] for row in rows}],
        "truth": truth,
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def report(results: dict[str, Any]) -> str:
    lines = [f"claw per-request energy vs the GPU counter — {results['backend'].get('device')} ({results['when']})"]
    lines.append(f"NVML setter guard: {results['guard']}; backend load {results['backend'].get('load_s')} s")
    for mode, meter in (results["backend_meter"] or {}).items():
        lines.append(f"backend counter reader ({mode}): {meter}")
    telemetry = results["claw_telemetry"] or {}
    energy = (results["summaries"].get("end") or {}).get("energy", {})
    lines.append(
        f"claw telemetry: {telemetry.get('source')} ({telemetry.get('state')}), counter vs integral "
        f"{fmt(energy.get('counter_vs_integral_pct'), 3)} %, idle {fmt(energy.get('idle_power_w'))} W, "
        f"idle baseline {fmt(energy.get('idle_baseline_w'))} W, active {fmt(energy.get('active_power_w'))} W"
    )
    header = (
        f"{'req':<5}{'tag':<17}{'mode':<7}{'tok':>5}{'claw tok':>9}{'claw J':>10}{'truth J':>10}{'err %':>8}"
        f"{'busy s':>8}{'wait s':>8}{'tok/s':>7}{'W':>7}  claw / truth"
    )
    lines += ["", header, "-" * len(header)]
    for i, r in enumerate(results["rows"], 1):
        lines.append(
            f"{r['scenario']}{i:<4}{r['tag']:<17}{'stream' if r['stream'] else 'whole':<7}"
            f"{fmt(r.get('truth_tokens')):>5}"
            f"{fmt(r.get('claw_tokens')):>9}{fmt(r.get('claw_j')):>10}{fmt(r.get('truth_j')):>10}"
            f"{fmt(r.get('error_pct'), 2):>8}{fmt(r.get('truth_busy_s'), 2):>8}{fmt(r.get('truth_wait_s'), 2):>8}"
            f"{fmt(r.get('decode_tok_s')):>7}{fmt(r.get('truth_mean_w')):>7}  {r.get('attribution') or '-'}"
            f" / {r.get('truth_kind') or '-'}"
        )
    lines.append("")
    checks = results["checks"]
    for name in ("sequential", "serial_concurrent"):
        c = checks[name]
        if c:
            verdict = "PASS" if c["pass"] else "FAIL"
            lines.append(
                f"{name}: median |err| {fmt(c.get('median_abs_error_pct'), 2)} %, "
                f"worst {fmt(c.get('worst_abs_error_pct'), 2)} %"
                f" (targets ≤ {TARGETS['median_pct']} / ≤ {TARGETS['worst_pct']}) {verdict}"
            )
    c = checks["batched"]
    if c:
        lines.append(
            f"batched: claw sum {fmt(c['claw_sum_j'])} J vs batch {fmt(c['batch_truth_j'])} J "
            f"({fmt(c['sum_error_pct'], 2)} %, target ≤ {TARGETS['batch_sum_pct']}) {'PASS' if c['pass'] else 'FAIL'}"
        )
        for p in c["requests"]:
            lines.append(
                f"  {p['tag']}: claw share {fmt(p['claw_share'], 3)}, token share {fmt(p['token_share'], 3)} "
                f"({fmt(p['share_vs_tokens_pct'], 1)} %), per-step truth share {fmt(p['step_share'], 3)}"
            )
    c = checks["unmetered_burn"]
    if c:
        d = c["deltas"]
        lines.append(
            f"burn: {fmt(c['burn_truth_j'])} J over {c['burn_s']} s (idle {c['idle_w_before']} W before, excess "
            f"{fmt(c['excess_j'])} J); claw over {c['window_s']} s: unmetered +{fmt(d['unmetered_j'])} J, idle "
            f"+{fmt(d['idle_j'])} J (all-idle would be {c['idle_if_all_idle_j']}), total +{fmt(d['total_j'])} J "
            f"{ {True: 'PASS', False: 'FAIL', None: 'n/a: ' + str(c.get('why'))}[c.get('pass')] }"
        )
    if results["conservation"]:
        lines.append(f"conservation: {results['conservation']}")
    if results["error"]:
        lines.append(f"the scenarios stopped early: {results['error']}")
    mismatched = [r["tag"] for r in results["rows"] if not r["tokens_agree"]]
    if mismatched:
        lines.append(f"token counts differ between claw and the backend for: {', '.join(mismatched)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/attribution-out")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU, the fake NVML (plumbing only)")
    parser.add_argument(
        "--quick", action="store_true", help="3 sequential requests, not 6; scenario a alone unless --scenarios"
    )
    parser.add_argument("--scenarios", default=None, help="which of a, b, c, d to run (default all; a with --quick)")
    parser.add_argument("--backend-python", default=sys.executable, help="interpreter with torch and aiohttp")
    parser.add_argument("--gap-s", type=float, default=2.5, help="idle between sequential requests")
    parser.add_argument("--settle-s", type=float, default=5.0, help="idle before the first request")
    parser.add_argument("--burn-s", type=float, default=6.0)
    parser.add_argument("--quiet-s", type=float, default=4.0, help="idle measured just before the burn")
    parser.add_argument("--tail-s", type=float, default=4.0, help="idle after the burn, inside its window")
    args = parser.parse_args(argv)
    if args.scenarios is None:
        args.scenarios = "a" if args.quick else "abdc"

    run = Run(args)
    try:
        guard = run.guard_check()
        log(f"NVML setter guard: {guard}")
        if guard != "refused":
            raise SystemExit("the NVML setter guard is not in force: stopping before touching the GPU")
        run.start_backend()
        run.start_serve()
        run.wait_backend_in_claw()
        driven = asyncio.run(drive(run, args))
        tags = {s["tag"] for s in driven["sent"]}
        truth = read_truth(run.truth_path, tags)
    finally:
        run.close()
    results = analyse(driven, truth, run, guard)
    text = report(results)
    print("\n" + text, flush=True)
    (run.out / "report.txt").write_text(text + "\n")
    (run.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {run.out}/results.json and report.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
