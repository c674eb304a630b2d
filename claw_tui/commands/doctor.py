"""`claw doctor`: a readiness checklist with pass/warn/fail lines; exit 1 when anything failed.

Checks: config valid, NVML, time sync of the 20 ms power samples against the wall clock, GPU memory headroom (and
the models holding it), clock-control permission (and clocks left locked by a crashed run), each backend reachable,
models present (the agents' models, and their context budgets against the models' real context length), the gateway
port free, who may call the gateway, /metrics answering, the session store writable; with --load N, N requests at
once through the gateway against the [doctor] budgets. Read-only, except that --load sends requests (which may load
a model): nothing here changes a clock.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sqlite3
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from claw_tui.commands.checklist import Check
from claw_tui.commands.common import add_common_options
from claw_tui.commands.doctor_box import Box, claw_status, configured_url, open_box
from claw_tui.commands.doctor_load import check_load
from claw_tui.commands.doctor_readiness import (
    OllamaFacts,
    check_agent_context,
    check_exposure,
    check_gpu_memory,
    check_metrics,
)
from claw_tui.config import Config, ConfigError, config_path_and_source, load_config_for_cli
from claw_tui.governor import StateFile, default_state_file, pid_alive
from claw_tui.logs import console_log_status
from claw_tui.telemetry.types import GpuSnapshot, GpuStatic, TelemetryError, TelemetrySource

if TYPE_CHECKING:
    from claw_tui.sim.gpu import SimGPU

EXIT_OK = 0
EXIT_FAILED = 1
MARKS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
SYNC_PASS_S = 0.5  # the driver's newest sample is normally 20-100 ms old
SYNC_WARN_S = 2.5  # the buffer holds ~2.4 s: older than that, the samples do not belong to now
HTTP_TIMEOUT_S = 3.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="production readiness checklist (GPU, backends, models, context, access, metrics, load)",
        description="Each line is PASS, WARN, FAIL or SKIP (not checkable here; it says how), with what to change "
        "under a failing one. The exit status is 1 when anything failed (warnings alone: 0). Budgets and "
        "thresholds come from the config's [doctor] section.",
    )
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--load",
        type=positive_int,
        metavar="N",
        help="also send N requests at once through the gateway (the running claw, else one started for the "
        "check) and hold the error rate and P95 latency to the [doctor] budgets",
    )
    parser.add_argument(
        "--model", help="with --load: the model or agent to load (default: [doctor] load_model, else a loaded model)"
    )
    parser.set_defaults(run=run_doctor)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_doctor(args: argparse.Namespace) -> int:
    demo = bool(getattr(args, "demo", False))
    config, checks = check_config(getattr(args, "config", None))
    with open_box(config, demo=demo, need_gateway=bool(args.load)) as box:
        checks += run_checks(config, box, demo=demo)
        if args.load:
            checks.append(load_check(config, box, args.load, args.model))
    if args.json:
        print(
            json.dumps(
                {
                    "checks": [asdict(c) for c in checks],
                    "failed": sum(c.status == "fail" for c in checks),
                    "warnings": sum(c.status == "warn" for c in checks),
                    "skipped": sum(c.status == "skip" for c in checks),
                },
                indent=2,
            )
        )
    else:
        print(render(checks), end="")
    return EXIT_FAILED if any(c.status == "fail" for c in checks) else EXIT_OK


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{MARKS[check.status]}  {check.name:<{width}}  {check.detail}")
        if check.hint and check.status != "pass":
            lines.append(f"{'':{width + 8}}→ {check.hint}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    skipped = sum(c.status == "skip" for c in checks)
    verdict = "ready" if not failed else "not ready"
    lines.append(
        f"\n{verdict}: {failed} failed, {warned} warning{'s' if warned != 1 else ''}, "
        f"{len(checks) - failed - warned - skipped} passed" + (f", {skipped} skipped" if skipped else "")
    )
    return "\n".join(lines) + "\n"


# ---- the checks --------------------------------------------------------------------------------------------------
def check_config(cli_path: str | None) -> tuple[Config, list[Check]]:
    path, source = config_path_and_source(cli_path)
    try:
        config = load_config_for_cli(cli_path)
    except ConfigError as exc:
        return Config(), [
            Check(
                "config",
                "fail",
                str(exc),
                "fix the file (claw config show prints the effective config); the other checks use the defaults",
            )
        ]
    note = source if path.exists() else f"{source}; no file there, so the defaults"
    return config, [Check("config", "pass", f"{path} ({note})")]


def run_checks(config: Config, box: Box, *, demo: bool = False, nvml: Any = None) -> list[Check]:
    checks: list[Check] = [Check("gateway", "fail", problem) for problem in box.problems]
    facts = OllamaFacts.gather(box.backends)
    source, statics = open_telemetry(config, demo, nvml, checks, box.sim_gpus)
    snapshots: list[GpuSnapshot] | None = None
    if source is not None:
        checks.append(check_time_sync(source, statics))
        snapshots = read_snapshots(source, statics)
        try:
            source.close()
        except Exception:
            pass
    checks.append(check_gpu_memory(snapshots, facts, config.doctor.max_vram_pct))
    checks.append(check_clock_control(config, demo, nvml))
    checks.append(check_left_locked(config))
    checks += check_backends(box.for_backend_checks(config))
    checks.append(check_agent_context(box.agents, facts))
    checks.append(check_port(config))
    checks.append(check_exposure(config.gateway))
    scraped = box.scraped
    if scraped is not None:
        checks.append(check_metrics(scraped.url, scraped.headers, scraped.where))
    else:
        checks.append(check_metrics(None, {}, configured_url(config)))
    checks.append(check_store(config))
    checks.append(Check("console log", *console_log_status()))
    return checks


def load_check(config: Config, box: Box, n: int, model: str | None) -> Check:
    if box.gateway is None:
        return Check("load", "fail", "no gateway to send the load through", "see the gateway line above")
    return check_load(config, box.gateway, n, model)


def read_snapshots(source: TelemetrySource, statics: list[GpuStatic]) -> list[GpuSnapshot] | None:
    try:
        return [source.snapshot(static.index) for static in statics]
    except TelemetryError:
        return None


def open_telemetry(
    config: Config, demo: bool, nvml: Any, checks: list[Check], sim_gpus: list[SimGPU] | None = None
) -> tuple[TelemetrySource | None, list[GpuStatic]]:
    if demo:
        from claw_tui.sim.gpu import SimGPU, SimTelemetrySource

        sim = SimTelemetrySource(sim_gpus or [SimGPU()])
        checks.append(Check("NVML", "pass", "demo: a simulated NVIDIA H200 instead of NVML"))
        return sim, sim.open()
    if config.telemetry.source == "none":
        checks.append(
            Check(
                "NVML",
                "warn",
                'telemetry is off in the config (source = "none")',
                'energy is not measured; set [telemetry] source = "auto"',
            )
        )
        return None, []
    from claw_tui.telemetry.nvml import NvmlSource

    source = NvmlSource(nvml)
    try:
        statics = source.open()
    except TelemetryError as exc:
        checks.append(
            Check("NVML", "fail", str(exc), "install the NVIDIA driver (nvidia-smi must work), or try 'claw --demo'")
        )
        return None, []
    names = ", ".join(f"{s.name}" for s in statics)
    driver = statics[0].driver if statics else ""
    checks.append(
        Check(
            "NVML",
            "pass",
            f"{len(statics)} GPU{'s' if len(statics) != 1 else ''}: {names}"
            + (f" (driver {driver})" if driver else ""),
        )
    )
    return source, statics


def check_time_sync(source: TelemetrySource, statics: list[GpuStatic]) -> Check:
    """NVML's power samples carry their own timestamps: compare the newest with the wall clock."""
    worst: tuple[float, int] | None = None
    spacings: list[float] = []
    for static in statics:
        try:
            samples = source.power_samples(static.index, 0.0)
        except TelemetryError as exc:
            return Check("power samples", "fail", f"GPU {static.index}: {exc}")
        now = time.time()
        if not samples:
            return Check(
                "power samples",
                "warn",
                f"GPU {static.index} returned no buffered power samples",
                "energy falls back to 1 instant reading per poll (coarser attribution)",
            )
        age = now - samples[-1].ts
        spacings += [b.ts - a.ts for a, b in itertools.pairwise(samples)]
        if worst is None or abs(age) > abs(worst[0]):
            worst = (age, static.index)
    if worst is None:
        return Check("power samples", "warn", "no GPU to read power samples from")
    age, index = worst
    spacing = f", spacing {statistics.median(spacings) * 1000:.0f} ms" if spacings else ""
    detail = f"newest sample {age * 1000:+.0f} ms from the wall clock (GPU {index}){spacing}"
    hint = "the system clock and the driver's sample clock disagree: check NTP (timedatectl) and the driver"
    if -SYNC_PASS_S <= age <= SYNC_PASS_S:
        return Check("power samples", "pass", detail)
    if -SYNC_WARN_S <= age <= SYNC_WARN_S:
        return Check("power samples", "warn", detail, hint)
    return Check("power samples", "fail", detail, hint + "; energy would be charged to the wrong requests")


