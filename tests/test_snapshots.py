"""SVG snapshots of every pane at 80×24 and 160×48, from a seeded simulator under a fixed clock.

Refresh the baselines with `pytest tests/test_snapshots.py --snapshot-update` after an intended change of looks.
"""

from __future__ import annotations

import pytest
from textual.widgets import Select

from claw_tui.config import AgentConfig
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.ui.app import ClawApp
from tests.conftest import demo_config

START = 1_790_000_000.0
SIZES = [(80, 24), (160, 48)]


class FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seeded_requests(session: Session, clock: FrozenClock) -> None:
    """A few finished requests with known timings, and power samples that cover them."""
    from claw_tui.telemetry.types import PowerSample

    ledger = session.ledger
    plans = [("qwen3:8b", None, "ok", 0.35, 2.1, 40, 180), ("qwen3:32b", "support", "ok", 1.2, 6.5, 300, 260),
             ("qwen3:8b", "support", "error", 0.0, 0.4, 12, 0), ("llama3.2:3b", None, "cancelled", 0.2, 1.0, 20, 35)]
    for model, agent, status, ttft, duration, prompt, completion in plans:
        start = clock.now
        record = ledger.open_request(model=model, endpoint="/api/chat", agent=agent)
        ledger.mark_upstream_start(record, gpu=0)
        if ttft:
            ledger.mark_first_token(record, at=start + ttft)
        clock.now = start + duration
        record.prompt_tokens, record.completion_tokens = prompt, completion
        ledger.finish(record, status, 200 if status == "ok" else 500)
        ledger.add_power(0, [PowerSample(start + i * 0.02, 380.0 + (i % 7) * 3) for i in range(int(duration / 0.02) + 3)])
        clock.now += 1.0


@pytest.fixture
def frozen_session(tmp_path):
    clock = FrozenClock(START)
    config = demo_config()
    config.telemetry.poll_interval_s = 3600  # the test drives the sampler itself
    config.agents = [AgentConfig(name="support", model="qwen3:8b", system="You answer support tickets."),
                     AgentConfig(name="coder", model="qwen3:32b", max_tokens=2048)]
    options = SessionOptions(demo=True, listen=("127.0.0.1", 0), store_path=tmp_path / "s.db", sim_seed=7,
                             sim_speed=50, clock=clock)
    runner = SessionThread(Session(config, options))
    runner.start()
    sampler = runner.session.sampler
    for _ in range(240):
        clock.now += 0.5
        sampler.tick()
    seeded_requests(runner.session, clock)
    sampler.tick()
    yield runner.session
    runner.stop()


def app_for(session: Session) -> ClawApp:
    return ClawApp(session, refresh_hz=0, gateway_label="127.0.0.1:18789")


async def settle(pilot) -> None:
    for field in pilot.app.query("Input, TextArea"):
        field.cursor_blink = False  # a blinking cursor would make the picture depend on timing
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_power_pane(snap_compare, frozen_session, size):
    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_pane(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f2")
        await settle(pilot)
        select = pilot.app.query_one("#chat-model", Select)
        assert not select.is_blank()

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_models_pane(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f3")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_agents_pane(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f4")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_requests_pane(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f5")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)
