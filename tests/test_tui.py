"""The console driven like an operator would, through Pilot: keys, forms, and what reaches the gateway and ledger."""

from __future__ import annotations

import asyncio
import io
import tomllib

import httpx
import pytest
from rich.console import Console
from rich.text import Text
from textual.command import CommandList
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from claw_tui.ui.app import ClawApp
from claw_tui.ui.panes.chat import ChatPane
from claw_tui.ui.panes.models import ModelsPane
from claw_tui.ui.screens.agent_form import AgentFormScreen
from claw_tui.ui.screens.confirm import ConfirmScreen
from claw_tui.ui.screens.help import HelpScreen
from claw_tui.ui.screens.rebuild import RebuildScreen
from claw_tui.ui.screens.request_detail import RequestDetailScreen
from claw_tui.ui.startup import SessionStarter
from claw_tui.ui.widgets.chat_input import ChatInput
from claw_tui.ui.widgets.modelfile_editor import ModelfileEditor
from tests.conftest import demo_config, start_demo_session

CONFIG_TEXT = """\
# claw config of the test box: this comment must survive agent edits
[gateway]
listen = "127.0.0.1:0"  # any free port

[ui]
theme = "claw-dark"
"""


async def wait_for(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def text_of(widget) -> str:
    """The plain text a Static shows (markup, Rich Text and Rich renderables alike)."""
    content = widget.content
    if isinstance(content, str):
        return Text.from_markup(content).plain
    if isinstance(content, Text):
        return content.plain
    console = Console(width=200, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(content)
    return capture.get()


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


@pytest.fixture
def demo_runner(tmp_path):
    runner = start_demo_session(tmp_path)
    yield runner
    runner.stop()


@pytest.fixture
def configured_runner(tmp_path):
    """A demo session whose config lives in a file (agents and theme are saved there)."""
    path = tmp_path / "claw.toml"
    path.write_text(CONFIG_TEXT)
    config = demo_config()
    config.path = path
    runner = start_demo_session(tmp_path, config)
    yield runner
    runner.stop()


async def gateway_json(session, method: str, path: str, body: dict | None = None):
    async with httpx.AsyncClient(base_url=session.gateway_url, timeout=10) as client:
        response = await client.request(method, path, json=body)
        return response.status_code, (response.json() if response.content else None)


# ---- switching panes -------------------------------------------------------------------------------------------
async def test_function_keys_switch_panes(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        tabs = app.query_one("#panes", TabbedContent)
        assert tabs.active == "power"
        for key, pane in (("f2", "chat"), ("f3", "models"), ("f4", "agents"), ("f5", "requests"), ("f1", "power")):
            await pilot.press(key)
            assert tabs.active == pane
        assert "DEMO" in app.sub_title


async def test_number_keys_switch_panes_only_outside_text_fields(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        tabs = app.query_one("#panes", TabbedContent)
        await pilot.press("3")
        assert tabs.active == "models"
        await pilot.press("f2")
        await pilot.press("4")  # typed into the chat input, not a pane switch
        assert tabs.active == "chat"
        assert app.query_one("#chat-input", ChatInput).text == "4"


async def test_help_lists_the_keys_of_every_pane(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = text_of(app.screen.query_one("#help-keys", Static))
        for expected in ("F1", "Power", "ctrl+r", "Rebuild", "Stop the answer", "ctrl+p", "Delete", "Details"):
            assert expected in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def palette_offers(app, text: str) -> bool:
    """The command palette lists a command matching what was typed (its search runs in the background)."""
    lists = app.screen.query(CommandList)
    return bool(lists) and any(text in str(option.prompt) for option in lists.first().options)


async def test_palette_switches_theme_and_the_choice_is_saved(configured_runner):
    session = configured_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        assert app.theme == "claw-dark"
        await pilot.press("ctrl+p")
        await pilot.press(*"claw-light")
        await wait_for(lambda: palette_offers(app, "claw-light"))
        await pilot.press("enter")
        await wait_for(lambda: app.theme == "claw-light")
        await wait_for(lambda: "claw-light" in session.config.path.read_text())
    saved = session.config.path.read_text()
    assert tomllib.loads(saved)["ui"]["theme"] == "claw-light"
    assert "this comment must survive" in saved


async def test_palette_runs_pane_actions(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await pilot.press("ctrl+p")
        await pilot.press(*"New agent")
        await wait_for(lambda: palette_offers(app, "New agent"))
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, AgentFormScreen))
        assert app.query_one("#panes", TabbedContent).active == "agents"


# ---- chat (the pane's own tests are in test_chat.py) -----------------------------------------------------------------
async def ask(pilot, prompt: str) -> None:
    """Type a prompt the way an operator does (a new line with ctrl+j) and send it with Enter."""
    pilot.app.query_one("#chat-input", ChatInput).focus()
    for index, line in enumerate(prompt.split("\n")):
        if index:
            await pilot.press("ctrl+j")
        await pilot.press(*line)
    await pilot.press("enter")


def stats_lines(app) -> list[str]:
    return [text_of(s) for s in app.query(".chat-stats")]


# ---- models ----------------------------------------------------------------------------------------------------------
async def open_models(pilot) -> ModelsPane:
    await pilot.press("f3")
    pane = pilot.app.query_one(ModelsPane)
    await wait_for(lambda: pane.current == "qwen3:8b" and pane.result is not None)
    return pane


async def test_rebuild_under_a_new_name_with_an_edited_parameter(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        pane = await open_models(pilot)
        editor = app.query_one(ModelfileEditor)
        assert "PARAMETER temperature 0.6" in editor.text
        # The typed form edits the Modelfile text.
        app.query_one("#models-tabs", TabbedContent).active = "models-tab-parameters"
        await pilot.pause()
        num_ctx = app.query_one("#param-num_ctx", Input)
        assert num_ctx.placeholder == "4096"  # the default shows while unset
        num_ctx.value = "8192"
        await wait_for(lambda: "PARAMETER num_ctx 8192" in editor.text)
        await wait_for(lambda: "+PARAMETER num_ctx 8192" in text_of(app.query_one("#modelfile-diff", Static)))
        assert "edited +1" in text_of(app.query_one("#models-current", Static))

        await pilot.press("ctrl+r")
        screen = await wait_for(lambda: isinstance(app.screen, RebuildScreen) and app.screen)
        name = screen.query_one("#rebuild-name", Input)
        name.value = "qwen3-green"
        await pilot.press("enter")
        await wait_for(lambda: screen.built == "qwen3-green")
        log = "\n".join(str(line.text) for line in screen.query_one("#rebuild-log").lines)
        assert "writing manifest" in log and "success" in log
        await pilot.press("enter")  # Done
        # The new model appears without a restart, and opens as the new original.
        table = app.query_one("#models-installed", DataTable)
        await wait_for(lambda: "qwen3-green:latest" in table.rows)  # Ollama's full name for it
        await wait_for(lambda: pane.current == "qwen3-green:latest" and not pane.dirty)
        assert "PARAMETER num_ctx 8192" in editor.text

    status, show = await gateway_json(session, "POST", "/api/show", {"model": "qwen3-green"})
    assert status == 200
    assert "num_ctx" in show["parameters"] and "8192" in show["parameters"]
    assert "temperature                    0.6" in show["parameters"]


async def test_rebuild_over_an_existing_name_asks_first(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await open_models(pilot)
        await pilot.press("ctrl+r")
        screen = await wait_for(lambda: isinstance(app.screen, RebuildScreen) and app.screen)
        screen.query_one("#rebuild-name", Input).value = "llama3.2:3b"
        await pilot.pause()
        assert "exists" in text_of(screen.query_one("#rebuild-check", Static))
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")  # no: nothing is built
        await wait_for(lambda: app.screen is screen)
        assert screen.built is None
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(lambda: screen.built == "llama3.2:3b")
    _, show = await gateway_json(session, "POST", "/api/show", {"model": "llama3.2:3b"})
    assert "temperature                    0.6" in show["parameters"]  # now the qwen3 build


async def test_live_validation_marks_the_line_and_blocks_the_rebuild(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        pane = await open_models(pilot)
        editor = app.query_one(ModelfileEditor)
        line = editor.text.splitlines().index("PARAMETER top_k 20")
        editor.replace("PARAMETER top_k twenty", (line, 0), (line, len("PARAMETER top_k 20")))
        await wait_for(lambda: editor.marked_lines.get(line + 1) == "error")
        problems = text_of(app.query_one("#modelfile-problems", Static))
        assert f"line {line + 1}" in problems and "invalid int value [twenty]" in problems
        assert app.query_one("#parameter-form").disabled  # the form edits a valid Modelfile only
        await pilot.press("ctrl+r")
        await wait_for(lambda: any("error" in n for n in notifications(app)))  # refused, and says so
        assert not isinstance(app.screen, RebuildScreen)
        # Fixed: the mark goes, and a suggestion-bearing warning case reads as such.
        editor.replace("PARAMETER top_k 30", (line, 0), (line, len("PARAMETER top_k twenty")))
        await wait_for(lambda: not editor.marked_lines)
        assert "✓ valid" in text_of(app.query_one("#models-current", Static))
        await pilot.press("ctrl+r")
        await wait_for(lambda: isinstance(app.screen, RebuildScreen))
        assert pane.dirty


async def test_load_and_unload_a_model_through_the_gateway(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await open_models(pilot)
        installed = app.query_one("#models-installed", DataTable)
        installed.focus()
        installed.move_cursor(row=installed.get_row_index("llama3.2:3b"))
        await pilot.press("l")
        loaded = app.query_one("#models-loaded", DataTable)
        await wait_for(lambda: "llama3.2:3b" in loaded.rows, timeout=20)
        assert "GPU" in str(loaded.get_cell("llama3.2:3b", "VRAM"))
        assert str(loaded.get_cell("llama3.2:3b", "expires")).endswith("s")  # a countdown like 4m59s
        await pilot.press("u")
        await wait_for(lambda: "llama3.2:3b" not in loaded.rows, timeout=20)
    # loads and unloads are model events, never requests
    assert not [r for r in session.ledger.records() if r.endpoint == "/api/generate"]
    assert [(e.kind, e.status) for e in session.ledger.model_events()] == [("load", "ok"), ("unload", "ok")]


# ---- agents ----------------------------------------------------------------------------------------------------------
async def fill_agent_form(pilot, **fields) -> AgentFormScreen:
    screen = await wait_for(lambda: isinstance(pilot.app.screen, AgentFormScreen) and pilot.app.screen)
    for field, value in fields.items():
        if field == "system":
            screen.query_one("#agent-system").load_text(value)
        else:
            screen.query_one(f"#agent-{field}", Input).value = value
    await pilot.press("ctrl+s")
    return screen


async def test_agents_create_edit_delete_are_saved_and_served_at_once(configured_runner):
    session = configured_runner.session
    path = session.config.path
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await pilot.press("f4")
        table = app.query_one("#agents-table", DataTable)
        await pilot.press("n")
        screen = await fill_agent_form(pilot, name="triage", model="qwen3:8b", options="temperature = 'hot'")
        await pilot.pause()
        assert "temperature" in text_of(screen.query_one("#agent-problems", Static))
        assert isinstance(app.screen, AgentFormScreen)  # a bad option keeps the form open
        screen.query_one("#agent-options", Input).value = "temperature = 0.1, num_ctx = 4096"
        screen.query_one("#agent-max-tokens", Input).value = "64"
        screen.query_one("#agent-system").load_text("Sort tickets by urgency.")
        await pilot.press("ctrl+s")
        await wait_for(lambda: "triage" in table.rows)

        saved = tomllib.loads(path.read_text())
        assert [a["name"] for a in saved["agents"]] == ["triage"]  # the demo's sample agents stay out of the file
        agent = saved["agents"][0]
        assert agent == {
            "name": "triage",
            "model": "qwen3:8b",
            "system": "Sort tickets by urgency.",
            "options": {"temperature": 0.1, "num_ctx": 4096},
            "max_tokens": 64,
        }
        assert "this comment must survive" in path.read_text()
        status, answer = await gateway_json(
            session,
            "POST",
            "/api/chat",
            {"model": "triage", "messages": [{"role": "user", "content": "printer on fire"}], "stream": False},
        )
        assert status == 200 and answer["eval_count"] <= 64
        await wait_for(lambda: str(table.get_cell("triage", "requests")) == "1")

        table.move_cursor(row=table.get_row_index("triage"))
        await pilot.press("e")
        await fill_agent_form(pilot, **{"max-tokens": "32", "fallback": "llama3.2:3b"})
        await wait_for(lambda: any(a.name == "triage" and a.max_tokens == 32 for a in session.agents))
        assert (
            next(a for a in tomllib.loads(path.read_text())["agents"] if a["name"] == "triage")["fallback"]
            == "llama3.2:3b"
        )

        await pilot.press("d")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(lambda: "triage" not in table.rows)
    assert all(a["name"] != "triage" for a in tomllib.loads(path.read_text()).get("agents", []))
    status, error = await gateway_json(
        session,
        "POST",
        "/api/chat",
        {"model": "triage", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    )
    assert status == 404 and "not found" in error["error"]


async def test_agent_form_refuses_names_that_would_hide_a_model_or_clash(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await pilot.press("f4")
        await pilot.press("n")
        screen = await fill_agent_form(pilot, name="qwen3:8b", model="qwen3:8b")
        await pilot.pause()
        assert "installed model" in text_of(screen.query_one("#agent-problems", Static))
        await fill_agent_form(pilot, name="support", model="qwen3:8b")
        await pilot.pause()
        assert "exists" in text_of(screen.query_one("#agent-problems", Static))
        await fill_agent_form(pilot, name="new agent", model="qwen3:8b")
        await pilot.pause()
        assert "blanks" in text_of(screen.query_one("#agent-problems", Static))
        await pilot.press("escape")
        assert not isinstance(app.screen, AgentFormScreen)
        assert [a.name for a in demo_runner.session.agents] == ["support", "coder"]


# ---- requests --------------------------------------------------------------------------------------------------------
async def test_requests_newest_first_filters_and_details(demo_runner):
    session = demo_runner.session
    for model in ("qwen3:8b", "llama3.2:3b", "no-such-model"):
        await gateway_json(
            session,
            "POST",
            "/api/chat",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False},
        )
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        await pilot.press("f5")
        table = app.query_one("#requests-table", DataTable)
        await wait_for(lambda: table.row_count == 3)
        newest = session.ledger.records()[-1]
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == newest.id
        assert "3 requests" in text_of(app.query_one("#requests-summary", Static))

        app.query_one("#filter-status", Select).value = "error"
        await wait_for(lambda: table.row_count == 1)
        assert str(table.get_cell(newest.id, "model")) == "no-such-model"
        app.query_one("#filter-status", Select).clear()
        app.query_one("#filter-model", Select).value = "llama3.2:3b"
        await wait_for(lambda: table.row_count == 1)

        # A new request arrives on top while the filters are cleared.
        await pilot.press("escape")
        await wait_for(lambda: table.row_count == 3)
        table.focus()
        await gateway_json(
            session,
            "POST",
            "/api/chat",
            {"model": "qwen3:8b", "messages": [{"role": "user", "content": "again"}], "stream": False},
        )
        await wait_for(lambda: table.row_count == 4)
        latest = session.ledger.records()[-1]
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == latest.id
        assert table.cursor_row == 0

        await pilot.press("enter")
        screen = await wait_for(lambda: isinstance(app.screen, RequestDetailScreen) and app.screen)
        details = text_of(screen.query_one("#request-details", Static))
        for expected in (
            "arrival",
            "queue exit",
            "upstream start",
            "first token",
            "end",
            "prompt eval",
            "prefill",
            "decode",
            "tokens/J",
        ):
            assert expected in details
        assert latest.id in text_of(screen.query_one(".dialog-title", Static))
        await pilot.press("escape")
        assert not isinstance(app.screen, RequestDetailScreen)


async def test_a_failing_task_becomes_a_notification_not_a_crash(demo_runner):
    app = ClawApp(demo_runner.session)

    async def broken_tags():
        raise RuntimeError("unexpected shape from the backend")

    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
        app.gateway.tags = broken_tags
        await pilot.press("f2")
        app.query_one(ChatPane).load_models()
        await wait_for(lambda: any("unexpected shape" in n for n in notifications(app)))
        assert app.is_running


# ---- starting --------------------------------------------------------------------------------------------------------
async def test_the_first_frame_comes_before_the_session_and_the_panes_follow(tmp_path):
    config = demo_config()
    config.store.path = str(tmp_path / "sessions.db")
    starter = SessionStarter(config, demo=True, listen=("127.0.0.1", 0))
    app = ClawApp(starter=starter)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(lambda: app.panes_ready, timeout=30)
            assert "DEMO" in app.sub_title and "gateway 127.0.0.1:" in app.sub_title
            await pilot.press("f2")
            await wait_for(lambda: not app.query_one("#chat-model", Select).is_blank())
    finally:
        starter.stop()


async def test_a_core_that_cannot_start_ends_the_console_with_the_reason(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = demo_config()
        config.store.path = str(tmp_path / "sessions.db")
        starter = SessionStarter(config, demo=True, listen=("127.0.0.1", port))
        app = ClawApp(starter=starter)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(lambda: not app.is_running or app.return_code == 1, timeout=30)
            await pilot.pause()
    assert app.return_code == 1
    assert str(port) in starter.error and "another claw" in starter.error
