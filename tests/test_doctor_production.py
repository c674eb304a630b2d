"""`claw doctor` as a production readiness checklist: GPU memory headroom with the models holding it, agents' context
budgets against their models' real context length, tokens beyond loopback, /metrics, and `--load N` through the
gateway against the [doctor] budgets. Through the command line, with NVML faked and a simulated Ollama as backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from claw_tui.config import Config, GatewayConfig
from claw_tui.session import Session, SessionOptions, SessionThread
from tests.conftest import FAST_SIM, start_demo_session
from tests.test_doctor import REPO, doctor, free_port, write_config


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A simulated Ollama (behind a demo session) with qwen3:8b loaded at a 4,096-token context."""
    runner = start_demo_session(tmp_path_factory.mktemp("doctor-production"))
    sim = runner.session.sim
    reply = httpx.post(
        sim.url + "/api/chat",
        json={
            "model": "qwen3:8b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
            "options": {"num_ctx": 4096},
        },
        timeout=30,
    )
    assert reply.status_code == 200
    yield sim
    runner.stop()


def agent(name: str, model: str = "qwen3:8b", **settings) -> str:
    lines = [f'[[agents]]\nname = "{name}"\nmodel = "{model}"']
    for key, value in settings.items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


# ---- GPU memory ---------------------------------------------------------------------------------------------------


def test_gpu_memory_above_the_threshold_fails_and_names_the_models(tmp_path, backend):
    config = write_config(tmp_path, backend.url)
    code, checks, _ = doctor(config, FAKE_NVML_VRAM_USED_MIB="130000")
    memory = checks["GPU memory"]
    assert code == 1 and memory["status"] == "fail"
    assert "GPU 0: 127.0 of 140.4 GiB (90% > 85%)" in memory["detail"]
    assert "held by qwen3:8b (" in memory["detail"] and "backend sim" in memory["detail"]
    assert "ollama stop" in memory["hint"] and "max_vram_pct" in memory["hint"]

    config = write_config(tmp_path, backend.url, extra="[doctor]\nmax_vram_pct = 95")
    code, checks, _ = doctor(config, FAKE_NVML_VRAM_USED_MIB="130000")
    assert checks["GPU memory"]["status"] == "pass" and "(90% ≤ 95%)" in checks["GPU memory"]["detail"]


def test_gpu_memory_with_headroom_passes(tmp_path, backend):
    code, checks, _ = doctor(write_config(tmp_path, backend.url))
    assert code == 0
    assert checks["GPU memory"]["status"] == "pass" and "(0% ≤ 85%)" in checks["GPU memory"]["detail"]


def test_gpu_memory_is_skipped_without_telemetry(tmp_path, backend):
    _, checks, _ = doctor(write_config(tmp_path, backend.url), FAKE_NVML_ABSENT="1")
    assert checks["GPU memory"]["status"] == "skip"


# ---- agents' context ----------------------------------------------------------------------------------------------


def test_an_agent_budget_beyond_the_model_context_fails(tmp_path, backend):
    extra = agent("roomy", max_context_tokens=65536) + agent("fine", max_context_tokens=32000)
    code, checks, _ = doctor(write_config(tmp_path, backend.url, extra=extra))
    context = checks["agent context"]
    assert code == 1 and context["status"] == "fail"
    assert context["detail"] == (
        "agent 'roomy' (qwen3:8b): max_context_tokens 65,536 > the model's context length 40,960"
    )
    assert context["hint"] == "set max_context_tokens ≤ 40960 for agent 'roomy'"


def test_an_agent_budget_beyond_its_num_ctx_fails(tmp_path, backend):
    extra = agent("cut", max_context_tokens=16000, options="{ num_ctx = 8192 }")
    code, checks, _ = doctor(write_config(tmp_path, backend.url, extra=extra))
    context = checks["agent context"]
    assert code == 1 and context["status"] == "fail"
    assert "max_context_tokens 16,000 > its num_ctx 8,192" in context["detail"]
    assert "raise options.num_ctx to ≥ 16000" in context["hint"]


def test_a_num_ctx_beyond_the_model_fails(tmp_path, backend):
    extra = agent("huge", model="llama3.2:3b", options="{ num_ctx = 262144 }")
    _, checks, _ = doctor(write_config(tmp_path, backend.url, extra=extra))
    assert checks["agent context"]["status"] == "fail"
    assert "num_ctx 262,144 > the model's context length 131,072" in checks["agent context"]["detail"]


def test_a_budget_beyond_the_loaded_context_warns(tmp_path, backend):
    code, checks, _ = doctor(write_config(tmp_path, backend.url, extra=agent("loaded", max_context_tokens=8000)))
    context = checks["agent context"]
    assert code == 0 and context["status"] == "warn"
    assert "the 4,096 tokens the model is loaded with (/api/ps)" in context["detail"]
    assert "set options.num_ctx = 8000 for agent 'loaded'" in context["hint"]


