"""`claw doctor` as a process: NVML through a fake module on PYTHONPATH, a simulated Ollama as the backend, and
each check's pass / warn / fail with the exit status that follows."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_demo_session

REPO = Path(__file__).parent.parent
FAKE_NVML_DIR = Path(__file__).parent / "fake_nvml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A running demo session: its simulated Ollama is the backend the doctor checks."""
    runner = start_demo_session(tmp_path_factory.mktemp("doctor-backend"))
    yield runner.session
    runner.stop()


def write_config(tmp_path: Path, backend_url: str, extra: str = "", port: int | None = None) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{port or free_port()}"\n'
        f'[store]\npath = "{tmp_path / "sessions.db"}"\n'
        f'[governor]\nstate_file = "{tmp_path / "locked.json"}"\n{extra}\n'
        f'[[backends]]\nname = "sim"\nurl = "{backend_url}"\n'
    )
    return config


def doctor(config: Path, *args: str, **env: str) -> tuple[int, dict[str, dict], str]:
    environment = dict(
        os.environ, CLAW_CONFIG=str(config), PYTHONPATH=os.pathsep.join([str(FAKE_NVML_DIR), str(REPO)]), **env
    )
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=REPO,
    )
    assert "Traceback" not in result.stderr, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    return result.returncode, checks, result.stderr


def test_a_ready_box_passes_with_warnings_only(tmp_path, backend):
    code, checks, _ = doctor(write_config(tmp_path, backend.sim.url))
    assert code == 0
    assert checks["config"]["status"] == "pass"
    assert checks["NVML"]["status"] == "pass" and "NVIDIA H200" in checks["NVML"]["detail"]
    assert checks["power samples"]["status"] == "pass" and "spacing 20 ms" in checks["power samples"]["detail"]
    assert checks["clock control"]["status"] == "warn" and "dry run" in checks["clock control"]["detail"]
    assert checks["locked clocks"]["status"] == "pass"
    assert checks["backend sim"]["status"] == "pass" and "qwen3:8b" in checks["backend sim"]["detail"]
    assert checks["gateway port"]["status"] == "pass"
    assert checks["session store"]["status"] == "pass"
    assert not (tmp_path / "sessions.db").exists()  # the doctor looks; it does not create the store


def test_the_text_report_has_one_line_per_check(tmp_path, backend):
    config = write_config(tmp_path, backend.sim.url)
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, CLAW_CONFIG=str(config), PYTHONPATH=f"{FAKE_NVML_DIR}{os.pathsep}{REPO}"),
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0
    assert any(line.startswith("PASS  NVML") for line in lines)
    assert any(line.startswith("WARN  clock control") for line in lines)
    assert any("→ to let F6 really downclock" in line for line in lines)
    assert lines[-1].startswith("ready: 0 failed, 1 warning")


def test_no_driver_fails(tmp_path, backend):
    code, checks, _ = doctor(write_config(tmp_path, backend.sim.url), FAKE_NVML_ABSENT="1")
    assert code == 1
    assert checks["NVML"]["status"] == "fail" and "no NVIDIA GPU/driver found" in checks["NVML"]["detail"]
    assert "--demo" in checks["NVML"]["hint"]
    assert "power samples" not in checks


def test_power_samples_out_of_step_with_the_wall_clock(tmp_path, backend):
    config = write_config(tmp_path, backend.sim.url)
    code, checks, _ = doctor(config, FAKE_NVML_SKEW_S="1.5")
    assert code == 0 and checks["power samples"]["status"] == "warn"
    code, checks, _ = doctor(config, FAKE_NVML_SKEW_S="30")
    assert code == 1 and checks["power samples"]["status"] == "fail"
    assert re.search(r"\+300\d\d ms from the wall clock", checks["power samples"]["detail"])
    assert "NTP" in checks["power samples"]["hint"]


def test_backend_down_and_missing_agent_models_fail(tmp_path, backend):
    down = write_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    code, checks, _ = doctor(down)
    assert code == 1 and checks["backend sim"]["status"] == "fail" and "unreachable" in checks["backend sim"]["detail"]
    agents = write_config(
        tmp_path,
        backend.sim.url,
        '[[agents]]\nname = "writer"\nmodel = "no-such-model:70b"\n[[agents]]\nname = "helper"\nmodel = "qwen3:8b"\n',
    )
    code, checks, _ = doctor(agents)
    assert code == 1
    assert checks["agent models"]["status"] == "fail"
    assert "agent 'writer' uses no-such-model:70b" in checks["agent models"]["detail"]
    assert checks["agent models"]["hint"] == "ollama pull no-such-model:70b"


def test_clock_control_permission(tmp_path, backend):
    allowed = write_config(tmp_path, backend.sim.url, "allow_clock_control = true")
    code, checks, _ = doctor(allowed)
    expected = "pass" if os.geteuid() == 0 else "warn"
    assert code == 0 and checks["clock control"]["status"] == expected


def test_clocks_left_locked_by_a_dead_run_fail(tmp_path, backend):
    config = write_config(tmp_path, backend.sim.url)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    (tmp_path / "locked.json").write_text(json.dumps({"pid": process.pid, "gpus": [0], "mhz": 345}))
    code, checks, _ = doctor(config)
    assert code == 1 and checks["locked clocks"]["status"] == "fail"
    assert "nvidia-smi -rgc" in checks["locked clocks"]["hint"]


def test_port_taken_by_claw_warns_by_another_program_fails(tmp_path, backend):
    host, port = backend.server.host, backend.server.port
    code, checks, _ = doctor(write_config(tmp_path, backend.sim.url, port=port))
    assert code == 0 and checks["gateway port"]["status"] == "warn"
    assert "a running claw" in checks["gateway port"]["detail"]
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen()
        code, checks, _ = doctor(write_config(tmp_path, backend.sim.url, port=sock.getsockname()[1]))
    assert code == 1 and checks["gateway port"]["status"] == "fail"


def test_a_broken_config_fails_with_file_and_line(tmp_path, backend):
    config = tmp_path / "config.toml"
    config.write_text('[governor]\nidle_after_s = "soon"\n')
    code, checks, _ = doctor(config)
    assert code == 1
    assert checks["config"]["status"] == "fail"
    assert f"{config}:2" in checks["config"]["detail"] and "idle_after_s" in checks["config"]["detail"]
    assert "NVML" in checks  # the other checks still run, on the defaults


def test_demo_doctor_needs_no_gpu(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n[store]\npath = "{tmp_path / "s.db"}"\n'
        f'[governor]\nstate_file = "{tmp_path / "locked.json"}"\n'
    )
    code, checks, _ = doctor(config, "--demo", FAKE_NVML_ABSENT="1")
    assert code == 0 and all(c["status"] == "pass" for c in checks.values())
