"""The operator panes at the sizes operators use (80×24 first), driven through Pilot: keys, dialogs, tables."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, TabbedContent

from claw_tui.config import AgentConfig
from claw_tui.ui.app import PANES, ClawApp
from claw_tui.ui.panes.by_path import pane_class
from claw_tui.ui.panes.models import ModelsPane
from claw_tui.ui.panes.power import PowerPane
from claw_tui.ui.screens.agent_form import FormContext, check_agent
from claw_tui.ui.screens.help import HelpScreen, key_label
from claw_tui.ui.screens.rebuild import RebuildScreen
from claw_tui.ui.widgets.modelfile_editor import ModelfileEditor
from tests.conftest import start_demo_session
from tests.test_tui import notifications, text_of, wait_for


@pytest.fixture
def demo_runner(tmp_path):
    runner = start_demo_session(tmp_path)
    yield runner
    runner.stop()


async def ready_app(pilot) -> ClawApp:
    await wait_for(lambda: pilot.app.panes_ready)
    return pilot.app


# ---- lifecycle -------------------------------------------------------------------------------------------------
async def test_every_pane_is_composed_with_the_app_so_a_quick_exit_never_cuts_one_half_mounted(demo_runner):
    """A console closed right after its first frame used to take hidden panes down while they were mounting:
    their on_mount (and Textual's Select's) then queried children that never came (NoMatches)."""
    for _ in range(3):
        app = ClawApp(demo_runner.session)
        async with app.run_test(size=(80, 24)):
            assert app.panes_ready  # composed with the app, not after it: nothing is left to cut
            assert app.query_one("#agents-table", DataTable)
            assert app.query_one("#param-note")
        # run_test raises here whatever the app raised while closing


# ---- keys --------------------------------------------------------------------------------------------------------
async def test_digits_typed_into_the_parameter_form_are_text_not_pane_switches(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_app(pilot)
        tabs = app.query_one("#panes", TabbedContent)
        await pilot.press("3")
        assert tabs.active == "models"
        await wait_for(lambda: app.query_one("#models-installed", DataTable).row_count)
        app.query_one("#models-tabs", TabbedContent).active = "models-tab-parameters"
        await pilot.pause()
        app.query_one("#parameter-form").focus()  # the form itself, not one of its fields
        await pilot.press("8", "1", "9", "2")
        assert tabs.active == "models"
        field = app.query_one("#param-num_ctx", Input)
        field.focus()
        await pilot.press("8", "1", "9", "2")
        assert tabs.active == "models" and field.value == "8192"
        app.set_focus(None)
        await pilot.press("1")
        assert tabs.active == "power"


async def test_digits_do_nothing_in_a_dialog(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_app(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("2")
        assert app.query_one("#panes", TabbedContent).active == "power"


async def test_help_at_80x24_scrolls_and_lists_every_key_of_every_pane(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_app(pilot)
        await pilot.press("question_mark")
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        text = text_of(screen.query_one("#help-keys"))
        for _, title, path in PANES:
            pane = pane_class(path)
            for binding in pane.BINDINGS:
                assert key_label(binding.key) in text, (title, binding.key)
                assert (binding.tooltip or binding.description) in text
        assert "square_bracket" not in text and "Prev GPU" in text
        assert "open the model under the cursor" in text  # keys that are no bindings are listed too
        body = screen.query_one("#help-body")
        await pilot.pause()
        assert body.max_scroll_y > 0  # longer than the terminal …
        await pilot.press("end")
        assert body.scroll_y == body.max_scroll_y  # … and it scrolls from the keyboard
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


# ---- Models ------------------------------------------------------------------------------------------------------
async def open_models(pilot) -> ModelsPane:
    await pilot.press("f3")
    pane = pilot.app.query_one(ModelsPane)
    await wait_for(lambda: pane.current == "qwen3:8b" and pane.result is not None)
    return pane


async def test_a_rebuild_at_80x24_fits_lands_sorted_and_opens_at_from(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_app(pilot)
        pane = await open_models(pilot)
        editor = app.query_one(ModelfileEditor)
        assert editor.cursor_location == (0, 0) and editor.scroll_y == 0  # FROM is the first line in view
        assert editor.text.startswith("FROM ")
        await pilot.press("ctrl+r")
        screen = await wait_for(lambda: isinstance(app.screen, RebuildScreen) and app.screen)
        screen.query_one("#rebuild-name", Input).value = "aaa-first"
        await pilot.press("enter")
        await wait_for(lambda: screen.built == "aaa-first")
        await pilot.pause()
        dialog = screen.query_one("#rebuild-dialog")
        for part in ("#rebuild-build", "#rebuild-close", ".dialog-title"):
            region = screen.query_one(part).region
            assert dialog.region.contains_region(region) and region.bottom <= 24, part  # title and buttons in view
        check = text_of(screen.query_one("#rebuild-check"))
        assert "is a new name" not in check and "built aaa-first" in check
        log = screen.query_one("#rebuild-log")
        assert log.virtual_size.width <= log.scrollable_content_region.width  # digests wrap: nothing cut sideways
        assert any("sha256:" in str(line.text) for line in log.lines)
        await pilot.press("enter")  # Done
        table = app.query_one("#models-installed", DataTable)
        await wait_for(lambda: "aaa-first:latest" in table.rows)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == sorted(names) and names[0] == "aaa-first:latest"  # in its place, not appended
        await wait_for(lambda: pane.current == "aaa-first:latest")
        assert editor.cursor_location == (0, 0)


async def test_the_load_button_acts_on_the_open_model_not_the_cursor_row(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready_app(pilot)
        pane = await open_models(pilot)
        installed = app.query_one("#models-installed", DataTable)
        installed.move_cursor(row=installed.get_row_index("llama3.2:3b"))  # the cursor elsewhere …
        app.query_one("#models-load").press()  # … the button beside "qwen3:8b"
        loaded = app.query_one("#models-loaded", DataTable)
        await wait_for(lambda: "qwen3:8b" in loaded.rows, timeout=20)
        assert "llama3.2:3b" not in loaded.rows and pane.current == "qwen3:8b"
        # The load is a model event: the Events tab lists it with its time, duration and energy.
        events = app.query_one("#models-events", DataTable)
        pane.refresh_data()
        await wait_for(lambda: events.row_count >= 1 or pane.refresh_data())
        row = [str(cell) for cell in events.get_row_at(0)]
        assert row[1] == "load" and row[2] == "qwen3:8b" and row[3] == "ok" and row[4].endswith("s")


async def test_an_empty_models_pane_says_the_backend_is_down_in_the_gateways_words(tmp_path):
    from tests.gateway_support import SimBackends, start_gateway

    with SimBackends([{}]) as sims:
        sims.stop_server(0)  # down from the start: the gateway has no list of models to fall back on
        runner = start_gateway(tmp_path, sims)
        try:
            app = ClawApp(runner.session)
            async with app.run_test(size=(80, 24)) as pilot:
                await ready_app(pilot)
                await pilot.press("f3")
                empty = app.query_one("#models-empty")
                await wait_for(lambda: empty.display and "unreachable" in text_of(empty))
                text = text_of(empty)
                assert "No models: the backend cannot be listed" in text and "b0" in text
                assert not app.query_one("#models-lists").display
                # The header names the backend that is not up, with its reason, once the service says so.
                await wait_for(lambda: "backend b0" in app.sub_title, timeout=20)
        finally:
            runner.stop()


# ---- Agents --------------------------------------------------------------------------------------------------------
def form_context(models: list[str]) -> FormContext:
    return FormContext(other_agents=set(), models=models)


def test_an_agent_on_a_model_built_as_name_latest_is_on_the_backend():
    agent = AgentConfig(name="pirate", model="llama3.2-pirate")
    errors, warnings = check_agent(agent, form_context(["llama3.2-pirate:latest", "qwen3:8b"]))
    assert errors == [] and warnings == []
    agent = AgentConfig(name="qwen3", model="qwen3:8b")  # `qwen3` is `qwen3:latest`, not installed: no clash
    assert check_agent(agent, form_context(["qwen3:8b"]))[0] == []
    agent = AgentConfig(name="llama3.2-pirate", model="qwen3:8b")
    assert "installed model" in check_agent(agent, form_context(["llama3.2-pirate:latest"]))[0][0]


def test_the_agent_form_refuses_the_options_that_saving_refuses(tmp_path):
    """Ollama would ignore an unknown name and cut a fraction: the config refuses both, so the form does too."""
    import tomlkit

    from claw_tui.config import ConfigError, load_config

    for options, expected in (
        ({"temprature": 0.2}, "unknown option 'temprature'"),
        ({"num_ctx": 8192.5}, "truncated"),
        ({"temperature": "hot"}, "temperature"),
    ):
        errors, _ = check_agent(AgentConfig(name="a", model="qwen3:8b", options=options), form_context([]))
        assert any(expected in e for e in errors), (options, errors)
        path = tmp_path / "claw.toml"
        path.write_text(tomlkit.dumps({"agents": [{"name": "a", "model": "qwen3:8b", "options": options}]}))
        with pytest.raises(ConfigError):  # the config that saving writes refuses the same agent
            load_config(path)


# ---- tables at 80×24 ----------------------------------------------------------------------------------------------
LONG_MODEL = "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"


def seed_requests(session, model: str, agent: str | None, count: int = 3) -> None:
    ledger = session.ledger
    for _ in range(count):
        record = ledger.open_request(model=model, endpoint="/v1/chat/completions", agent=agent)
        ledger.mark_upstream_start(record, gpu=0)
        ledger.mark_first_token(record, at=record.t_arrival + 0.25)
        record.prompt_tokens, record.completion_tokens = 123_456, 98_765
        ledger.finish(record, "ok", 200)


def fits_across(table: DataTable) -> bool:
    return table.virtual_size.width <= table.scrollable_content_region.width


async def test_at_80x24_the_requests_table_drops_columns_before_it_cuts_the_energy(demo_runner):
    session = demo_runner.session
    seed_requests(session, LONG_MODEL, "customer-support-bot")
    app = ClawApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_app(pilot)
        await pilot.press("f5")
        table = app.query_one("#requests-table", DataTable)
        await wait_for(lambda: table.row_count == 3)
        await pilot.pause()
        labels = [str(column.label) for column in table.columns.values()]
        assert "energy" in labels and "tok/J" in labels and "model" in labels
        assert fits_across(table), labels  # no sideways scroll: the energy is whole at the right edge
    async with ClawApp(session).run_test(size=(200, 50)) as pilot:
        await ready_app(pilot)
        await pilot.press("f5")
        table = pilot.app.query_one("#requests-table", DataTable)
        await wait_for(lambda: table.row_count == 3)
        assert {"prefill", "decode", "agent", "id"} <= {str(c.label) for c in table.columns.values()}


async def test_at_80x24_the_agents_table_keeps_its_j_per_token_whole(tmp_path):
    from claw_tui.config import AgentConfig
    from tests.conftest import demo_config

    config = demo_config()
    config.agents = [AgentConfig(name="customer-support-bot", model=LONG_MODEL)]
    runner = start_demo_session(tmp_path, config)
    try:
        seed_requests(runner.session, LONG_MODEL, "customer-support-bot", count=1200)
        app = ClawApp(runner.session)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready_app(pilot)
            await pilot.press("f4")
            table = app.query_one("#agents-table", DataTable)
            await wait_for(lambda: table.row_count == 1 and "1,200" in str(table.get_row_at(0)[2]))
            await pilot.pause()
            labels = [str(column.label) for column in table.columns.values()]
            assert labels[-1] == "J/tok" and "TTFT" not in labels  # TTFT dropped first
            assert fits_across(table), labels
    finally:
        runner.stop()


# ---- Power ---------------------------------------------------------------------------------------------------------
async def test_recent_requests_on_the_power_pane_keep_model_and_agent_apart(demo_runner):
    seed_requests(demo_runner.session, "qwen3:8b", "support", count=2)
    seed_requests(demo_runner.session, "llama3.2:3b", None, count=1)
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready_app(pilot)
        widget = app.query_one("#power-requests")
        await wait_for(lambda: "support" in str(widget.render()))
        lines = str(widget.render()).splitlines()
        header = lines[1].split()
        assert header[:4] == ["time", "model", "agent", "status"]
        rows = [line.split() for line in lines[2:]]
        assert ["qwen3:8b", "support", "ok"] in [row[1:4] for row in rows]  # the agent is not in the model column
        assert ["llama3.2:3b", "—", "ok"] in [row[1:4] for row in rows]


async def test_the_window_title_names_the_window_chosen_and_w_says_when_it_wraps(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 36)) as pilot:
        await ready_app(pilot)
        chart = app.query_one("#power-chart")
        await wait_for(lambda: app.focused is app.query_one(PowerPane))  # the pane takes the keys once shown
        await pilot.press("w")  # 2 min → 10 min, in a session seconds old
        await wait_for(lambda: "10 min" in str(chart.border_title))
        assert "window 10 min" in notifications(app)[-1]
        await pilot.press("w", "w")  # 1 h, then round to the shortest
        await wait_for(lambda: "· 10 s ·" in str(chart.border_title))
        assert notifications(app)[-1] == "window 10 s (back to the shortest)"
