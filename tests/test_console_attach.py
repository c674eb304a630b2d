"""A console attached to a real `claw serve --demo` process, driven through Pilot: the requests the openai SDK
sends to the service appear in the Requests pane; chat, agents, governor (F6) and export (F7) go through the
service; quitting leaves the service answering; killing and restarting the service while attached."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from textual.widgets import DataTable, Select

from claw_tui.console.remote import NeedsToken, RemoteSource, probe
from claw_tui.ui.app import ClawApp
from claw_tui.ui.screens.agent_form import AgentFormScreen
from claw_tui.ui.screens.confirm import ConfirmScreen
from tests.conftest import demo_config, wait_until
from tests.test_serve import free_port
from tests.test_tui import ask, fill_agent_form, stats_lines, wait_for

CONFIG = """\
# the service's own config: comments stay
[gateway]
listen = "127.0.0.1:{port}"

[telemetry]
poll_interval_s = 0.05

[store]
path = "{store}"

[[agents]]
name = "support"  # help desk
model = "qwen3:8b"
"""


class Service:
    """`claw serve --demo` in its own process, with a config file of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "service.toml"
        self.config.write_text(CONFIG.format(port=self.port, store=tmp_path / "service.db"))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "claw_tui", "--config", str(self.config), "serve", "--demo", "--sim-speed", "20"],
            stderr=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        wait_until(lambda: self.answers() or self.process.poll() is not None, timeout=30)
        assert self.process.poll() is None, "claw serve did not start"

    def answers(self) -> bool:
        try:
            return probe(self.url) is not None
        except NeedsToken:  # up, and asking for its token
            return True

    def stop(self, how: int = signal.SIGTERM) -> int:
        self.process.send_signal(how)
        return self.process.wait(timeout=20)


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path)
    service.start()
    yield service
    if service.process.poll() is None:
        service.process.kill()
        service.process.wait()


def attached_app(service: Service) -> ClawApp:
    return ClawApp(source=RemoteSource(service.url, None, probe(service.url)), config=demo_config())


def sdk_chat(url: str, model: str = "qwen3:8b") -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
    return answer.choices[0].message.content


def table_statuses(app) -> list[str]:
    table = app.query_one("#requests-table", DataTable)
    return [str(table.get_cell(key, "status")) for key in table.rows]


async def test_sdk_requests_show_in_the_attached_console_and_quitting_leaves_the_service(service):
    app = attached_app(service)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)
        assert app.sub_title.startswith("DEMO · attached · claw serve 127.0.0.1:")
        assert " · up " in app.sub_title
        await pilot.press("f5")
        for _ in range(3):
            assert await asyncio.to_thread(sdk_chat, service.url)
        await wait_for(lambda: table_statuses(app) == ["ok", "ok", "ok"])
        table = app.query_one("#requests-table", DataTable)
        row = table.get_row_at(0)
        assert any("J" in str(cell) for cell in row)  # the energy came with the finished event
        await pilot.press("f1")
        await wait_for(lambda: "tok/J all-in" in str(app.query_one("#power-stats").render()))
        await pilot.press("ctrl+q")
    assert service.process.poll() is None
    assert await asyncio.to_thread(sdk_chat, service.url)
    records = httpx.get(service.url + "/claw/v1/requests").json()["requests"]
    assert len(records) == 4


async def test_the_service_going_away_and_coming_back_while_attached(service):
    app = attached_app(service)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)
        await pilot.press("f5")
        assert await asyncio.to_thread(sdk_chat, service.url)
        await wait_for(lambda: table_statuses(app) == ["ok"])
        assert await asyncio.to_thread(service.stop) == 0
        await wait_for(lambda: "DISCONNECTED" in app.sub_title, timeout=20)
        assert any("lost the claw service" in n.message for n in app._notifications)
        assert table_statuses(app) == ["ok"]  # the panes keep what they had
        await asyncio.to_thread(service.start)  # the same address, a new session
        await wait_for(lambda: app.connected and "DISCONNECTED" not in app.sub_title, timeout=30)
        assert await asyncio.to_thread(sdk_chat, service.url, "llama3.2:3b")
        # The new session's requests replace the old one's (the console re-read the state).
        await wait_for(
            lambda: (
                table_statuses(app) == ["ok"]
                and "llama3.2:3b" in str(app.query_one("#requests-table", DataTable).get_row_at(0))
            ),
            timeout=20,
        )


async def test_chat_agents_governor_and_export_go_through_the_service(service, tmp_path):
    app = attached_app(service)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)
        # Chat: the answer streams through the service's gateway, and its stats come from the service's events.
        await pilot.press("f2")
        select = app.query_one("#chat-model", Select)
        await wait_for(lambda: not select.is_blank())
        await ask(pilot, "why is the sky blue?")
        await wait_for(lambda: any("TTFT" in line and "J/tok" in line for line in stats_lines(app)))
        records = httpx.get(service.url + "/claw/v1/requests").json()["requests"]
        assert records[0]["status"] == "ok" and records[0]["energy_j"] > 0

        # Agents: created and deleted in the service's config file, comments kept.
        await pilot.press("f4")
        table = app.query_one("#agents-table", DataTable)
        await wait_for(lambda: "support" in table.rows)
        await pilot.press("n")
        await fill_agent_form(pilot, name="triage", model="qwen3:8b")
        await wait_for(lambda: "triage" in table.rows)
        assert not isinstance(app.screen, AgentFormScreen)
        text = service.config.read_text()
        assert 'name = "triage"' in text and "# help desk" in text and "# the service's own config" in text
        table.move_cursor(row=table.get_row_index("triage"))
        await pilot.press("d")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(lambda: "triage" not in table.rows)
        assert 'name = "triage"' not in service.config.read_text()

        # F6: the service's governor.
        await pilot.press("f6")
        await wait_for(lambda: httpx.get(service.url + "/claw/v1/governor").json()["enabled"])
        await wait_for(lambda: "idle downclock on" in " ".join(n.message for n in app._notifications))

        # F7: the service's summary, written on this machine.
        await pilot.press("f7")
        note = await wait_for(lambda: next((n for n in app._notifications if n.title == "summary written"), None))
        path = Path(note.message.split("\n")[0])
        summary = json.loads(path.read_text())
        assert summary["schema"] == "claw.summary/1" and summary["requests"]["total"] >= 1
        assert path.with_suffix(".md").exists() and path.with_suffix(".csv").exists()
