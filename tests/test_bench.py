"""`claw bench` through the gateway: percentiles, energy from the gateway's records, summaries `claw compare` reads,
workload files, and the before/after workflow (governor off vs on) in the demo."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from claw_tui.bench import WorkloadError, load_workload_file, synthetic_prompts
from claw_tui.summary import SCHEMA
from tests.conftest import demo_config, start_demo_session

REPO = Path(__file__).parent.parent


def claw(*args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.05\n')
    return subprocess.run(
        [sys.executable, "-m", "claw_tui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=dict(os.environ, CLAW_CONFIG=str(config)),
    )


@pytest.fixture
def gateway(tmp_path):
    runner = start_demo_session(tmp_path)
    yield runner.session
    runner.stop()


def test_bench_against_a_running_gateway_matches_its_records(gateway, tmp_path):
    out = tmp_path / "run.json"
    result = claw(
        "bench",
        "--url",
        gateway.gateway_url,
        "--model",
        "qwen3:8b",
        "--workload",
        "short",
        "--concurrency",
        "3",
        "--requests",
        "9",
        "-o",
        str(out),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for needle in ("TTFT ms", "ITL ms", "latency ms", "tokens/s", "tok/J all-in", "9 requests (0 errors)"):
        assert needle in result.stdout
    assert "bench: 9/9 requests" in result.stderr  # progress, plain text when not on a terminal
    summary = json.loads(out.read_text())
    assert summary["schema"] == SCHEMA
    bench = summary["bench"]
    assert bench["requests_sent"] == 9 and bench["records_matched"] == 9 and bench["energy_measured"] is True
    assert bench["client_ttft_ms"]["p50"] > 0 and bench["itl_ms"]["p95"] is not None
    assert summary["requests"]["total"] == 9 and summary["requests"]["ok"] == 9
    # Energy is the gateway's own: the sum of the bench's records equals what /claw/v1/requests reports.
    records = httpx.get(gateway.gateway_url + "/claw/v1/requests?limit=100").json()["requests"]
    assert summary["energy"]["active_j"] == pytest.approx(sum(r["energy_j"] for r in records), rel=0.02)
    assert summary["tokens"]["completion"] == sum(r["completion_tokens"] for r in records)
    e = summary["energy"]
    assert e["total_j"] >= e["active_j"] > 0 and e["idle_j"] >= 0
    assert summary["efficiency"]["tokens_per_joule"] == pytest.approx(
        summary["tokens"]["completion"] / e["total_j"], rel=1e-3
    )
    assert summary["by_model"][0]["model"] == "qwen3:8b"


def test_bench_openai_surface_and_an_agent(gateway, tmp_path):
    result = claw(
        "bench",
        "--url",
        gateway.gateway_url,
        "--model",
        "support",
        "--api",
        "openai",
        "--requests",
        "4",
        "--concurrency",
        "2",
        "--workload",
        "short",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = httpx.get(gateway.gateway_url + "/claw/v1/requests?limit=10").json()["requests"]
    assert len(records) == 4 and {r["agent"] for r in records} == {"support"}
    assert {r["endpoint"] for r in records} == {"/v1/chat/completions"}


def test_two_demo_runs_and_compare_reproduce_the_governor_workflow(tmp_path):
    """Bursty traffic (open-loop arrivals with gaps): the governor downclocks in the gaps and idle power drops."""
    common = (
        "--demo",
        "--sim-speed",
        "20",
        "--model",
        "qwen3:8b",
        "--workload",
        "short",
        "--rate",
        "1.5",
        "--requests",
        "6",
        "--concurrency",
        "2",
        "--seed",
        "3",
    )
    off, on = tmp_path / "off.json", tmp_path / "on.json"
    first = claw("bench", *common, "--governor", "off", "-o", str(off), tmp_path=tmp_path)
    second = claw("bench", *common, "--governor", "on", "--idle-after", "0.1", "-o", str(on), tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    before, after = json.loads(off.read_text()), json.loads(on.read_text())
    assert before["session"]["demo"] is True and before["governor"]["downclocked_s"] == 0
    assert after["governor"]["downclocked_s"] > 0 and after["governor"]["wakes"] > 0
    assert after["governor"]["wake_latency_ms_p95"] < 5
    assert after["energy"]["idle_power_w"] < before["energy"]["idle_power_w"]
    compared = claw("compare", str(off), str(on), tmp_path=tmp_path)
    assert compared.returncode == 0, compared.stderr
    idle_line = next(line for line in compared.stdout.splitlines() if line.startswith("idle power"))
    assert idle_line.endswith("better")
    assert "tok/J all-in" in compared.stdout and "tok/J requests" in compared.stdout and "P95 TTFT" in compared.stdout


def test_duration_bound_runs_and_a_jsonl_workload(gateway, tmp_path):
    workload = tmp_path / "prompts.jsonl"
    workload.write_text(
        "# two requests\n"
        '{"prompt": "Say hi", "max_tokens": 8}\n\n'
        '{"messages": [{"role": "user", "content": "Count to three"}], "model": "llama3.2:3b"}\n'
    )
    result = claw(
        "bench",
        "--url",
        gateway.gateway_url,
        "--model",
        "qwen3:8b",
        "--workload",
        str(workload),
        "--duration",
        "1.0",
        "--concurrency",
        "2",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = httpx.get(gateway.gateway_url + "/claw/v1/requests?limit=1000").json()["requests"]
    assert len(records) >= 4 and {r["model"] for r in records} == {"qwen3:8b", "llama3.2:3b"}


def test_bench_errors_are_clear(tmp_path, gateway):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nothing": 1}\n')
    result = claw("bench", "--url", gateway.gateway_url, "--workload", str(bad), tmp_path=tmp_path)
    assert result.returncode == 2 and f'{bad}:2: needs "prompt"' in result.stderr
    unknown = claw("bench", "--url", gateway.gateway_url, "--workload", "huge", tmp_path=tmp_path)
    assert unknown.returncode == 2 and "unknown workload 'huge'" in unknown.stderr
    nowhere = claw("bench", "--url", "http://127.0.0.1:9", "--requests", "1", tmp_path=tmp_path)
    assert nowhere.returncode == 1 and "cannot reach the gateway" in nowhere.stderr
    missing = claw("bench", "--url", gateway.gateway_url, "--model", "no-such", "--requests", "2", tmp_path=tmp_path)
    assert missing.returncode == 1 and "2 requests (2 errors)" in missing.stdout
    assert "model 'no-such' not found" in missing.stdout
    for output in (result, unknown, nowhere, missing):
        assert "Traceback" not in output.stderr


def test_bench_against_a_server_that_is_not_claw_reports_latency_only(tmp_path):
    import asyncio
    import threading

    from claw_tui.sim.server import SimServer

    ready = threading.Event()
    holder = {}

    def serve():
        async def main():
            async with SimServer(speed=20) as server:
                holder["url"] = server.url
                holder["stop"] = asyncio.Event()
                ready.set()
                await holder["stop"].wait()

        holder["loop"] = asyncio.new_event_loop()
        holder["loop"].run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        out = tmp_path / "plain.json"
        result = claw(
            "bench",
            "--url",
            holder["url"],
            "--model",
            "qwen3:8b",
            "--requests",
            "3",
            "--workload",
            "short",
            "-o",
            str(out),
            tmp_path=tmp_path,
        )
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
    assert result.returncode == 0, result.stderr
    assert "not a claw gateway" in result.stderr and "energy         not measured" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["bench"]["energy_measured"] is False and summary["requests"]["ok"] == 3
    assert summary["ttft_ms"]["p50"] > 0


def test_synthetic_workloads_are_seeded_and_mixed():
    first = [p.messages[0]["content"] for p, _ in zip(synthetic_prompts("mixed", seed=1), range(50))]
    again = [p.messages[0]["content"] for p, _ in zip(synthetic_prompts("mixed", seed=1), range(50))]
    assert first == again
    kinds = [p.kind for p, _ in zip(synthetic_prompts("mixed", seed=1), range(500))]
    assert 0.1 < kinds.count("long") / len(kinds) < 0.3
    long_prompt = next(synthetic_prompts("long", seed=random.randint(0, 99)))
    assert len(long_prompt.messages[0]["content"]) > 5000 and long_prompt.max_tokens >= 384
    with pytest.raises(WorkloadError):
        synthetic_prompts("nope")


def test_workload_file_errors_name_the_line(tmp_path):
    path = tmp_path / "w.jsonl"
    for text, needle in (
        ("not json\n", ":1: not JSON"),
        ("[1]\n", ":1: expected a JSON object"),
        ('{"prompt": "a", "max_tokens": 0}\n', ":1: max_tokens"),
        ("\n# only\n", "no requests"),
        ('{"prompt": "a", "options": 3}\n', ":1: options"),
    ):
        path.write_text(text)
        with pytest.raises(WorkloadError, match=needle):
            load_workload_file(path)


def test_governor_switch_is_checked(tmp_path):
    config = demo_config()
    runner = start_demo_session(tmp_path, config)
    try:
        url = runner.session.gateway_url
        result = claw(
            "bench",
            "--url",
            url,
            "--governor",
            "on",
            "--idle-after",
            "5",
            "--requests",
            "1",
            "--model",
            "qwen3:8b",
            "--workload",
            "short",
            tmp_path=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        status = httpx.get(url + "/claw/v1/governor").json()
        assert status["enabled"] is True and status["idle_after_s"] == 5
    finally:
        runner.stop()