def test_budgets_that_fit_pass(tmp_path, backend):
    extra = agent("a", max_context_tokens=4000) + agent("b", max_context_tokens=16000, options="{ num_ctx = 16384 }")
    code, checks, _ = doctor(write_config(tmp_path, backend.url, extra=extra))
    assert code == 0 and checks["agent context"]["status"] == "pass"
    assert "agent 'b' (qwen3:8b): 16,000 ≤ num_ctx 16,384" in checks["agent context"]["detail"]


# ---- who may call the gateway ---------------------------------------------------------------------------------------


def listen_config(tmp_path, backend, gateway: str) -> os.PathLike:
    config = write_config(tmp_path, backend.url)
    text = config.read_text().replace('listen = "127.0.0.1:', 'listen = "0.0.0.0:', 1)
    config.write_text(text.replace("[gateway]\n", f"[gateway]\n{gateway}", 1))
    return config


def test_listening_beyond_loopback_without_tokens_fails(tmp_path, backend):
    code, checks, _ = doctor(listen_config(tmp_path, backend, ""))
    access = checks["gateway access"]
    assert code == 1 and access["status"] == "fail"
    assert access["detail"].startswith("listens on 0.0.0.0:") and "without tokens" in access["detail"]
    assert "[gateway] tokens" in access["hint"] and "127.0.0.1" in access["hint"]


def test_tokens_without_admin_tokens_warn_and_both_pass(tmp_path, backend):
    _, checks, _ = doctor(listen_config(tmp_path, backend, 'tokens = ["t0k3n-for-clients"]\n'))
    assert checks["gateway access"]["status"] == "warn" and "admin_tokens" in checks["gateway access"]["hint"]
    both = 'tokens = ["t0k3n-for-clients"]\nadmin_tokens = ["t0k3n-for-admins"]\n'
    _, checks, _ = doctor(listen_config(tmp_path, backend, both))
    assert (
        checks["gateway access"]["status"] == "pass"
        and "1 client and 1 admin tokens" in checks["gateway access"]["detail"]
    )


# ---- /metrics and a running claw ------------------------------------------------------------------------------------


def test_metrics_are_skipped_when_no_claw_runs(tmp_path, backend):
    _, checks, _ = doctor(write_config(tmp_path, backend.url))
    assert checks["metrics"]["status"] == "skip" and "claw serve" in checks["metrics"]["hint"]


def test_a_running_claw_with_tokens_is_scraped_and_loaded(tmp_path, backend):
    port = free_port()
    token = "s3cret-t0ken"
    config = write_config(tmp_path, backend.url, extra="", port=port)
    config.write_text(config.read_text().replace("[gateway]\n", f'[gateway]\ntokens = ["{token}"]\n', 1))
    gateway = Config(gateway=GatewayConfig(listen=f"127.0.0.1:{port}", tokens=[token]))
    options = SessionOptions(demo=True, listen=("127.0.0.1", port), use_store=False, sim_speed=FAST_SIM)
    runner = SessionThread(Session(gateway, options))
    runner.start()
    try:
        code, checks, stderr = doctor(config, "--load", "4", "--model", "llama3.2:3b")
    finally:
        runner.stop()
    assert code == 0
    assert checks["gateway port"]["status"] == "warn" and "running claw" in checks["gateway port"]["detail"]
    assert checks["metrics"]["status"] == "pass"
    assert checks["metrics"]["detail"].startswith(f"http://127.0.0.1:{port}/metrics answers (")
    assert checks["load"]["status"] == "pass"
    assert checks["load"]["detail"].startswith(
        f"4 at once to llama3.2:3b (the claw at http://127.0.0.1:{port}): 0 failed"
    )
    assert "through the claw at" in stderr


def test_the_load_picks_a_chat_model_not_a_loaded_embedding_model(tmp_path, backend):
    port = free_port()
    config = write_config(tmp_path, backend.url, port=port)
    options = SessionOptions(demo=True, listen=("127.0.0.1", port), use_store=False, sim_speed=FAST_SIM)
    runner = SessionThread(Session(Config(), options))
    runner.start()
    try:
        gateway = runner.session.gateway_url
        embedded = httpx.post(gateway + "/api/embed", json={"model": "nomic-embed-text", "input": "x"}, timeout=30)
        assert embedded.status_code == 200
        loaded = [m["name"] for m in httpx.get(gateway + "/api/ps", timeout=10).json()["models"]]
        assert loaded[0] == "nomic-embed-text:latest"
        code, checks, _ = doctor(config, "--load", "2")
    finally:
        runner.stop()
    assert code == 0 and checks["load"]["status"] == "pass"
    assert checks["load"]["detail"].startswith("2 at once to qwen3:32b (the claw at ")


