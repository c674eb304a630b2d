"""What the gateway benchmarks share: starting `claw sim` / `claw serve` / other servers as processes, and a lean
HTTP/1.1 load generator.

The load generator speaks raw HTTP/1.1 over keep-alive asyncio streams (requests pre-encoded, responses read by
Content-Length or chunked framing): a full client library would cost more CPU per request than the gateway under
test, and on a small machine that CPU comes out of the gateway's share.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server process started for a benchmark, stopped (SIGTERM, then SIGKILL) when done."""

    def __init__(
        self, name: str, args: list[str], *, env: dict | None = None, cwd: Path = ROOT, log: Path | None = None
    ) -> None:
        self.name = name
        self.log_path = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"claw-bench-{name}-{os.getpid()}.log"
        self._log = open(self.log_path, "w")
        python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        full_env = dict(os.environ, PYTHONPATH=python_path, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 120.0, headers: dict | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(url, timeout=1, headers=headers).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not answer {url} within {timeout}s; see {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_sim(port: int, *, speed: float, parallel: int = 64, openai_only: bool = False) -> Process:
    args = [
        sys.executable,
        "-m",
        "claw_tui",
        "sim",
        "--port",
        str(port),
        "--speed",
        str(speed),
        "--parallel",
        str(parallel),
        "--max-queue",
        "4096",
    ]
    if openai_only:
        args.append("--openai-only")
    sim = Process(f"sim-{port}", args)
    sim.wait_http(f"http://127.0.0.1:{port}/v1/models")
    return sim


def start_claw(
    port: int,
    backend_url: str,
    kind: str,
    workdir: Path,
    *,
    telemetry: str = "none",
    trace: Path | None = None,
    max_in_flight: int = 256,
    gc_stats: Path | None = None,
) -> Process:
    """`claw serve` in front of one backend; telemetry "none", "replay" (of `trace`) or "nvml"."""
    config = workdir / f"claw-{port}.toml"
    telemetry = f'source = "{telemetry}"\n' + (f'replay_file = "{trace}"\n' if telemetry == "replay" else "")
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmax_in_flight = {max_in_flight}\nqueue_size = 1024\n'
        f'[[backends]]\nname = "sim"\nkind = "{kind}"\nurl = "{backend_url}"\n'
        f"[telemetry]\n{telemetry}"
        f'[store]\npath = "{workdir / f"sessions-{port}.db"}"\n'
    )
    if gc_stats is not None:
        args = [sys.executable, str(ROOT / "benchmarks" / "gc_probe.py"), "serve", "--config", str(config)]
        claw = Process(f"claw-{port}", args, env={"CLAW_GC_STATS": str(gc_stats)})
    else:
        claw = Process(f"claw-{port}", [sys.executable, "-m", "claw_tui", "serve", "--config", str(config)])
    claw.wait_http(f"http://127.0.0.1:{port}/api/version")
    return claw


# ---- the load generator ----------------------------------------------------------------------------------------


def encode_request(port: int, path: str, body: dict, headers: dict | None = None) -> bytes:
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            key, value = line.split(b":", 1)
            headers[key.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return status, await reader.readexactly(int(headers[b"content-length"]))
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(chunks)
        chunks.append(data[:-2])


def stream_items(body: bytes) -> int:
    """Answer chunks in a streamed body: NDJSON lines, or SSE events."""
    events = body.count(b"\n\n")
    return events if events else body.count(b"\n")


@dataclass
class Run:
    latencies_s: list[float]
    elapsed_s: float
    chunks: int  # streamed answers: NDJSON lines / SSE events received
    errors: int

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.elapsed_s


async def _worker(port: int, request: bytes, count: int, run: Run, start: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    await start.wait()
    try:
        for _ in range(count):
            began = time.perf_counter()
            writer.write(request)
            status, body = await read_response(reader)
            run.latencies_s.append(time.perf_counter() - began)
            run.chunks += stream_items(body)
            if status != 200:
                run.errors += 1
    finally:
        writer.close()


async def load(port: int, request: bytes, *, concurrency: int, requests: int, warmup: int = 20) -> Run:
    warm = Run([], 0.0, 0, 0)
    start = asyncio.Event()
    start.set()
    await _worker(port, request, warmup, warm, start)
    run = Run([], 0.0, 0, 0)
    gate = asyncio.Event()
    per_worker = max(1, requests // concurrency)
    workers = [asyncio.create_task(_worker(port, request, per_worker, run, gate)) for _ in range(concurrency)]
    await asyncio.sleep(0.05)
    began = time.perf_counter()
    gate.set()
    await asyncio.gather(*workers)
    run.elapsed_s = time.perf_counter() - began
    return run


def median(values: list[float]) -> float:
    return statistics.median(values)
