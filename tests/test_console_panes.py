"""The operator panes at the sizes operators use (80×24 first), driven through Pilot: keys, dialogs, tables."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, TabbedContent

from claw_tui.ui.app import PANES, ClawApp
from claw_tui.ui.panes.deferred import pane_class
from claw_tui.ui.screens.help import HelpScreen, key_label
from tests.conftest import start_demo_session
from tests.test_tui import text_of, wait_for


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
