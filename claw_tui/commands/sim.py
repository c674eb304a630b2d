"""`claw sim`: run only the simulated backend (simulated GPU + Ollama API, or the OpenAI-compatible API only)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

DEFAULT_PORT = 11434


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the simulated Ollama backend (for tests, benchmarks and multi-backend setups)",
        description="Serve a simulated Ollama (with a simulated H200 behind it) until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument(
        "--openai-only", action="store_true", help="serve only the OpenAI-compatible /v1 API, like vLLM or llama.cpp"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for answers and GPU noise (default 0)")
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="multiply every rate and divide every delay (default 1.0 = real H200 speed)",
    )
    parser.add_argument(
        "--parallel",
        type=_positive_int,
        default=2,
        help="requests generating at once per model (OLLAMA_NUM_PARALLEL; default 2)",
    )
    parser.add_argument(
        "--max-queue",
        type=_non_negative_int,
        default=16,
        help="pending requests before 503 (OLLAMA_MAX_QUEUE; default 16)",
    )
    parser.set_defaults(run=run_sim)


def run_sim(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    from claw_tui.httpserver import PortInUseError
    from claw_tui.sim.gpu import SimGPU
    from claw_tui.sim.server import SimServer

    server = SimServer(
        [SimGPU(seed=args.seed)],
        seed=args.seed,
        openai_only=args.openai_only,
        num_parallel=args.parallel,
        max_queue=args.max_queue,
        speed=args.speed,
    )
    try:
        url = await server.start(args.host, args.port)
    except PortInUseError as exc:
        print(f"claw sim: {exc}", file=sys.stderr)
        return 1
    surface = "OpenAI-compatible API" if args.openai_only else "Ollama API"
    print(f"claw sim: simulated {surface} on {url} (speed {args.speed:g}, Ctrl+C to stop)", file=sys.stderr)
    try:
        await _wait_for_stop_signal()
    finally:
        await server.stop()
    return 0


async def _wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
