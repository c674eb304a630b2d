"""The recorded H200 traces played through the sampler and the ledger of a real Session, on a fake clock.

h200_decode_burst.jsonl.gz holds `mark` records for every request of its load (prefill start, first token, end):
the ledger's energy for those requests must match the trace's own integral over the same windows, the session's
energy must match the energy counter, and `--replay` must work from every face that takes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from claw_tui.cli import build_parser
from claw_tui.config import Config
from claw_tui.ledger import DEFAULT_LAG_S, RequestRecord
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.telemetry.replay import ReplaySource, load_trace, trapezoid_energy_j
from tests.conftest import wait_until

TRACES = Path(__file__).parent / "fixtures" / "traces"
BURST = TRACES / "h200_decode_burst.jsonl.gz"
POWER_CAP = TRACES / "h200_power_cap.jsonl.gz"
IDLE = TRACES / "h200_idle_no_context.jsonl.gz"
START = 1_790_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def default_config() -> Config:
    """claw's defaults, whatever config file the machine that runs the tests may have."""
    config = Config()
    config.telemetry.poll_interval_s = 0.05
    return config


def replay_session(tmp_path, trace: Path, config: Config | None = None, **options) -> tuple[SessionThread, FakeClock]:
    """A started demo Session whose telemetry is `trace` replayed from START on a fake clock (tests drive it)."""
    clock = FakeClock()
    config = config or default_config()
    config.telemetry.poll_interval_s = 3600  # the sampler thread sleeps: play() ticks it
    source = ReplaySource(trace, clock=clock, start_ts=START, loop=False)
    opts = SessionOptions(
        demo=True,
        listen=("127.0.0.1", 0),
        store_path=tmp_path / "sessions.db",
        clock=clock,
        telemetry_source=source,
        sim_seed=7,
        sim_speed=50,
        **options,
    )
    runner = SessionThread(Session(config, opts))
    runner.start()
    return runner, clock


def play(
    session: Session,
    clock: FakeClock,
    trace: Path,
    *,
    seconds: float | None = None,
    step: float = 0.25,
    model: str = "qwen3:32b",
    tokens: int = 400,
) -> list[RequestRecord]:
    """Advance the clock through the trace, ticking the sampler, and run the trace's marked requests through the
    ledger (opened at `requestN_prefill`, first token at `requestN_decode`, finished at `requestN_end`)."""
    loaded = load_trace(trace)
    marks = sorted((START + t, label) for t, label in loaded.marks)
    end = START + (seconds if seconds is not None else loaded.duration_s - 0.01)
    open_records: dict[str, RequestRecord] = {}
    done: list[RequestRecord] = []
    ledger = session.ledger
    while clock.now + step <= end + 1e-9:
        clock.now += step
        while marks and marks[0][0] <= clock.now:
            at, label = marks.pop(0)
            name, _, phase = label.partition("_")
            if not name.startswith("request"):
                continue
            if phase == "prefill":
                record = ledger.open_request(model=model, endpoint="/api/chat", t_arrival=at)
                saved, clock.now = clock.now, at  # the ledger stamps upstream start with the clock
                ledger.mark_upstream_start(record, gpu=0)
                clock.now = saved
                open_records[name] = record
            elif phase == "decode":
                ledger.mark_first_token(open_records[name], at=at)
            elif phase == "end":
                record = open_records.pop(name)
                record.prompt_tokens, record.completion_tokens = 100, tokens
                saved, clock.now = clock.now, at
                ledger.finish(record, "ok", 200)
                clock.now = saved
                done.append(record)
        session.sampler.tick()
    return done


@pytest.fixture
def burst(tmp_path):
    runner, clock = replay_session(tmp_path, BURST)
    yield runner.session, clock
    runner.stop()


def test_marked_requests_get_the_energy_the_trace_holds_in_their_windows(burst):
    session, clock = burst
    records = play(session, clock, BURST)
    samples = load_trace(BURST).power[0]
    assert len(records) == 7
    for record in records:
        assert record.energy_final
        start = record.t_upstream_start + DEFAULT_LAG_S - START
        end = record.t_end + DEFAULT_LAG_S - START
        expected = trapezoid_energy_j(samples, start, end)
        assert record.energy_j == pytest.approx(expected, rel=0.01), record.id
        assert record.prefill_j + record.decode_j == pytest.approx(record.energy_j)
        assert 0 < record.prefill_j < record.decode_j  # ~50 ms of prefill, then seconds of decode
        assert 400 < record.energy_j / (record.duration_ms / 1000) < 700  # the load drew 400-700 W
    totals = session.ledger.totals()
    assert totals["active_j"] == pytest.approx(sum(r.energy_j for r in records), rel=1e-9)
    unattributed = totals["idle_j"] + totals["unmetered_j"] + totals["load_j"] + totals["pending_j"]
    assert unattributed + totals["active_j"] == pytest.approx(totals["total_j"], rel=1e-12)


