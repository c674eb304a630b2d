"""The opening of a measuring script run with `python -c` inside a checkout (this one, or an older one measured
against it): `claw sim` in its own process, and the `config` and `options` of a core in front of it. The script
goes on from there (its arguments, its own settings, the client, the measurement) and stops `sim` at the end."""

from __future__ import annotations

CORE_BEFORE_SIM = r"""
import asyncio, json, socket, subprocess, sys, tempfile, time
from pathlib import Path
import httpx
from claw_tui.config import BackendConfig, load_config
from claw_tui.session import Session, SessionOptions
from claw_tui.sim.gpu import SimGPU, SimTelemetrySource

with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
sim = subprocess.Popen([sys.executable, "-m", "claw_tui", "sim", "--port", str(port), "--speed", "SIM_SPEED",
                        "--parallel", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(300):
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1); break
    except httpx.HTTPError:
        time.sleep(0.1)
config = load_config(None)
config.backends = [BackendConfig(name="sim", kind="ollama", url=f"http://127.0.0.1:{port}", gpu=0)]
options = SessionOptions(listen=("127.0.0.1", 0), store_path=Path(tempfile.mkdtemp()) / "s.db",
                         telemetry_source=SimTelemetrySource([SimGPU()]))
"""


def core_before_sim(speed: int) -> str:
    """The opening, with the simulator at `speed` times real time."""
    return CORE_BEFORE_SIM.replace("SIM_SPEED", str(speed))
