"""Accelerated soak: a month of a busy box through `claw serve`, checked for flat memory and flat endpoint cost.

    python benchmarks/soak.py                      # 300,000 requests over 30 simulated days (~10-20 min, 2 cores)
    python benchmarks/soak.py --requests 20000     # a quick look

One claw core (the Session `claw serve` runs) with an injected clock in front of the simulated Ollama (`claw sim`
in its own process, at high speed), a load process sending requests at a fixed concurrency (native and OpenAI
surfaces, streamed and whole, 1% for made-up model names), and an attached console (claw's own remote console
source following /claw/v1/events) that polls the summary, a 1,000-request page, the status and /metrics twice a
second in every other window. The clock jumps forward between windows so that the run covers `--days` days:
retention, keep-alive and history windows see a month go by. Along the way: model loads and unloads, and the backend
killed and restarted.

Each window records the service's RSS, live Python blocks, open fds, store size, the latency of each claw endpoint
measured from this process after the window (once under load, and at rest: the load and the console hold still
while the requests in flight end and the store catches up, then the median of 5 reads), the CPU each endpoint's
answer takes to build (median of 5, at rest: the endpoint's own cost, free of the machine's noise), and the
gateway's p50/p99/p999 as the load saw it, with and without the poller. At the end the summary is timed against a
million records. `--profile` prints where the summary's and the status' time goes in the first and last window.
Writes benchmarks/results/soak.json and soak.png.

Targets (issue "A service that runs for months"): RSS and endpoint latency flat (last tenth within 10% of the
first), gateway p999 with the poller within 2x of without, /metrics under 1,000 series, the store within the
retention.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import multiprocessing
import pstats
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import psutil

from claw_tui.config import BackendConfig, load_config
from claw_tui.records import RequestRecord
from claw_tui.request_pages import RequestQuery
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.sim.gpu import SimGPU, SimTelemetrySource

RESULTS = ROOT / "benchmarks" / "results"
ENDPOINTS = {
    "summary": "/claw/v1/summary",
    "requests": "/claw/v1/requests?limit=1000",
    "status": "/claw/v1/status",
    "metrics": "/metrics",
}
MODELS = ("qwen3:8b", "llama3.2:3b")


class SoakClock:
    """Wall time plus an offset that jumps forward between windows."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "sim", "--port", str(port), "--speed", "2000", "--parallel", "32"]
        + ["--max-queue", "1024"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("claw sim did not start")


# ---- the load (its own process) --------------------------------------------------------------------------------------
def load_worker(url: str, concurrency: int, window: int, total: int, out, stop, poll_on, pause, seed: int) -> None:
    asyncio.run(_load(url, concurrency, window, total, out, stop, poll_on, pause, seed))


async def _held(pause) -> None:
    """While the measuring process reads the endpoints at rest, send nothing."""
    while pause.is_set():
        await asyncio.sleep(0.01)


async def _load(url, concurrency, window, total, out, stop, poll_on, pause, seed) -> None:
    import aiohttp

    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    sent = 0
    lock = asyncio.Lock()

    def request() -> tuple[str, dict]:
        roll = rng.random()
        model = rng.choice(MODELS)
        options = {"sim_tokens": rng.randint(2, 8)}
        if roll < 0.01:
            return "/api/chat", {"model": f"made-up-{rng.randrange(10**9)}", "messages": [_turn()]}
        if roll < 0.11:
            return "/v1/chat/completions", {"model": model, "messages": [_turn()], "max_tokens": 8}
        if roll < 0.26:
            return "/api/chat", {"model": model, "messages": [_turn()], "options": options}  # streamed
        return "/api/chat", {"model": model, "messages": [_turn()], "stream": False, "options": options}

    async def worker(session) -> None:
        nonlocal errors, sent
        while not stop.is_set():
            await _held(pause)
            async with lock:
                if sent >= total:
                    return
                sent += 1
            path, body = request()
            started = time.perf_counter()
            try:
                async with session.post(url + path, json=body) as response:
                    await response.read()
                    ok = response.status < 500
            except aiohttp.ClientError:
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            async with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1
                if len(latencies) >= window:
                    done, latencies[:] = list(latencies), []
                    out.put(
                        {
                            "kind": "window",
                            "n": len(done),
                            "errors": errors,
                            "poller": poll_on.is_set(),
                            **_percentiles(done),
                        }
                    )
                    errors = 0

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    out.put({"kind": "done"})


def _turn() -> dict:
    return {"role": "user", "content": "what does this GPU draw at idle?"}


def _percentiles(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)

    return {"p50_ms": at(50), "p99_ms": at(99), "p999_ms": at(99.9)}


# ---- the attached console (its own process) -------------------------------------------------------------------------
def console_worker(url: str, out, stop, poll_on, pause) -> None:
    asyncio.run(_console(url, out, stop, poll_on, pause))


async def _console(url, out, stop, poll_on, pause) -> None:
    from claw_tui.console.remote import RemoteSource

    source = RemoteSource(url)
    source.start(lambda: None)
    await source.load()
    events = polls = 0
    while not stop.is_set():
        events += len(source.drain())
        await _held(pause)
        if poll_on.is_set():
            for path in ENDPOINTS.values():
                try:
                    await source.client.get(path, timeout=60)
                    polls += 1
                except httpx.HTTPError:
                    pass
        await asyncio.sleep(0.5)
    out.put({"kind": "console", "events": events, "polls": polls})
    await source.stop()


# ---- the service, measured (this process) --------------------------------------------------------------------------
def start_service(tmp: Path, sim_port: int, clock: SoakClock, retention_days: int) -> SessionThread:
    config = load_config(None)
    config.backends = [
        BackendConfig(name="sim", kind="ollama", url=f"http://127.0.0.1:{sim_port}", gpu=0, health_interval_s=2.0)
    ]
    config.store.retention_days = retention_days
    # The full-rate power ring fills in wall time (10 min × 50 Hz ≈ 3 MB per GPU by default): at one minute it is
    # full within the first tenth of the run, so the curve shows what grows with traffic, not a ring filling up.
    config.telemetry.history_minutes = 1.0
    config.gateway.max_in_flight = 64
    config.gateway.queue_size = 512
    options = SessionOptions(
        listen=("127.0.0.1", 0),
        store_path=tmp / "sessions.db",
        telemetry_source=SimTelemetrySource([SimGPU(clock=clock)]),
        clock=clock,
    )
    runner = SessionThread(Session(config, options))
    runner.start()
    return runner


def store_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("sessions.db*"))