def test_a_model_that_cannot_chat_fails_the_load_at_the_first_request(tmp_path):
    code, checks, _ = demo_doctor(tmp_path, "--load", "3", "--model", "nomic-embed-text")
    load = checks["load"]
    assert code == 1 and load["status"] == "fail"
    assert load["detail"].startswith("a first request to nomic-embed-text failed: ")


# ---- --load ---------------------------------------------------------------------------------------------------------


def demo_doctor(tmp_path, *args: str, extra: str = "") -> tuple[int, dict[str, dict], str]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n{extra}\n[store]\npath = "{tmp_path / "s.db"}"\n'
        f'[governor]\nstate_file = "{tmp_path / "locked.json"}"\n'
    )
    return doctor(config, "--demo", *args, FAKE_NVML_ABSENT="1")


def test_demo_load_of_100_passes(tmp_path):
    code, checks, stderr = demo_doctor(tmp_path, "--load", "100")
    load = checks["load"]
    assert load["status"] == "pass", load
    assert load["detail"].startswith("100 at once to ") and ": 0 failed (0.0%, budget 0.5%)" in load["detail"]
    assert code == 0 and all(c["status"] == "pass" for c in checks.values())
    assert stderr.startswith("claw doctor: 100 requests at once to ")


def test_a_gateway_that_sheds_load_fails_and_says_what_to_raise(tmp_path):
    code, checks, _ = demo_doctor(tmp_path, "--load", "12", extra="max_in_flight = 2\nqueue_size = 2")
    load = checks["load"]
    assert code == 1 and load["status"] == "fail"
    assert "8 failed (66.7%, budget 0.5%)" in load["detail"] and "is busy" in load["detail"]
    assert "raise queue_size to at least 10" in load["hint"]


def test_a_latency_budget_too_tight_fails(tmp_path):
    code, checks, _ = demo_doctor(tmp_path, "--load", "4", extra="[doctor]\np95_latency_ms = 1")
    load = checks["load"]
    assert code == 1 and load["status"] == "fail" and "(budget 1 ms)" in load["detail"]
    assert "[doctor] p95_latency_ms = 1" in load["hint"]


def test_load_through_a_gateway_started_for_the_check(tmp_path, backend):
    config = write_config(tmp_path, backend.url)
    code, checks, stderr = doctor(config, "--load", "6", "--model", "llama3.2:3b")
    load = checks["load"]
    assert code == 0 and load["status"] == "pass"
    assert "a gateway claw doctor started (no claw runs at" in load["detail"]
    assert checks["metrics"]["status"] == "skip"
    assert stderr.startswith("claw doctor: 6 requests at once to llama3.2:3b through a gateway claw doctor started")


def test_load_must_be_a_positive_count():
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "doctor", "--load", "0"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 2 and "--load: must be at least 1, got 0" in result.stderr


def test_the_text_report_marks_skipped_lines_and_counts_them(tmp_path, backend):
    config = write_config(tmp_path, backend.url)
    env = dict(
        os.environ,
        CLAW_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "fake_nvml"), str(REPO)]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "doctor"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("SKIP  metrics ") for line in lines)
    assert lines[-1].endswith(" skipped") and lines[-1].startswith("ready: 0 failed")


def test_config_init_writes_the_doctor_section_and_show_prints_it(tmp_path):
    path = tmp_path / "config.toml"
    env = dict(os.environ, CLAW_CONFIG=str(path))
    run = [sys.executable, "-m", "claw_tui", "config"]
    assert subprocess.run([*run, "init"], capture_output=True, env=env, cwd=REPO).returncode == 0
    text = path.read_text()
    section = text[text.index("[doctor]") :]
    for line in ("max_vram_pct = 85.0", "p95_latency_ms = 15000.0", "max_error_rate = 0.005", 'load_model = ""'):
        assert f"\n{line}\n" in section
    path.write_text(text.replace("max_vram_pct = 85.0", "max_vram_pct = 90.0"))
    shown = subprocess.run([*run, "show", "--json"], capture_output=True, text=True, env=env, cwd=REPO)
    assert json.loads(shown.stdout)["doctor"] == {
        "max_vram_pct": 90.0,
        "p95_latency_ms": 15000.0,
        "max_error_rate": 0.005,
        "load_model": "",
    }
    path.write_text(text.replace("max_error_rate = 0.005", "max_error_rate = 2"))
    shown = subprocess.run([*run, "show"], capture_output=True, text=True, env=env, cwd=REPO)
    assert shown.returncode == 2 and "doctor.max_error_rate: must be at most 1" in shown.stderr