def check_clock_control(config: Config, demo: bool, nvml: Any) -> Check:
    name = "clock control"
    if demo:
        return Check(name, "pass", "demo: the governor locks the simulated GPU's clocks")
    if not config.governor.allow_clock_control:
        return Check(
            name,
            "warn",
            "the governor runs as a dry run (allow_clock_control = false in [governor])",
            "to let F6 really downclock: allow_clock_control = true, and run claw as root",
        )
    if os.geteuid() != 0:
        return Check(
            name,
            "warn",
            f"allow_clock_control = true but claw runs as uid {os.geteuid()}: NVML needs "
            "root to lock clocks, so the governor will run as a dry run",
            "run claw as root (e.g. a systemd unit for claw serve)",
        )
    return Check(name, "pass", "root and allow_clock_control = true: the governor can lock the SM clock")


def check_left_locked(config: Config) -> Check:
    path = Path(config.governor.state_file).expanduser() if config.governor.state_file else default_state_file()
    note = StateFile(path).read()
    if note is None:
        return Check("locked clocks", "pass", "no clocks left locked by an earlier run")
    pid = note.get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        return Check("locked clocks", "pass", f"a running claw (pid {pid}) holds the GPU clocks downclocked")
    return Check(
        "locked clocks",
        "fail",
        f"a claw run that died (pid {pid}) left GPU clocks locked ({path})",
        "start claw once (it resets them at start) or run 'sudo nvidia-smi -rgc'",
    )


