"""The command line as an operator meets it: a reader that leaves the pipe early, a --replay file that is not
there, a config file named on purpose that is missing, and the small things `compare`, `gpu` and `export --list`
print."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from claw_tui import cli
from tests.conftest import start_demo_session
from tests.test_nvml_source import FakeGpu, FakeNvml

REPO = Path(__file__).parent.parent
FAKE_NVML_DIR = Path(__file__).parent / "fake_nvml"
TRACE = REPO / "tests" / "fixtures" / "traces" / "h200_idle_resident.jsonl.gz"


def claw(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "claw_tui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
        cwd=REPO,
        **kwargs,
    )


def claw_into_closed_pipe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run claw with stdout on a pipe whose reader has already gone, as `claw ... | head -1` ends up."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "claw_tui", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=dict(os.environ, **(env or {})),
            cwd=REPO,
        )
    finally:
        os.close(write_end)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def summary_file(path: Path, session_id: str) -> Path:
    summary = {
        "schema": "claw.summary/1",
        "session": {"id": session_id, "duration_s": 60.0},
        "energy": {"total_j": 1000.0, "idle_power_w": 90.0, "avg_power_w": 100.0},
        "tokens": {"prompt": 10, "completion": 100},
        "efficiency": {"tokens_per_joule": 0.1, "joules_per_token": 10.0, "tokens_per_s": 2.0},
        "latency_ms": {"p50": 100.0, "p95": 200.0, "p99": 300.0},
        "ttft_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0},
        "requests": {"total": 10, "ok": 10, "errors": 0, "by_status": {"ok": 10}},
    }
    path.write_text(json.dumps(summary))
    return path


@pytest.fixture
def store_with_a_failed_start(tmp_path) -> Path:
    """A session store holding a session that served a request, and one whose start failed (port taken)."""
    store = tmp_path / "sessions.db"
    runner = start_demo_session(tmp_path)
    try:
        reply = httpx.post(
            runner.session.gateway_url + "/api/chat",
            json={"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False},
            timeout=30,
        )
        assert reply.status_code == 200
    finally:
        runner.stop()
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{store}"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        failed = claw("--config", str(config), "serve", "--demo", "--port", str(taken.getsockname()[1]))
    assert failed.returncode == 1 and "cannot listen" in failed.stderr
    return store


# ---- a reader that leaves early -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "export --list --store {store}",
        "export --list --all --store {store}",
        "config show",
        "config path",
        "--help",
        "--version",
        "compare {a} {b}",
        "gpu --demo",
        "gpu --demo --json --watch --count 50 --interval 0.01",
        "doctor --demo",
    ],
)
def test_a_closed_pipe_ends_every_command_quietly(command, tmp_path, store_with_a_failed_start):
    config = tmp_path / "empty.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n[governor]\nstate_file = "{tmp_path / "locked.json"}"\n'
    )
    args = shlex.split(
        command.format(
            store=store_with_a_failed_start,
            a=summary_file(tmp_path / "a.json", "a"),
            b=summary_file(tmp_path / "b.json", "b"),
        )
    )
    result = claw_into_closed_pipe(*args, env={"CLAW_CONFIG": str(config)})
    assert result.stderr == "" and result.returncode == 0


def test_export_list_into_head_prints_the_first_line_and_no_traceback(store_with_a_failed_start):
    result = subprocess.run(
        f"{shlex.quote(sys.executable)} -m claw_tui export --list --all --store {store_with_a_failed_start} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.stdout.startswith("session ") and result.stdout.count("\n") == 1
    assert result.stderr == ""


# ---- --replay -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--replay", "{missing}"],
        ["serve", "--port", "0", "--replay", "{missing}"],
        ["--replay", "{missing}", "serve", "--port", "0"],
        ["gpu", "--replay", "{missing}"],
        ["--replay", "{missing}", "gpu", "--json"],
    ],
)
def test_a_missing_replay_file_is_one_line_and_exit_2(args, tmp_path):
    missing = tmp_path / "missing.jsonl"
    args = [arg.format(missing=missing) for arg in args]
    # No NVML on the test box: before the check, the console and the gateway started and blamed the driver.
    env = {"PYTHONPATH": os.pathsep.join([str(FAKE_NVML_DIR), str(REPO)]), "FAKE_NVML_ABSENT": "1"}
    result = claw(*args, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr == f"claw: --replay: cannot read trace {missing}: No such file or directory\n"
    assert result.stdout == ""


def test_a_broken_replay_file_names_its_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"type": "header", "version": 1, "gpus": [{"index": 0, "name": "x"}]}\n{"type": "pow')
    result = claw("serve", "--port", "0", "--replay", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith(f"claw: --replay: trace {broken}, line 2") and result.stderr.count("\n") == 1


def test_a_good_replay_file_still_plays(capsys):
    assert cli.main(["gpu", "--replay", str(TRACE), "--json"]) == 0
    [gpu] = json.loads(capsys.readouterr().out)["gpus"]
    assert gpu["name"] == "NVIDIA H200"


# ---- a config file named on purpose ---------------------------------------------------------------------------------


def test_a_missing_named_config_is_an_error_everywhere_and_config_path_says_so(tmp_path):
    missing = tmp_path / "nope.toml"
    env = {"CLAW_CONFIG": str(missing)}
    path = claw("config", "path", env=env)
    assert path.returncode == 0
    assert path.stdout.splitlines() == [
        str(missing),
        "does not exist: claw refuses to start until it does (claw config init writes it); chosen by $CLAW_CONFIG",
    ]
    expected = (
        f"claw: config error: {missing}: no such config file (named by $CLAW_CONFIG; "
        "`claw config init` writes one there)\n"
    )
    for args in (["config", "show"], ["export", "--list"], ["serve", "--port", "0"], []):
        result = claw(*args, env=env, stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stderr) == (2, expected), args
    doctor = claw("doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1 and "no such config file" in checks["config"]["detail"]

    init = claw("config", "init", env=env)
    assert init.returncode == 0 and missing.exists()
    assert claw("config", "path", env=env).stdout.splitlines()[1] == "exists; chosen by $CLAW_CONFIG"
    assert claw("config", "show", env=env).returncode == 0


def test_a_missing_default_config_means_the_defaults(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config-home")}
    path = claw("config", "path", env=env)
    assert path.stdout.splitlines()[1] == "does not exist (built-in defaults apply); chosen by default"
    assert claw("config", "show", env=env).returncode == 0


# ---- compare, gpu, export --list ----------------------------------------------------------------------------------


def test_compare_help_says_one_percent():
    result = claw("compare", "--help")
    assert "within 1%: same" in " ".join(result.stdout.split()) and "%%" not in result.stdout


def test_compare_heads_its_columns_a_and_b_and_names_the_files_above(tmp_path):
    long_name = "before-" + "x" * 64 + ".json"
    before = summary_file(tmp_path / long_name, "20261201-100000-aaaaaa")
    after = summary_file(tmp_path / "after.json", "20261201-110000-bbbbbb")
    lines = claw("compare", str(before), str(after)).stdout.splitlines()
    assert lines[0] == f"A: {long_name} (session 20261201-100000-aaaaaa, 60 s)"
    assert lines[1] == "B: after.json (session 20261201-110000-bbbbbb, 60 s)"
    header = lines[3]
    assert re.match(r"metric\s+A\s+B\s+delta \(B-A\)\s+%\s+B is$", header), header
    assert max(len(line) for line in lines[3:]) < 80


def test_gpu_without_a_driver_suggests_a_command_that_works(capsys, monkeypatch):
    no_driver = FakeNvml([FakeGpu()])
    no_driver.init_error = FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED
    monkeypatch.setitem(sys.modules, "pynvml", no_driver)
    assert cli.main(["gpu"]) == 1
    err = capsys.readouterr().err
    suggested = re.findall(r"'claw ([^']*)'", err)
    assert suggested and suggested[0] == "gpu --demo", err
    assert cli.main([*shlex.split(suggested[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpus"][0]["name"] == "NVIDIA H200"


def test_export_list_leaves_out_failed_starts_unless_all(store_with_a_failed_start):
    shown = claw("export", "--list", "--store", str(store_with_a_failed_start))
    rows = shown.stdout.splitlines()
    assert rows[0].startswith("session ") and len(rows) == 3
    assert re.search(r"\s1\s+ended \(demo\)$", rows[1])
    assert rows[2] == "(1 session that ended within 2 s without a request left out: failed starts; --all lists them)"

    every = claw("export", "--list", "--all", "--store", str(store_with_a_failed_start)).stdout.splitlines()
    assert len(every) == 3 and re.search(r"0 s\s+0\s+ended \(demo\)$", every[1])
