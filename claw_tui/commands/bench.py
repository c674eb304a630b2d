"""`claw bench`: load through the gateway; prints TTFT/ITL/latency percentiles, tokens/s and tokens/J."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from claw_tui.bench import (
    Bench,
    BenchConfig,
    BenchPrompt,
    WorkloadError,
    build_bench_summary,
    claw_summary,
    file_prompts,
    gateway_records,
    load_workload_file,
    render_report,
    synthetic_prompts,
)
from claw_tui.commands.common import add_common_options, load_config_or_exit
from claw_tui.config import Config
from claw_tui.export import to_json

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_REQUESTS = 32


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="load generator through the gateway: latency percentiles, tokens/s, tokens/J",
        description="Sends chat requests through claw's gateway and reads the energy of each from the gateway's "
        "records. Writes a summary (-o) that 'claw compare' reads.",
    )
    add_common_options(parser)
    parser.add_argument("--url", help="gateway URL (default: the configured [gateway] listen address)")
    parser.add_argument("--model", help="model or agent (default: a loaded model, else the first one listed)")
    parser.add_argument(
        "--workload",
        default="mixed",
        metavar="short|long|mixed|FILE.jsonl",
        help="built-in prompts (mixed = 80%% short, 20%% long) or a JSONL file of requests",
    )
    parser.add_argument("--concurrency", type=positive_int, default=4, help="requests in flight at once")
    total = parser.add_mutually_exclusive_group()
    total.add_argument("--requests", type=positive_int, help=f"how many requests (default {DEFAULT_REQUESTS})")
    total.add_argument("--duration", type=positive_float, metavar="S", help="send for this many seconds")
    parser.add_argument(
        "--rate",
        type=positive_float,
        metavar="R",
        help="open loop: Poisson arrivals at R requests/s (idle gaps, as real traffic has)",
    )
    parser.add_argument("--api", choices=("ollama", "openai"), default="ollama", help="which surface to call")
    parser.add_argument("--governor", choices=("on", "off"), help="switch the gateway's idle governor first")
    parser.add_argument("--idle-after", type=float, metavar="S", help="with --governor on: downclock after S idle")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic prompts and arrivals")
    parser.add_argument("--token", default=None, help="gateway bearer token (default: the first configured one)")
    parser.add_argument("--timeout", type=positive_float, default=600.0, help="longest request, in seconds")
    parser.add_argument("-o", "--output", metavar="OUT.json", help="write the summary (claw.summary/1) here")
    parser.add_argument("--sim-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.set_defaults(run=run_bench)


def gateway_url(config: Config) -> str:
    host, port = config.gateway.host_port()
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def run_bench(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    if args.idle_after is not None and args.idle_after < 0:
        print("claw: --idle-after must be >= 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if Path(args.workload).suffix in (".jsonl", ".json") or Path(args.workload).exists():
            prompts = file_prompts(load_workload_file(args.workload))
        else:
            prompts = synthetic_prompts(args.workload, args.seed)
    except WorkloadError as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    token = args.token if args.token is not None else (config.gateway.tokens[0] if config.gateway.tokens else "")
    if not getattr(args, "demo", False):
        return asyncio.run(bench(args, prompts, args.url or gateway_url(config), token, demo=False))
    return bench_in_demo(args, config, prompts)


def bench_in_demo(args: argparse.Namespace, config: Config, prompts: Iterator[BenchPrompt]) -> int:
    from claw_tui.httpserver import PortInUseError
    from claw_tui.session import Session, SessionOptions, SessionThread

    with tempfile.TemporaryDirectory(prefix="claw-bench-") as tmp:
        options = SessionOptions(
            demo=True, listen=("127.0.0.1", 0), use_store=False, sim_speed=args.sim_speed, export_dir=Path(tmp)
        )
        config.gateway.tokens = []
        runner = SessionThread(Session(config, options))
        try:
            runner.start()
        except PortInUseError as exc:
            print(f"claw: {exc}", file=sys.stderr)
            return EXIT_FAILED
        try:
            print(
                f"claw bench: demo gateway on {runner.session.gateway_url} (simulated H200 and Ollama)", file=sys.stderr
            )
            return asyncio.run(bench(args, prompts, runner.session.gateway_url, "", demo=True))
        finally:
            runner.stop()


async def pick_model(client: httpx.AsyncClient) -> str | None:
    for path in ("/api/ps", "/api/tags"):
        try:
            response = await client.get(path, timeout=10)
            models = response.json().get("models") or [] if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            continue
        names: list[str] = [m.get("name") or m.get("model") for m in models if m.get("name") or m.get("model")]
        if names:
            return names[0]
    return None


async def set_governor(client: httpx.AsyncClient, enabled: bool, idle_after: float | None) -> str | None:
    body: dict[str, Any] = {"enabled": enabled}
    if idle_after is not None:
        body["idle_after_s"] = idle_after
    try:
        response = await client.post("/claw/v1/governor", json=body, timeout=30)
    except httpx.HTTPError as exc:
        return f"cannot switch the governor: {exc}"
    if response.status_code != 200:
        return f"cannot switch the governor: HTTP {response.status_code} {response.text[:200]}"
    return None


class Progress:
    """A progress bar on a terminal (rich), a plain line every 10% otherwise."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total = total
        self._next_pct = 10
        self._bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]bench"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[errors]} errors"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total, errors=0)
            self._bar.start()

    def update(self, done: int, errors: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, errors=errors)
            return
        if self.total:
            pct = 100 * done // self.total
            if pct >= self._next_pct or done == self.total:
                print(f"bench: {done}/{self.total} requests, {errors} errors", file=sys.stderr, flush=True)
                self._next_pct = (pct // 10 + 1) * 10
        elif done % 10 == 0:
            print(f"bench: {done} requests, {errors} errors", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


async def bench(args: argparse.Namespace, prompts: Iterator[BenchPrompt], url: str, token: str, *, demo: bool) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        try:
            await client.get("/api/version", timeout=10)
        except httpx.HTTPError as exc:
            print(
                f"claw: cannot reach the gateway at {url}: {exc or type(exc).__name__} (is claw running? try --demo)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        model = args.model or await pick_model(client)
        if model is None:
            print(f"claw: no model at {url}; pass --model", file=sys.stderr)
            return EXIT_FAILED
        if args.governor:
            problem = await set_governor(client, args.governor == "on", args.idle_after)
            if problem:
                print(f"claw: {problem}", file=sys.stderr)
                return EXIT_FAILED
        requests = args.requests or (None if args.duration else DEFAULT_REQUESTS)
        cfg = BenchConfig(
            url=url,
            model=model,
            workload=args.workload,
            concurrency=args.concurrency,
            requests=requests,
            duration_s=args.duration,
            rate=args.rate,
            api=args.api,
            seed=args.seed,
            timeout_s=args.timeout,
            token=token,
        )
        before = await claw_summary(client)
        if before is None:
            print(f"claw: {url} is not a claw gateway (no /claw/v1/summary): latency only, no energy", file=sys.stderr)
        progress = Progress(requests, cfg.total_label())
        runner = Bench(cfg, prompts, on_progress=progress.update)
        try:
            await runner.run()
        finally:
            progress.close()
        ids = {r.request_id for r in runner.results if r.request_id}
        records = await gateway_records(client, ids) if before is not None and ids else []
        after = await claw_summary(client) if before is not None else None
    summary = build_bench_summary(cfg, runner, records, before, after, demo)
    sys.stdout.write(render_report(summary))
    if args.output:
        path = Path(args.output).expanduser()  # noqa: ASYNC240 - the run is over, nothing waits
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_json(summary))
        except OSError as exc:
            print(f"claw: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"claw: wrote {path}", file=sys.stderr)
    ok = sum(r.status == "ok" for r in runner.results)
    return EXIT_OK if ok else EXIT_FAILED