def time_endpoints(url: str, rounds: int = 3) -> dict[str, float]:
    """Median latency (ms) of each claw endpoint, read one after another from this process."""
    times: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            for name, path in ENDPOINTS.items():
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def endpoints_at_rest(session, url: str, pause) -> dict[str, float]:
    """Each endpoint's own cost: the load and the console hold still, the requests in flight end and the store has
    written what they left, then the median of 5 reads."""
    pause.set()
    try:
        deadline = time.monotonic() + 10
        while session.ledger.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        while session.store is not None and session.store.backlog() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        return time_endpoints(url, rounds=5)
    finally:
        pause.clear()


def endpoints_cpu(session, pause) -> dict[str, float]:
    """What each endpoint's answer costs to build, in CPU ms of the building thread (median of 5), at rest: the
    work the endpoints hand to a worker thread, without HTTP and without the other threads' share of the machine,
    so it shows whether that work grows with history where wall-clock reads on a shared machine swing by ±30 %."""
    builders = {
        "summary": lambda: json.dumps(session.summary().to_json()),
        "requests": lambda: session.requests_page(RequestQuery(limit=1000)),
        "status": lambda: json.dumps(session.status_json()),
        "metrics": session.gateway.metrics.exposition,
    }
    pause.set()
    try:
        costs = {}
        for name, build in builders.items():
            times = []
            for _ in range(5):
                started = time.thread_time()
                build()
                times.append((time.thread_time() - started) * 1000)
            costs[name] = round(statistics.median(times), 3)
        return costs
    finally:
        pause.clear()


