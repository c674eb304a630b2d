"""SVG snapshots of every pane at 80×24 and 160×48, from a seeded simulator under a fixed clock.

Refresh the baselines with `pytest tests/test_snapshots.py --snapshot-update` after an intended change of looks.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Select, TabbedContent

from claw_tui.config import AgentConfig
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.ui.app import ClawApp
from claw_tui.ui.panes.chat import ChatPane, Conversation, Turn, stats_line
from claw_tui.ui.panes.models import ModelsPane
from claw_tui.ui.screens.agent_form import AgentFormScreen
from claw_tui.ui.widgets.modelfile_editor import ModelfileEditor
from tests.conftest import demo_config

START = 1_790_000_000.0
SIZES = [(80, 24), (160, 48)]


class FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seeded_requests(session: Session, clock: FrozenClock) -> None:
    """A few finished requests with known timings, their work drawn by the simulated GPU and read by the sampler:
    the chart and the requests' energy come through the same path as real data."""
    ledger, sampler = session.ledger, session.sampler
    gpu = session.sim.gpus[0]
    plans = [
        ("qwen3:8b", None, "ok", 0.35, 2.1, 40, 180),
        ("qwen3:32b", "support", "ok", 1.2, 6.5, 300, 260),
        ("qwen3:8b", "support", "error", 0.0, 0.4, 12, 0),
        ("llama3.2:3b", None, "cancelled", 0.2, 1.0, 20, 35),
    ]

    def advance_to(t: float) -> None:
        while clock.now < t:  # ticks closer than the simulated GPU's sample buffer (~2.4 s)
            clock.now = min(t, clock.now + 0.5)
            sampler.tick()

    for index, (model, agent, status, ttft, duration, prompt, completion) in enumerate(plans):
        start = clock.now
        # Fixed ids: the widest request log and the details title show them.
        record = ledger.open_request(model=model, endpoint="/api/chat", agent=agent, id=f"5eed{index:012x}")
        ledger.mark_upstream_start(record, gpu=0)
        work = gpu.begin_work("prefill")
        if ttft:
            advance_to(start + ttft)
            ledger.mark_first_token(record, at=start + ttft)
            gpu.set_phase(work, "decode")
        advance_to(start + duration)
        gpu.end_work(work)
        record.prompt_tokens, record.completion_tokens = prompt, completion
        ledger.finish(record, status, 200 if status == "ok" else 500)
        advance_to(clock.now + 1.0)


@pytest.fixture(scope="module")
def frozen_session(tmp_path_factory):
    """One seeded session for the module: the snapshots only read it (nothing here sends a metered request)."""
    clock = FrozenClock(START)
    config = demo_config()
    config.telemetry.poll_interval_s = 3600  # the test drives the sampler itself
    config.agents = [
        AgentConfig(name="support", model="qwen3:8b", system="You answer support tickets."),
        AgentConfig(name="coder", model="qwen3:32b", max_tokens=2048),
    ]
    options = SessionOptions(
        demo=True,
        listen=("127.0.0.1", 0),
        store_path=tmp_path_factory.mktemp("snapshots") / "s.db",
        sim_seed=7,
        sim_speed=50,
        clock=clock,
    )
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


@pytest.fixture(autouse=True)
def dark_theme(frozen_session):
    """A theme chosen in one snapshot (it is remembered for the session) must not colour the next one."""
    frozen_session.config.ui.theme = "claw-dark"


def app_for(session: Session) -> ClawApp:
    return ClawApp(session, refresh_hz=0, gateway_label="127.0.0.1:18789")


async def until(pilot, predicate, timeout: float = 10.0) -> None:
    """Let the app work until `predicate()` holds (on a loaded machine a message may take a while)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("the app did not reach the expected state")


async def settle(pilot) -> None:
    for _ in range(200):  # the hidden panes mount just after the first frame
        if pilot.app.panes_ready:
            break
        await pilot.pause(0.02)
    for field in [*pilot.app.query("Input, TextArea"), *pilot.app.screen.query("Input, TextArea")]:
        field.cursor_blink = False  # a blinking cursor would make the picture depend on timing
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_models(pilot) -> None:
    """F3 with its model list and the opened Modelfile in place: the list fills from a poll that may land after the
    first settle, and rows added behind a dialog would leave the table's header drawn at its old widths."""
    await pilot.press("f3")
    await settle(pilot)
    installed = pilot.app.query_one("#models-installed", DataTable)
    editor = pilot.app.query_one(ModelfileEditor)
    await until(pilot, lambda: installed.row_count > 0 and editor.text.startswith("FROM"))
    await settle(pilot)
    # The list's columns widen on an idle after the rows arrive and the table then redraws (SteadyTable): touching a
    # cell now makes sure the picture is taken after that redraw, whenever the idle came.
    installed.update_cell_at((0, 0), installed.get_cell_at((0, 0)))
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_power_pane(snap_compare, frozen_session, size):
    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=settle)


@pytest.fixture
def burst_session(tmp_path):
    """The real H200 decode burst replayed to its end, its seven marked requests through the ledger."""
    from tests.test_sampler_replay import BURST, play, replay_session

    runner, clock = replay_session(tmp_path, BURST)
    play(runner.session, clock, BURST)
    yield runner.session
    runner.stop()


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_power_pane_h200_replay(snap_compare, burst_session, size):
    assert snap_compare(app_for(burst_session), terminal_size=size, run_before=settle)


def test_power_pane_power_cap_alert(snap_compare, tmp_path):
    from claw_tui.telemetry.replay import load_trace
    from tests.test_sampler_replay import POWER_CAP, play, replay_session

    runner, clock = replay_session(tmp_path, POWER_CAP)
    try:
        marks = {label: t for t, label in load_trace(POWER_CAP).marks}
        play(runner.session, clock, POWER_CAP, seconds=marks["load_end"] - 0.5)
        assert snap_compare(app_for(runner.session), terminal_size=(120, 36), run_before=settle)
    finally:
        runner.stop()