def test_session_energy_matches_the_energy_counter_within_1pct(burst):
    session, clock = burst
    play(session, clock, BURST)
    summary = session.summary_json()
    energy = summary["energy"]
    assert energy["total_j"] > 5_000
    assert abs(energy["counter_vs_integral_pct"]) < 1.0
    check = session.sampler.energy_check(0)
    assert check["readings"] >= 20 and abs(check["error_pct"]) < 1.0
    # The ledger's total is exactly the sampler's running integral of the same samples.
    assert session.ledger.totals()["total_j"] == pytest.approx(session.sampler.integral_j(0), rel=1e-9)
    trace = session.status_json()["telemetry"]["trace"][0]
    assert trace["gaps"] == 0 and trace["rate_hz"] == pytest.approx(50, abs=1)
    assert summary["efficiency"]["tokens_per_joule"] > 0


def test_power_cap_trace_raises_a_power_alert_with_the_cap_hint(tmp_path):
    runner, clock = replay_session(tmp_path, POWER_CAP)
    try:
        session = runner.session
        marks = {label: t for t, label in load_trace(POWER_CAP).marks}
        play(session, clock, POWER_CAP, seconds=marks["load_end"] - 0.5)
        [alert] = session.summary_json()["alerts"]["active"]
        assert alert["kind"] == "power" and alert["gpu"] == 0
        assert "power cap active" in alert["hint"] and "fewer parallel requests" in alert["hint"]
        assert alert["threshold"] == pytest.approx(665.0)  # 95% of the 700 W limit
        assert session.status_json()["alerts"][0]["kind"] == "power"
        play_rest = load_trace(POWER_CAP).duration_s - (marks["load_end"] - 0.5)
        for _ in range(int(play_rest / 0.25)):
            clock.now += 0.25
            session.sampler.tick()
        alerts = session.summary_json()["alerts"]
        assert alerts["raised"] == {"power": 1}
        # The load ended ~1.7 s before the trace does: the alert is clearing, or over and in the recent list.
        assert alerts["active"] == [] or alerts["active"][0]["clearing"]
    finally:
        runner.stop()


def test_idle_trace_raises_no_alert(tmp_path):
    runner, clock = replay_session(tmp_path, IDLE)
    try:
        play(runner.session, clock, IDLE)
        alerts = runner.session.summary_json()["alerts"]
        assert alerts["active"] == [] and alerts["raised"] == {}
    finally:
        runner.stop()


# ----- --replay on every face -----------------------------------------------------------------------------------------


def test_replay_is_a_global_flag_and_a_subcommand_flag():
    parser = build_parser()
    assert parser.parse_args(["--replay", "t.jsonl"]).replay == "t.jsonl"
    assert parser.parse_args(["--replay", "t.jsonl", "serve"]).replay == "t.jsonl"
    assert parser.parse_args(["serve", "--replay", "t.jsonl"]).replay == "t.jsonl"
    assert parser.parse_args(["--replay", "t.jsonl", "gpu"]).replay == "t.jsonl"
    assert parser.parse_args(["gpu", "--replay", "t.jsonl"]).replay == "t.jsonl"
    assert parser.parse_args([]).replay is None


def test_tui_face_uses_the_replay_as_its_telemetry_source(monkeypatch, tmp_path):
    from claw_tui.commands import tui
    from claw_tui.ui.app import ClawApp

    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.db"}"\n[gateway]\nlisten = "127.0.0.1:0"\n')
    monkeypatch.setenv("CLAW_CONFIG", str(config))
    seen = {}

    def run(app):
        sampler = app.starter.start().sampler  # what the console does once its first frame is up
        seen.update(kind=sampler.kind, state=sampler.state, gpus=[s.name for s in sampler.statics()])

    monkeypatch.setattr(ClawApp, "run", run)
    args = build_parser().parse_args(["--replay", str(BURST)])
    assert tui.run_tui(args) == 0
    assert seen == {"kind": "replay", "state": "ok", "gpus": ["NVIDIA H200"]}


def test_gpu_command_replays_from_the_global_flag():
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "--replay", str(BURST), "gpu", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    [gpu] = json.loads(result.stdout)["gpus"]
    assert gpu["name"] == "NVIDIA H200" and gpu["power_limit_w"] == 700.0


def test_serve_replays_from_the_global_flag(tmp_path):
    from tests.test_serve import free_port

    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n')
    env = dict(os.environ, CLAW_CONFIG=str(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "--replay", str(BURST), "serve", "--demo", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def status():
            try:
                return httpx.get(url + "/claw/v1/status", timeout=1).json()
            except httpx.HTTPError:
                assert process.poll() is None, process.stderr.read()
                return None

        telemetry = wait_until(status, timeout=30)["telemetry"]
        assert telemetry["source"] == "replay" and telemetry["state"] == "ok"
        gpus = wait_until(lambda: status()["gpus"], timeout=10)
        assert gpus[0]["name"] == "NVIDIA H200"
    finally:
        process.terminate()
        process.wait(timeout=20)