def model_churn(url: str) -> None:
    """A model unloaded and loaded again through the gateway (model events, a real reload on the simulator)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/api/generate", json={"model": MODELS[1], "keep_alive": 0})
        client.post("/api/generate", json={"model": MODELS[1]})


def metrics_series(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=60).text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def summary_at_a_million(session, url: str) -> dict:
    """Time /claw/v1/summary as it is, then with the tally holding 1,000,000 requests."""
    before = time_endpoints(url, rounds=5)["summary"]
    have = session.tally.whole.total
    record = RequestRecord(id="x", model=MODELS[0], endpoint="/api/chat", status="ok", t_arrival=1.0)
    record.t_first_token, record.t_end = 1.05, 1.5
    record.completion_tokens, record.energy_j = 20, 10.0
    rng = random.Random(1)
    for _ in range(max(0, 1_000_000 - have)):
        record.t_end = 1.1 + rng.random()
        session.tally.add(record)
    after = time_endpoints(url, rounds=5)["summary"]
    return {
        "records_before": have,
        "summary_ms_before": before,
        "records": session.tally.whole.total,
        "summary_ms_at_1m": after,
        "ratio": round(after / before, 3) if before else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retention-days", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tracemalloc", action="store_true", help="print what grew most between two windows")
    parser.add_argument(
        "--profile", action="store_true", help="where the summary and status spend their time (first, last window)"
    )
    args = parser.parse_args(argv)
    window = max(100, args.requests // args.windows)
    tmp = Path(tempfile.mkdtemp(prefix="claw-soak-"))
    clock = SoakClock()
    sim_port = free_port()
    sim = start_sim(sim_port)
    runner = start_service(tmp, sim_port, clock, args.retention_days)
    session, url = runner.session, runner.session.gateway_url
    me = psutil.Process()
    started = time.monotonic()
    rows: list[dict] = []
    first_endpoints = time_endpoints(url)
    ctx = multiprocessing.get_context("spawn")
    out, stop, poll_on, pause = ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Event()
    load = ctx.Process(
        target=load_worker,
        args=(url, args.concurrency, window, args.requests, out, stop, poll_on, pause, 7),
        daemon=True,
    )
    console = ctx.Process(target=console_worker, args=(url, out, stop, poll_on, pause), daemon=True)
    console.start()
    load.start()
    seconds_per_window = args.days * 86_400 / args.windows
    traced = None
    if args.tracemalloc:
        tracemalloc.start(1)  # one frame: deeper tracebacks slow the service tenfold
    done_requests = 0
    console_stats: dict = {}
    try:
        while True:
            message = out.get(timeout=600)
            if message["kind"] == "done":
                break
            if message["kind"] == "console":
                console_stats = message
                continue
            done_requests += message["n"]
            clock.advance(seconds_per_window)
            poll_on.clear() if message["poller"] else poll_on.set()
            index = len(rows)
            if index % 10 == 5:
                model_churn(url)
            if index % 20 == 19:
                sim.kill()
                sim.wait()
                sim = start_sim(sim_port)
            loaded = time_endpoints(url, rounds=1)
            at_rest = endpoints_at_rest(session, url, pause)
            cpu = endpoints_cpu(session, pause)
            row = {
                "window": index,
                "requests": done_requests,
                "day": round(clock.offset / 86_400, 2),
                "wall_s": round(time.monotonic() - started, 1),
                "rss_mb": round(me.memory_info().rss / 2**20, 1),
                "python_blocks_k": round(sys.getallocatedblocks() / 1000, 1),  # live Python objects
                "fds": me.num_fds(),
                "store_mb": round(store_bytes(tmp) / 2**20, 2),
                "gateway": {k: message[k] for k in ("p50_ms", "p99_ms", "p999_ms")},
                "poller": message["poller"],
                "errors": message["errors"],
                "endpoints_ms": at_rest,
                "endpoints_loaded_ms": loaded,
                "endpoints_cpu_ms": cpu,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.tracemalloc:
                traced = trace_growth(traced, index, args.windows)
            if args.profile and index in (0, args.windows - 1):
                profile_endpoints(session, pause, index)
    finally:
        stop.set()
        load.join(30)
        console.join(30)
    while not console_stats:
        try:
            message = out.get(timeout=10)
        except Exception:  # the console process is gone: report what we have
            break
        if message["kind"] == "console":
            console_stats = message
    series = metrics_series(url)
    million = summary_at_a_million(session, url)
    runner.stop()
    sim.kill()
    report = evaluate(rows, series, million, first_endpoints)
    report["console"] = console_stats
    report["config"] = vars(args) | {"out": str(args.out)}
    report["wall_s"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"report": report, "windows": rows}, indent=1) + "\n")
    plot(rows, args.out / "soak.png")
    print(json.dumps(report, indent=1))
    return 0


def profile_endpoints(session, pause, index: int) -> None:
    """The summary and the status built 20 times each in this thread, at rest, under cProfile: where their time
    goes (what the endpoints run on a worker thread, without HTTP)."""
    for name, build in (("summary", lambda: session.summary().to_json()), ("status", session.status_json)):
        pause.set()
        try:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                build()
            profiler.disable()
        finally:
            pause.clear()
        print(f"--- {name} profile, window {index}")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)


def trace_growth(first, index: int, windows: int):
    """A snapshot at the end of the first tenth; at the end, the allocations and object types that grew most."""
    if index == max(1, windows // 10 - 1):
        return tracemalloc.take_snapshot(), _object_counts()
    if first is not None and index == windows - 1:
        snapshot, counts = first
        for stat in tracemalloc.take_snapshot().compare_to(snapshot, "lineno")[:20]:
            print(stat, flush=True)
        grown = _object_counts()
        grown.subtract(counts)
        print("objects grown:", grown.most_common(12), flush=True)
    return first


def _object_counts() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _tenth(rows: list[dict], key, last: bool) -> float:
    count = max(1, len(rows) // 10)
    chosen = rows[-count:] if last else rows[:count]
    return statistics.median(key(r) for r in chosen)


def _tenth_floor(rows: list[dict], key, last: bool) -> float:
    count = max(1, len(rows) // 10)
    return min(key(r) for r in (rows[-count:] if last else rows[:count]))


def flat_over(rows: list[dict], key) -> dict:
    """Last tenth against first: medians (`ratio`), and the lowest reading of each tenth (`floor_ratio`). A timing
    on a shared machine only ever gains from the noise, so the floor tracks what the work itself costs."""
    if not rows:
        return {"first_tenth": None, "last_tenth": None, "ratio": None, "floor_ratio": None}
    first, last = _tenth(rows, key, False), _tenth(rows, key, True)
    low, high = _tenth_floor(rows, key, False), _tenth_floor(rows, key, True)
    return {
        "first_tenth": first,
        "last_tenth": last,
        "ratio": round(last / first, 3) if first else None,
        "floor_ratio": round(high / low, 3) if low else None,
    }


def evaluate(rows: list[dict], series: int, million: dict, first_endpoints: dict) -> dict:
    def flat(key) -> dict:
        return flat_over(rows, key)

    with_poller = [r["gateway"]["p999_ms"] for r in rows if r["poller"]]
    without = [r["gateway"]["p999_ms"] for r in rows if not r["poller"]]
    p99_with = [r["gateway"]["p99_ms"] for r in rows if r["poller"]]
    p99_without = [r["gateway"]["p99_ms"] for r in rows if not r["poller"]]
    full = max((r["store_mb"] for r in rows), default=0.0)
    steady = [r for r in rows if r["store_mb"] >= 0.95 * full] if full else []
    first_steady = steady[0]["requests"] if steady else None
    return {
        "requests": rows[-1]["requests"] if rows else 0,
        "days": rows[-1]["day"] if rows else 0,
        "rss_mb": flat(lambda r: r["rss_mb"]),
        # once the store holds its retention (old rows deleted as new ones come), nothing else should grow
        "rss_mb_once_store_full": {"from_requests": first_steady, **flat_over(steady, lambda r: r["rss_mb"])},
        "fds": flat(lambda r: r["fds"]),
        "store_mb": flat(lambda r: r["store_mb"]),
        "endpoints_ms": {name: flat(lambda r, n=name: r["endpoints_ms"][n]) for name in ENDPOINTS},
        "endpoints_loaded_ms": {name: flat(lambda r, n=name: r["endpoints_loaded_ms"][n]) for name in ENDPOINTS},
        "endpoints_ms_once_store_full": {
            name: flat_over(steady, lambda r, n=name: r["endpoints_ms"][n]) for name in ENDPOINTS
        },
        "endpoints_cpu_ms": {name: flat(lambda r, n=name: r["endpoints_cpu_ms"][n]) for name in ENDPOINTS},
        "endpoints_ms_at_start": first_endpoints,
        "gateway_p999_ms": {
            "with_poller": statistics.median(with_poller) if with_poller else None,
            "without_poller": statistics.median(without) if without else None,
        },
        "gateway_p99_ms": {
            "with_poller": statistics.median(p99_with) if p99_with else None,
            "without_poller": statistics.median(p99_without) if p99_without else None,
        },
        "metrics_series": series,
        "summary_at_1m": million,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["requests"] / 1000 for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    ax = axes[0][0]
    ax.plot(x, [r["rss_mb"] for r in rows], label="RSS MB")
    ax.plot(x, [r["fds"] for r in rows], label="open fds")
    ax.plot(x, [r["store_mb"] for r in rows], label="store MB")
    ax.set_title("memory, fds and store")
    ax.legend()
    ax = axes[0][1]
    for name in ENDPOINTS:
        line = ax.plot(x, [r["endpoints_ms"][name] for r in rows], label=f"{name} at rest")[0]
        loaded = [r["endpoints_loaded_ms"][name] for r in rows]
        ax.plot(x, loaded, color=line.get_color(), linestyle="none", marker=".", alpha=0.4)
    ax.set_title("claw endpoints (ms): lines at rest, dots under load")
    ax.set_yscale("log")
    ax.legend()
    ax = axes[1][0]
    for key in ("p50_ms", "p99_ms", "p999_ms"):
        ax.plot(x, [r["gateway"][key] for r in rows], label=key, marker=".", linestyle="none")
    ax.set_title("gateway latency as the load saw it (ms)")
    ax.set_yscale("log")
    ax.legend()
    ax = axes[1][1]
    for name in ENDPOINTS:
        ax.plot(x, [r["endpoints_cpu_ms"][name] for r in rows], label=name)
    ax.set_title("CPU to build each endpoint's answer, at rest (ms)")
    ax.set_yscale("log")
    ax.legend()
    for axis in axes[1]:
        axis.set_xlabel(f"requests (thousands); {rows[-1]['day'] if rows else 0:g} simulated days in all")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