def test_power_pane_two_gpus_second_selected(snap_compare, tmp_path):
    from tests.test_power_pane import two_gpu_trace
    from tests.test_sampler_replay import BURST, play, replay_session

    runner, clock = replay_session(tmp_path, two_gpu_trace(tmp_path))
    try:
        play(runner.session, clock, BURST, seconds=14.0)

        async def run_before(pilot):
            await settle(pilot)
            await pilot.press("right_square_bracket")  # two GPUs open on the overview: ] highlights GPU 1 …
            await pilot.press("enter")  # … and Enter shows it in detail
            await settle(pilot)

        assert snap_compare(app_for(runner.session), terminal_size=(160, 48), run_before=run_before)
    finally:
        runner.stop()


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
        await open_models(pilot)

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


# ---- states of the operator panes beyond their first look ---------------------------------------------------------
ANSWER = """Rayleigh scattering: air molecules scatter **short wavelengths** far more than long ones.

- blue light (≈450 nm) is scattered ~5× more than red
- at sunset the path is long, so the blue is scattered away first
"""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_pane_with_an_answer(snap_compare, frozen_session, size):
    """Two turns: the thinking folded into its one line, the answer, its cost, and the context meter."""
    record = next(r for r in frozen_session.ledger.records() if r.status == "ok")

    async def run_before(pilot):
        await pilot.press("f2")
        await settle(pilot)
        pane = pilot.app.query_one(ChatPane)
        first = Turn(
            "why is the sky blue?\n(one paragraph)",
            answer=ANSWER,
            thinking="The user asks about colour of the sky. Rayleigh scattering goes as the fourth power.",
            state="ok",
            stats=stats_line(record),
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )
        second = Turn("and at sunset?", answer="Redder: the long path scatters the blue away.", state="stopped")
        pane.conversations["qwen3:8b"] = Conversation(model="qwen3:8b", turns=[first, second])
        await pane.show_conversation()
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_saved_conversations(snap_compare, frozen_session, size):
    from claw_tui import store

    for index, (title, model, turns) in enumerate(
        [("why is the sky blue?", "qwen3:8b", 3), ("triage this ticket", "support", 1), ("a haiku", "llama3.2:3b", 2)]
    ):
        conversation = Conversation(
            model=model, id=f"c-snap-{index}", turns=[Turn(title, answer="…", state="ok")] * turns, created_at=START
        )
        store.save_conversation(frozen_session.store.path, conversation.to_json(), now=START + 60 * index)

    async def run_before(pilot):
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: pilot.app.screen.query("#conversations-table DataTable, DataTable"))
        await settle(pilot)

    try:
        assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)
    finally:
        for index in range(3):
            store.delete_conversation(frozen_session.store.path, f"c-snap-{index}")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_models_pane_marks_an_invalid_line(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await open_models(pilot)
        editor = pilot.app.query_one(ModelfileEditor)
        line = editor.text.splitlines().index("PARAMETER temperature 0.6")
        editor.replace("PARAMETER temperature 0.6 # cooler", (line, 0), (line, len("PARAMETER temperature 0.6")))
        editor.insert("PARAMETER no_mmap true\n", (line + 1, 0))
        editor.cursor_location = (line, 0)
        pilot.app.query_one(ModelsPane).validate_now()
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_models_parameter_form(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await open_models(pilot)
        pilot.app.query_one("#models-tabs", TabbedContent).active = "models-tab-parameters"
        await settle(pilot)
        pilot.app.query_one("#param-num_ctx", Input).value = "8192"
        editor = pilot.app.query_one(ModelfileEditor)
        await until(pilot, lambda: "PARAMETER num_ctx 8192" in editor.text)
        await until(pilot, lambda: "edited" in str(pilot.app.query_one("#models-current").content))
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_models_diff(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await open_models(pilot)
        pane = pilot.app.query_one(ModelsPane)
        editor = pilot.app.query_one(ModelfileEditor)
        line = editor.text.splitlines().index("PARAMETER top_k 20")
        editor.replace("PARAMETER top_k 30\nPARAMETER num_ctx 8192", (line, 0), (line, len("PARAMETER top_k 20")))
        pane.validate_now()
        pilot.app.query_one("#models-tabs", TabbedContent).active = "models-tab-diff"
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_models_rebuild_dialog(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await open_models(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        pilot.app.screen.query_one("#rebuild-name", Input).value = "qwen3:32b"  # an existing name: a warning
        check = pilot.app.screen.query_one("#rebuild-check")
        await until(pilot, lambda: "exists" in str(check.content))
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_agent_form(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f4")
        await settle(pilot)
        await pilot.press("e")
        # The form's worker waits for the form to close: wait for the form itself instead.
        for _ in range(200):
            if isinstance(pilot.app.screen, AgentFormScreen):
                break
            await pilot.pause(0.02)
        for field in pilot.app.screen.query("Input, TextArea"):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_request_details(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f5")
        await settle(pilot)
        table = pilot.app.query_one("#requests-table", DataTable)
        agent_row = next(r.id for r in frozen_session.ledger.records() if r.agent == "support" and r.status == "ok")
        table.move_cursor(row=table.get_row_index(agent_row))
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, frozen_session, size):
    async def run_before(pilot):
        await pilot.press("f4")
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_light_theme(snap_compare, frozen_session, size):
    async def run_before(pilot):
        pilot.app.theme = "claw-light"
        await pilot.press("f5")
        await settle(pilot)

    assert snap_compare(app_for(frozen_session), terminal_size=size, run_before=run_before)
