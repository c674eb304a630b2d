"""`claw serve` as a real process, its NVML replaced by a fake that logs every call: clocks locked when idle are
reset on SIGTERM, and after `kill -9` the next start finds the state file and resets them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until

FAKE_NVML_DIR = Path(__file__).parent / "fake_nvml"
REPO = Path(__file__).parent.parent
LOCK = "nvmlDeviceSetGpuLockedClocks"
RESET = "nvmlDeviceResetGpuLockedClocks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nvml_calls(log: Path, pid: int | None = None) -> list[str]:
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [c["call"] for c in calls if pid is None or c["pid"] == pid]


@pytest.fixture
def serve(tmp_path):
    """Start `claw serve` on a fake NVML with the governor on and a short idle time; returns a starter."""
    log = tmp_path / "nvml-calls.jsonl"
    state_file = tmp_path / "governor-locked.json"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "sessions.db"}"\n'
        f'[governor]\nenabled = true\nidle_after_s = 0.2\nallow_clock_control = true\nstate_file = "{state_file}"\n'
        f'[[backends]]\nname = "ollama"\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    env = dict(
        os.environ,
        CLAW_CONFIG=str(config),
        FAKE_NVML_LOG=str(log),
        PYTHONPATH=os.pathsep.join([str(FAKE_NVML_DIR), str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    processes = []

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "claw_tui", "serve", "--port", str(free_port())],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        processes.append(process)
        return process

    yield start, log, state_file
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_resets_locked_clocks(serve):
    start, log, state_file = serve
    process = start()
    wait_until(lambda: LOCK in nvml_calls(log, process.pid), timeout=30)
    assert state_file.exists()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    setters = [c for c in nvml_calls(log, process.pid) if c in (LOCK, RESET)]
    assert setters[0] == LOCK and setters[-1] == RESET
    assert not state_file.exists()
    assert "Traceback" not in process.stderr.read()


def test_after_kill_9_the_next_start_resets_the_clocks(serve):
    start, log, state_file = serve
    first = start()
    wait_until(lambda: LOCK in nvml_calls(log, first.pid) and state_file.exists(), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert RESET not in nvml_calls(log, first.pid)  # died locked
    note = json.loads(state_file.read_text())
    assert note["pid"] == first.pid and note["gpus"] == [0]

    second = start()
    wait_until(lambda: RESET in nvml_calls(log, second.pid), timeout=30)
    calls = nvml_calls(log, second.pid)
    assert calls.index(RESET) < (calls.index(LOCK) if LOCK in calls else len(calls))  # reset before anything
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0
    assert not state_file.exists()
    stderr = second.stderr.read()
    assert "reset GPU clocks left locked by a previous claw run" in stderr
    assert "Traceback" not in stderr
