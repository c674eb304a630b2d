"""The energy workflow on a real H200, read-only: doctor, serve with the governor in dry run, bench, export.

Run on the device machine from the repository root (Python >= 3.11 with claw's dependencies importable):
    python3 benchmarks/device/energy_h200.py

Never changes a GPU setting: the governor runs with allow_clock_control = false (a dry run that only logs), and a
sitecustomize guard makes every NVML setter raise in the claw processes, so a mistake fails loudly instead of
touching the card. The backend is claw's simulated Ollama (on the CPU); a torch matmul load in bursts gives the
GPU real power swings while the bench runs, so the energy counter vs sample integral check sees load and idle.

Writes into $OUT: doctor.txt, bench.txt, bench.json, status.json, summary.json, summary.md, serve.log, load.log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = Path(os.environ.get("OUT", "/tmp/claw-energy-out"))
WORK = Path("/tmp/claw-energy")

GUARD = """
import pynvml as _nvml

def _refuse(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"refused NVML setter {name} on a borrowed GPU")
    return refuse

for _name in dir(_nvml):
    if _name.startswith(("nvmlDeviceSet", "nvmlDeviceReset", "nvmlDeviceClear")):
        setattr(_nvml, _name, _refuse(_name))
"""

LOAD = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
print("ready", flush=True)
for burst_s, rest_s in ((3.0, 3.0), (2.0, 4.0), (4.0, 3.0)):
    end = time.time() + burst_s
    while time.time() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
    print(f"burst {burst_s}s done at {time.time():.3f}", flush=True)
    time.sleep(rest_s)
print("done", flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claw(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "claw_tui", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    import httpx

    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "guard").mkdir(exist_ok=True)
    (WORK / "guard" / "sitecustomize.py").write_text(GUARD)
    sim_port, gateway_port = free_port(), free_port()
    config = WORK / "config.toml"
    config.write_text(
        textwrap.dedent(f"""
        [gateway]
        listen = "127.0.0.1:{gateway_port}"
        [telemetry]
        source = "nvml"
        [governor]
        enabled = true
        idle_after_s = 1.0
        allow_clock_control = false
        state_file = "{WORK / "governor.json"}"
        [store]
        path = "{WORK / "sessions.db"}"
        [[backends]]
        name = "sim"
        url = "http://127.0.0.1:{sim_port}"
    """)
    )
    env = dict(
        os.environ,
        CLAW_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join([str(WORK / "guard"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    sim = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "sim", "--port", str(sim_port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    serve = None
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/api/version")
        doctor = claw("doctor", env=env)
        (OUT / "doctor.txt").write_text(doctor.stdout + doctor.stderr + f"\nexit status {doctor.returncode}\n")
        print(doctor.stdout, flush=True)

        serve_log = open(OUT / "serve.log", "w")
        serve = subprocess.Popen(
            [sys.executable, "-m", "claw_tui", "serve"], env=env, cwd=ROOT, stdout=serve_log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{gateway_port}"
        wait_http(url + "/api/version")
        time.sleep(3)  # idle with the governor on: it "downclocks" (dry run) after 1 s
        idle_status = httpx.get(url + "/claw/v1/status").json()

        load_log = open(OUT / "load.log", "w")
        load = subprocess.Popen([sys.executable, "-c", LOAD], stdout=load_log, stderr=subprocess.STDOUT, env=env)
        bench = claw(
            "bench",
            "--url",
            url,
            "--model",
            "qwen3:8b",
            "--workload",
            "short",
            "--requests",
            "24",
            "--rate",
            "1.2",
            "--concurrency",
            "2",
            "-o",
            str(OUT / "bench.json"),
            env=env,
            timeout=300,
        )
        (OUT / "bench.txt").write_text(bench.stdout + bench.stderr + f"\nexit status {bench.returncode}\n")
        print(bench.stdout, flush=True)
        load.wait(timeout=120)
        time.sleep(3)
        status = httpx.get(url + "/claw/v1/status").json()
        (OUT / "status.json").write_text(json.dumps({"idle": idle_status, "after": status}, indent=2))
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        for fmt, name in (("json", "summary.json"), ("md", "summary.md")):
            exported = claw("export", "--format", fmt, "-o", str(OUT / name), env=env)
            print(exported.stderr.strip(), flush=True)
        summary = json.loads((OUT / "summary.json").read_text())
        print(
            json.dumps(
                {
                    "energy": summary["energy"],
                    "governor": summary["governor"],
                    "efficiency": summary["efficiency"],
                    "requests": summary["requests"],
                },
                indent=2,
            )
        )
    finally:
        for process in (serve, sim):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
