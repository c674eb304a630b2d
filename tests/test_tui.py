"""The console driven like an operator would: Pilot for behaviour, SVG snapshots for looks."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input, Select, TabbedContent

from claw_tui.ui.app import ClawApp
from claw_tui.ui.panes.chat import ChatPane
from tests.conftest import start_demo_session


async def wait_for(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def demo_runner(tmp_path):
    runner = start_demo_session(tmp_path)
    yield runner
    runner.stop()


async def test_function_keys_switch_panes(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        tabs = app.query_one("#panes", TabbedContent)
        assert tabs.active == "power"
        for key, pane in (("f2", "chat"), ("f3", "models"), ("f4", "agents"), ("f5", "requests"), ("f1", "power")):
            await pilot.press(key)
            assert tabs.active == pane
        assert "DEMO" in app.sub_title


async def test_chat_streams_an_answer_with_its_stats(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f2")
        select = app.query_one("#chat-model", Select)
        await wait_for(lambda: not select.is_blank())
        assert select.value == "qwen3:8b"
        app.query_one("#chat-input", Input).focus()
        await pilot.press(*"why is the sky blue?")
        await pilot.press("enter")
        stats = await wait_for(lambda: [s for s in app.query(".chat-stats") if "TTFT" in str(s.render())])
        line = str(stats[0].render())
        assert " ms" in line and "tok/s" in line and "J/tok" in line
        pane = app.query_one(ChatPane)
        assert pane.history[-1]["role"] == "assistant" and pane.history[-1]["content"]
        record = demo_runner.session.ledger.records()[-1]
        assert record.status == "ok" and record.energy_j > 0


async def test_number_keys_switch_panes_only_outside_text_fields(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        tabs = app.query_one("#panes", TabbedContent)
        await pilot.press("3")
        assert tabs.active == "models"
        await pilot.press("f2")
        await pilot.press("4")  # typed into the chat input, not a pane switch
        assert tabs.active == "chat"
        assert app.query_one("#chat-input", Input).value == "4"
