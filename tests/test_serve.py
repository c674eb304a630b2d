"""`claw serve --demo` as a process: SDK clients are metered, and SIGTERM / ctrl-c stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import ollama
import openai
import pytest

from tests.conftest import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve_process(tmp_path):
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.05\n')
    env = dict(os.environ, CLAW_CONFIG=str(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port), "--sim-speed", "20"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(url + "/api/version", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    wait_until(up, timeout=30)
    assert process.poll() is None, process.stderr.read()
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_meters_sdk_requests_and_stops_cleanly(serve_process, stop_signal):
    process, url = serve_process
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hello"}])
    ollama.Client(host=url).chat(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}])

    def two_metered():
        records = httpx.get(url + "/claw/v1/requests").json()["requests"]
        return records if len(records) == 2 and all(r["energy_j"] > 0 for r in records) else None

    records = wait_until(two_metered, timeout=15)
    assert all(r["completion_tokens"] > 0 and r["status"] == "ok" for r in records)
    process.send_signal(stop_signal)
    assert process.wait(timeout=20) == 0
    log = process.stderr.read()
    assert "gateway listening on" in log and "stopped cleanly" in log
    assert "Traceback" not in log


def test_serve_reports_a_taken_port(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n')
        env = dict(os.environ, CLAW_CONFIG=str(config))
        result = subprocess.run(
            [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
