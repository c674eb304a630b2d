"""The efficiency summary: its schema from a live session, `claw export` of past sessions in every format,
`claw compare`, alerts, and F6 / F7 in the console."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from claw_tui.export import SummaryFormatError, compare, load_summary, render_compare, to_markdown
from claw_tui.summary import SCHEMA, AlertTracker, build_summary
from claw_tui.summary_types import Summary
from claw_tui.telemetry.types import GpuSnapshot
from claw_tui.ui.app import ClawApp
from tests.conftest import demo_config, start_demo_session, wait_until

SPEC_KEYS = {
    "session": {"id", "started_at", "ended_at", "duration_s", "host", "demo"},
    "energy": {
        "total_j",
        "idle_j",
        "active_j",
        "counter_j",
        "integral_j",
        "avg_power_w",
        "idle_power_w",
        "active_power_w",
        "power_stddev_w",
    },
    "tokens": {"prompt", "completion"},
    "efficiency": {"tokens_per_joule", "joules_per_token", "tokens_per_s"},
    "latency_ms": {"p50", "p95", "p99"},
    "ttft_ms": {"p50", "p95", "p99"},
    "requests": {"total", "ok", "errors", "by_status"},
    "governor": {"enabled", "downclocked_s", "wake_latency_ms_p95", "idle_power_w_downclocked", "idle_power_w_normal"},
}


def claw(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    for value in (env or {}).values():
        if value.endswith(".toml") and not Path(value).exists():
            Path(value).write_text("")
    return subprocess.run(
        [sys.executable, "-m", "claw_tui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
        cwd=cwd or Path(__file__).parent.parent,
    )


@pytest.fixture(scope="module")
def finished_session(tmp_path_factory):
    """A demo session that served requests from both SDKs and an agent, then stopped; plus its final summary."""
    tmp_path = tmp_path_factory.mktemp("export")
    runner = start_demo_session(tmp_path)
    session = runner.session
    url = session.gateway_url
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hello"}])
    ollama.Client(host=url).chat(model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}])
    ollama.Client(host=url).chat(model="support", messages=[{"role": "user", "content": "my order?"}])
    with pytest.raises(ollama.ResponseError):
        ollama.Client(host=url).chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    wait_until(lambda: all(r.energy_final for r in session.ledger.records()), timeout=10)
    live = httpx.get(url + "/claw/v1/summary", timeout=30).json()
    runner.stop()
    return tmp_path, session, live


def test_live_summary_has_the_spec_schema_and_adds_up(finished_session):
    _, _session, summary = finished_session
    assert summary["schema"] == SCHEMA
    for section, keys in SPEC_KEYS.items():
        assert keys <= set(summary[section]), section
    assert summary["gpus"] == [{"index": 0, "name": "NVIDIA H200", "driver": "sim", "power_limit_w": 700.0}]
    e = summary["energy"]
    buckets = e["active_j"] + e["load_j"] + e["unmetered_j"] + e["idle_j"] + e["pending_j"]
    assert e["total_j"] == pytest.approx(buckets, abs=0.01)
    assert e["requests_j"] == e["active_j"] > 0
    assert e["load_j"] > 0  # the simulator loads each model on its first request
    assert e["integral_j"] == e["total_j"]
    assert abs(e["counter_vs_integral_pct"]) < 1.0  # SPEC: session energy within 1% of the energy counter
    assert summary["requests"]["total"] == 4 and summary["requests"]["ok"] == 3
    assert summary["requests"]["by_status"] == {"error": 1, "ok": 3}
    completion = summary["tokens"]["completion"]
    assert summary["efficiency"]["tokens_per_joule"] == pytest.approx(completion / e["total_j"], rel=1e-3)
    assert summary["efficiency"]["joules_per_token"] == pytest.approx(e["total_j"] / completion, rel=1e-3)
    assert {row["model"] for row in summary["by_model"]} == {"qwen3:8b", "llama3.2:3b", "other"}  # a 404 opens no row
    assert [row["agent"] for row in summary["by_agent"]] == ["support"]
    assert sum(row["tokens"]["completion"] for row in summary["by_model"]) == completion
    assert summary["governor"]["enabled"] is False and summary["governor"]["mode"] == "sim"
    assert set(summary["alerts"]) >= {"power", "temperature", "hw_slowdown", "thermal", "power_cap"}


def test_export_of_the_past_session_in_every_format(finished_session, tmp_path):
    store_dir, session, live = finished_session
    env = {"CLAW_CONFIG": str(tmp_path / "none.toml")}
    store = str(store_dir / "sessions.db")
    listed = claw("export", "--list", "--store", store, env=env)
    assert listed.returncode == 0 and session.id in listed.stdout and "ended" in listed.stdout

    out = claw("export", "--store", store, "--session", session.id[:-2], env=env)
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert exported["schema"] == SCHEMA and exported["session"]["id"] == session.id
    assert exported["session"]["state"] == "ended"
    assert exported["requests"] == live["requests"]
    assert exported["tokens"] == live["tokens"]
    assert exported["energy"]["total_j"] >= live["energy"]["total_j"]  # the session idled on until it stopped
    assert exported["by_agent"][0]["agent"] == "support"

    md = claw("export", "--store", store, "--format", "md", "-o", str(tmp_path), env=env)
    assert md.returncode == 0, md.stderr
    md_file = tmp_path / f"claw-summary-{session.id}.md"
    text = md_file.read_text()
    assert (
        f"session {session.id}" in text
        and "tok/J all-in" in text
        and "tok/J requests" in text
        and "model loads" in text
        and "`qwen3:8b`" in text
    )
    assert "Cross-check: energy counter" in text

    rows = list(csv.DictReader(io.StringIO(claw("export", "--store", store, "--format", "csv", env=env).stdout)))
    assert len(rows) == 4
    assert {r["status"] for r in rows} == {"ok", "error"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(float(r["energy_j"]) > 0 and float(r["ttft_ms"]) > 0 and int(r["completion_tokens"]) > 0 for r in ok)
    assert all(r["attribution"] == "timed" for r in ok)  # Ollama's timings placed each one's work
    assert sum(float(r["load_j"]) for r in ok) > 0  # the first request to each model loaded it
    assert {r["agent"] for r in rows} == {"", "support"}


GROUP_KEYS = ["requests", "tokens", "energy_j", "prefill_j", "decode_j", "efficiency", "latency_ms", "ttft_ms"]
SUMMARY_LAYOUT = {  # every key the JSON carries, in its order (the export schema is a public contract)
    "": [
        "schema",
        "session",
        "gpus",
        "energy",
        "tokens",
        "efficiency",
        "latency_ms",
        "ttft_ms",
        "requests",
        "by_model",
        "by_agent",
        "governor",
        "alerts",
        "model_events",
    ],
    "energy": [
        "total_j",
        "active_j",
        "requests_j",
        "load_j",
        "unmetered_j",
        "idle_j",
        "pending_j",
        "parking_j",
        "idle_baseline_w",
        "idle_s",
        "active_s",
        "load_s",
        "unmetered_s",
        "counter_j",
        "integral_j",
        "counter_minus_integral_j",
        "counter_vs_integral_pct",
        "avg_power_w",
        "idle_power_w",
        "active_power_w",
        "power_stddev_w",
    ],
    "tokens": ["prompt", "completion"],
    "efficiency": [
        "tokens_per_joule",
        "joules_per_token",
        "active_tokens_per_joule",
        "active_joules_per_token",
        "tokens_per_s",
    ],
    "latency_ms": ["p50", "p95", "p99"],
    "ttft_ms": ["p50", "p95", "p99"],
    "requests": ["total", "ok", "errors", "by_status"],
    "by_model": ["model", *GROUP_KEYS, "load_count", "load_j", "parking_s", "parking_j", "unload_after"],
    "by_agent": ["agent", *GROUP_KEYS],
    "governor": [
        "enabled",
        "mode",
        "enabled_s",
        "downclocked_s",
        "wakes",
        "wake_latency_ms_p95",
        "idle_power_w_downclocked",
        "idle_power_w_normal",
        "models_unloaded",
        "idle_j_downclocked",
        "idle_s_downclocked",
        "idle_j_normal",
        "idle_s_normal",
    ],
}


def test_summary_json_keeps_its_layout_and_reads_back_the_same(finished_session, tmp_path):
    store_dir, session, live = finished_session
    env = {"CLAW_CONFIG": str(tmp_path / "none.toml")}
    store = str(store_dir / "sessions.db")
    exported = json.loads(claw("export", "--store", store, "--session", session.id, env=env).stdout)
    for summary in (live, exported):
        for section, keys in SUMMARY_LAYOUT.items():
            for part in summary[section] if section.startswith("by_") else [summary[section] if section else summary]:
                assert list(part) == keys, section
        assert list(summary["by_model"][0]["unload_after"][0]) == ["minutes", "saved_j", "reloads", "reload_j", "net_j"]
        assert all(isinstance(v, float) or v is None for v in summary["energy"].values())
        assert all(type(summary["requests"][k]) is int for k in ("total", "ok", "errors"))
        # What claw reads inside is the same document: read back, it writes itself out unchanged, in order.
        again = Summary.from_json(summary).to_json()
        assert json.dumps(again) == json.dumps(summary)
    md = claw("export", "--store", store, "--session", session.id, "--format", "md", env=env).stdout
    assert to_markdown(exported) == md


def test_export_errors_are_one_clear_line(tmp_path):
    env = {"CLAW_CONFIG": str(tmp_path / "none.toml")}
    missing = claw("export", "--store", str(tmp_path / "nope.db"), env=env)
    assert missing.returncode == 1 and missing.stderr.strip() == f"claw: no session store at {tmp_path / 'nope.db'}"
    runner = start_demo_session(tmp_path)
    runner.stop()
    unknown = claw("export", "--store", str(tmp_path / "sessions.db"), "--session", "xyz", env=env)
    assert unknown.returncode == 1 and "no session 'xyz'" in unknown.stderr and "Traceback" not in unknown.stderr


def summary_with(total_j: float, idle_w: float, p95_ms: float, completion: int) -> dict:
    from claw_tui.ledger import RequestRecord

    records = [
        RequestRecord(
            id=str(i),
            model="m",
            endpoint="/api/chat",
            status="ok",
            completion_tokens=completion,
            energy_j=total_j / 20,
            t_arrival=0.0,
            t_first_token=0.1,
            t_end=p95_ms / 1000,
        )
        for i in range(10)
    ]
    return build_summary(
        session={"id": "s", "duration_s": 100.0},
        gpus=[],
        records=records,
        energy={
            "total_j": total_j,
            "idle_j": total_j / 2,
            "active_j": total_j / 2,
            "idle_s": total_j / 2 / idle_w,
            "active_s": 10.0,
        },
        counter_j=None,
        power_stddev_w=None,
        governor=None,
        alerts={},
    )


def test_compare_says_better_or_worse_per_metric(tmp_path):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(summary_with(10_000, 118.0, 2000, 100)))
    after.write_text(json.dumps(summary_with(8_000, 88.0, 2000, 100)))
    result = claw("compare", str(before), str(after))
    assert result.returncode == 0, result.stderr
    lines = {line.split("  ")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["idle power"].endswith("better") and "-30.0 W" in lines["idle power"]
    assert lines["tok/J all-in"].endswith("better") and lines["J/token all-in"].endswith("better")
    assert lines["avg power"].endswith("better")
    assert lines["P95 latency"].endswith("same")
    rows = {r["metric"]: r for r in json.loads(claw("compare", str(after), str(before), "--json").stdout)["rows"]}
    assert rows["idle power"]["verdict"] == "worse" and rows["idle power"]["delta"] == pytest.approx(30.0)
    assert rows["tok/J all-in"]["verdict"] == "worse"
    assert rows["wake P95"]["verdict"] == "n/a"


def test_compare_refuses_files_that_are_not_summaries(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(summary_with(1000, 100, 100, 10)))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{")
    for name, needle in (
        ("other.json", "not a claw summary"),
        ("broken.json", "is not JSON"),
        ("missing.json", "cannot read"),
    ):
        result = claw("compare", str(good), str(tmp_path / name))
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(SummaryFormatError):
        load_summary(tmp_path / "other.json")


def test_compare_table_lines_up():
    text = render_compare(compare(summary_with(1000, 100, 100, 10), summary_with(900, 90, 120, 10)), "a", "b")
    lines = text.splitlines()
    assert lines[0].startswith("metric") and set(lines[1]) <= {"-", " "}
    verdict_at = lines[0].index("B is")
    assert all(line[verdict_at:] in ("better", "worse", "same", "n/a") for line in lines[2:])
    assert len(lines) == 2 + len(compare({}, {}))


def test_alert_tracker_counts_episodes_and_time():
    tracker = AlertTracker(power_alert_w=0, temp_alert_c=85)

    def snap(ts, watts, temp, reasons=()):
        return GpuSnapshot(
            index=0,
            name="H200",
            ts=ts,
            power_w=watts,
            power_limit_w=700,
            temp_c=temp,
            clock_event_reasons=list(reasons),
        )

    readings = [
        snap(0, 100, 40),
        snap(1, 690, 60, ["sw_power_cap"]),
        snap(2, 695, 86, ["sw_power_cap"]),
        snap(3, 300, 70),
        snap(4, 680, 88, ["hw_slowdown"]),
        snap(5, 100, 50),
    ]
    for reading in readings:
        tracker.add([reading])
    alerts = tracker.to_json()
    assert alerts["power"]["episodes"] == 2 and alerts["power"]["seconds"] == 3.0
    assert alerts["power"]["threshold_w"] == 665.0 and alerts["power"]["max_w"] == 695.0
    assert alerts["temperature"]["episodes"] == 2 and alerts["temperature"]["max_c"] == 88.0
    assert alerts["power_cap"]["seconds"] == 2.0 and alerts["hw_slowdown"]["episodes"] == 1
    assert "num_ctx" in alerts["power"]["hint"]
    assert alerts["total_episodes"] == 6
    md = to_markdown(
        build_summary(
            session={"id": "x"},
            gpus=[],
            records=[],
            energy={"total_j": 0, "idle_j": 0, "active_j": 0},
            counter_j=None,
            power_stddev_w=None,
            governor=None,
            alerts=alerts,
        )
    )
    assert "**power**: 2 times" in md and "**hw_slowdown**" in md


# ---- F6 and F7 in the console --------------------------------------------------------------------------------------
async def wait_for(predicate, timeout: float = 10.0):
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_f7_writes_the_summary_and_shows_where(tmp_path):
    runner = start_demo_session(tmp_path, export_dir=tmp_path / "exports")
    try:
        httpx.post(
            runner.session.gateway_url + "/api/chat",
            timeout=30,
            json={"model": "qwen3:8b", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
        )
        app = ClawApp(runner.session, refresh_hz=0)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("f7")
            notes = await wait_for(lambda: [n for n in app._notifications if "summary" in (n.title or "")])
            path = Path(notes[0].message.splitlines()[0])
            assert path.parent == tmp_path / "exports" and path.suffix == ".json"
            summary = json.loads(path.read_text())
            assert summary["schema"] == SCHEMA and summary["requests"]["total"] == 1
            assert path.with_suffix(".md").exists() and path.with_suffix(".csv").exists()
    finally:
        runner.stop()


async def test_f7_says_so_when_the_folder_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    runner = start_demo_session(tmp_path, export_dir=blocker / "exports")
    try:
        app = ClawApp(runner.session, refresh_hz=0)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f7")
            notes = await wait_for(lambda: [n for n in app._notifications if "export failed" in n.message])
            assert notes[0].severity == "error"
    finally:
        runner.stop()


async def test_f6_toggles_the_governor_and_the_header_says_so(tmp_path):
    config = demo_config()
    config.governor.idle_after_s = 0.2
    runner = start_demo_session(tmp_path, config)
    try:
        app = ClawApp(runner.session, refresh_hz=0)
        gpu = runner.session.sim.gpus[0]
        async with app.run_test(size=(120, 40)) as pilot:
            assert "governor off" in app.sub_title
            await pilot.press("f6")
            # in words, not the raw state (`idle_pending`)
            await wait_for(
                lambda: "governor on, idle: downclocks in" in app.sub_title or "downclocked" in app.sub_title
            )
            assert any("idle downclock on" in n.message for n in app._notifications)
            await wait_for(lambda: gpu.locked_sm_clock() == 345)
            # the header follows the governor's events: it says so once the event is in
            await wait_for(lambda: "governor on, downclocked" in app.sub_title)
            await pilot.press("f6")
            await wait_for(lambda: "governor off" in app.sub_title)
            assert gpu.locked_sm_clock() is None
    finally:
        runner.stop()


def test_energy_workflow_modules_stay_free_of_textual():
    modules = [
        "claw_tui.governor",
        "claw_tui.bench",
        "claw_tui.export",
        "claw_tui.commands.export",
        "claw_tui.commands.compare",
        "claw_tui.commands.bench",
        "claw_tui.commands.doctor",
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'textual')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent
    )
    assert result.stdout.strip() == ""