def check_backends(config: Config) -> list[Check]:
    checks: list[Check] = []
    present: set[str] = set()
    for backend in config.backends:
        name = f"backend {backend.name}"
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        try:
            with httpx.Client(base_url=backend.url.rstrip("/"), timeout=HTTP_TIMEOUT_S, headers=headers) as client:
                if backend.kind == "ollama":
                    version = client.get("/api/version").json().get("version", "?")
                    models = [m.get("name") for m in client.get("/api/tags").json().get("models") or []]
                    what = f"Ollama {version}"
                else:
                    response = client.get("/v1/models")
                    response.raise_for_status()
                    models = [m.get("id") for m in response.json().get("data") or []]
                    what = "OpenAI-compatible"
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{backend.url} unreachable: {exc or type(exc).__name__}",
                    "start the server (ollama serve) or fix [[backends]] url",
                )
            )
            continue
        present.update(m for m in models if m)
        if models:
            shown = ", ".join(models[:4]) + (f" (+{len(models) - 4})" if len(models) > 4 else "")
            checks.append(Check(name, "pass", f"{backend.url} up ({what}); {len(models)} models: {shown}"))
        else:
            checks.append(
                Check(name, "warn", f"{backend.url} up ({what}) but has no models", "pull one: ollama pull qwen3:8b")
            )
    if not config.backends:
        checks.append(Check("backends", "fail", "no [[backends]] configured", "add one (claw config init)"))
    missing = [
        (a.name, a.model) for a in config.agents if a.model not in present and f"{a.model}:latest" not in present
    ]
    if config.agents and present:
        if missing:
            checks.append(
                Check(
                    "agent models",
                    "fail",
                    "; ".join(f"agent '{n}' uses {m}, which no backend has" for n, m in missing),
                    "ollama pull " + " ".join(sorted({m for _, m in missing})),
                )
            )
        else:
            checks.append(Check("agent models", "pass", f"every agent's model is present ({len(config.agents)})"))
    return checks


def check_port(config: Config) -> Check:
    host, port = config.gateway.host_port()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return Check("gateway port", "pass", f"{host}:{port} is free")
        except OSError as exc:
            reason = exc.strerror or str(exc)
    status = claw_status(config)
    if status is not None:
        return Check(
            "gateway port",
            "warn",
            f"{host}:{port} is taken by a running claw (session {status['session']['id']})",
            "that claw is the gateway; a second one needs another [gateway] listen",
        )
    return Check(
        "gateway port",
        "fail",
        f"cannot listen on {host}:{port}: {reason}",
        "stop what holds it (ss -ltnp) or set another [gateway] listen",
    )


def check_store(config: Config) -> Check:
    path = config.store.resolved_path()
    keep = f"kept {config.store.retention_days} days" if config.store.retention_days else "kept forever"
    if not path.exists():  # do not create the store here: check that it could be
        folder = next((p for p in path.parents if p.exists()), None)
        if folder is not None and os.access(folder, os.W_OK):
            return Check("session store", "pass", f"{path} will be created at the first start ({keep})")
        return Check(
            "session store",
            "fail",
            f"{path} cannot be created ({folder} is not writable)",
            "fix the permissions or set [store] path",
        )
    try:
        conn = sqlite3.connect(path, timeout=3)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS claw_doctor_probe (x)")
            conn.execute("DROP TABLE claw_doctor_probe")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] if "sessions" in tables else 0
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        return Check("session store", "fail", f"{path}: {exc}", "fix the permissions or set [store] path")
    size = path.stat().st_size / 1e6
    return Check("session store", "pass", f"{path} writable ({sessions} sessions, {size:.1f} MB, {keep})")
