"""The Agents pane: the agents (virtual models served by the gateway) with live statistics; create, edit, delete.

A change goes to the core through the console source (in-process, or `claw serve`'s /claw/v1/agents): the core
writes it to its config file (only the [[agents]] tables; comments and the rest stay) and serves it at once.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from claw_tui.config import AgentConfig
from claw_tui.console.records import RequestView as RequestRecord
from claw_tui.console.source import SourceError
from claw_tui.summary import group_metrics
from claw_tui.ui import format as fmt
from claw_tui.ui.client import GatewayError
from claw_tui.ui.panes.base import Pane
from claw_tui.ui.screens.agent_form import AgentFormScreen, FormContext, options_text
from claw_tui.ui.screens.confirm import ConfirmScreen
from claw_tui.ui.widgets.columns import ColumnWidths, ellipsize, table_room

STATS_INTERVAL_S = 1.0
COLUMNS = ("agent", "model", "requests", "errors", "p50", "p95", "TTFT", "tokens", "J/tok")
DROP_ORDER = ("TTFT", "p50", "tokens", "errors")  # a narrow terminal drops these before J/tok is cut
NAME_WIDTH = 24


Agent = AgentConfig  # what the pane shows of an agent: its settings, as the core reports them


def agent_from_json(data: dict[str, Any]) -> AgentConfig:
    known = {k: v for k, v in data.items() if k in AgentConfig.__dataclass_fields__}
    return AgentConfig(
        **{**known, "options": dict(known.get("options") or {}), "tools": list(known.get("tools") or [])}
    )


def agent_config(agent: AgentConfig) -> AgentConfig:
    return dataclasses.replace(agent, options=dict(agent.options), tools=list(agent.tools))


def stats_cells(agent: Agent, records: list[RequestRecord]) -> tuple[Any, ...]:
    metrics = group_metrics(records)
    errors = metrics.requests.errors
    jpt = metrics.efficiency.joules_per_token
    return (
        ellipsize(agent.name, NAME_WIDTH),
        ellipsize(agent.model, NAME_WIDTH),
        fmt.right(f"{metrics.requests.total:,}"),
        fmt.right(str(errors), "bold red" if errors else ""),
        fmt.right(fmt.duration(metrics.latency_ms.p50)),
        fmt.right(fmt.duration(metrics.latency_ms.p95)),
        fmt.right(fmt.duration(metrics.ttft_ms.p50)),
        fmt.right(f"{metrics.tokens.completion:,}"),
        fmt.right("—" if jpt is None else f"{jpt:.2f}"),
    )


def agent_summary(agent: Agent) -> Group:
    """The selected agent's settings, label/value pairs in three columns, the system prompt on its own line."""
    facts = [
        ("model", agent.model),
        ("max tokens", f"{agent.max_tokens:,}" if agent.max_tokens else "model default"),
        ("options", options_text(agent.options) or "—"),
        ("fallback", agent.fallback or "—"),
        ("context", f"{agent.max_context_tokens:,} tokens" if agent.max_context_tokens else "whole conversation"),
        ("about", agent.description or "—"),
    ]
    table = Table.grid(padding=(0, 1), expand=True)
    for _ in range(3):
        table.add_column(style="dim", no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    cells = [Text(part) for pair in facts for part in pair]
    table.add_row(*cells[:6])
    table.add_row(*cells[6:])
    system = Text.assemble(("system ", "dim"), agent.system.replace("\n", " ") if agent.system else "—")
    system.no_wrap, system.overflow = True, "ellipsis"
    return Group(table, system)


class AgentsPane(Pane):
    main_widget = "#agents-table"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_stats = 0.0
        self._shown_agents: list[str] | None = None
        self._widths = ColumnWidths(COLUMNS)
        self._columns: tuple[str, ...] = ()

    BINDINGS = [
        Binding("n", "new_agent", "New", show=True, tooltip="New agent"),
        Binding("e,enter", "edit_agent", "Edit", show=True, tooltip="Edit the selected agent"),
        Binding("delete,d", "delete_agent", "Delete", show=True, tooltip="Delete the selected agent (asks first)"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(
            "Agents are virtual models: clients call them by name through the gateway. "
            "[dim]TTFT is the median; latency p50/p95 over answered requests.[/]",
            id="agents-title",
            classes="hint",
        )
        yield DataTable(id="agents-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="agents-detail")
        yield Static("", id="agents-hint", classes="hint")

    def on_mount(self) -> None:
        self._set_columns(COLUMNS)

    def on_resize(self) -> None:
        if self._columns:
            self.refresh_data(force=True)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        table = self.query_one("#agents-table", DataTable)
        table.clear(columns=True)
        self._columns = columns
        for column in columns:
            table.add_column(column, key=column)

    # ---- the table ----------------------------------------------------------------------------------------------
    @property
    def agents(self) -> list[AgentConfig]:
        return [agent_from_json(a) for a in self.app.model.agents]

    def rows(self) -> list[tuple[str, tuple[Any, ...]]]:
        by_agent: dict[str, list[RequestRecord]] = {}
        for record in self.app.model.records():
            if record.agent:
                by_agent.setdefault(record.agent, []).append(record)
        return [(agent.name, stats_cells(agent, by_agent.get(agent.name, []))) for agent in self.agents]

    def refresh_data(self, force: bool = False) -> None:
        # Statistics over the whole ledger: once a second is plenty, and cheap at any refresh rate.
        now = time.monotonic()
        agents = [a.name for a in self.agents]
        if not force and agents == self._shown_agents and now - self._last_stats < STATS_INTERVAL_S:
            return
        self._last_stats, self._shown_agents = now, agents
        table = self.query_one("#agents-table", DataTable)
        rows = [(key, dict(zip(COLUMNS, values))) for key, values in self.rows()]
        self._widths.reset()
        for _, cells in rows:
            self._widths.add(cells)
        fitted = self._widths.fit(DROP_ORDER, table_room(table, self.app.size.width - 2))
        if fitted != self._columns:  # drop a column rather than cut the J/tok at the edge
            self._set_columns(fitted)
        keys = [key for key, _ in rows]
        for row_key in list(table.rows):
            if row_key.value not in keys:
                table.remove_row(row_key)
        for key, cells in rows:
            if key not in table.rows:
                table.add_row(*(cells[c] for c in self._columns), key=key)
                continue
            for column in self._columns:
                if str(table.get_cell(key, column)) != str(cells[column]):
                    table.update_cell(key, column, cells[column], update_width=True)
        self._show_selected()
        hint = self.query_one("#agents-hint", Static)
        hint.update("No agents yet: press n to create one (clients then call it like a model)." if not rows else "")
        hint.display = not rows

    def selected_agent(self) -> Agent | None:
        table = self.query_one("#agents-table", DataTable)
        if not table.row_count:
            return None
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((a for a in self.agents if a.name == name), None)

    def _show_selected(self) -> None:
        agent = self.selected_agent()
        detail = self.query_one("#agents-detail", Static)
        detail.display = agent is not None
        if agent is not None:
            detail.update(agent_summary(agent))

    @on(DataTable.RowHighlighted, "#agents-table")
    def _highlighted(self) -> None:
        self._show_selected()

    @on(DataTable.RowSelected, "#agents-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit_agent()

    # ---- create, edit, delete -----------------------------------------------------------------------------------
    async def form_context(self, editing: str | None) -> FormContext:
        others = {a.name for a in self.agents if a.name != editing}
        try:
            tags = await self.app.gateway.tags()
        except GatewayError as exc:
            self.notify(f"cannot list models: {exc}", severity="warning")
            tags = []
        models = sorted(t["name"] for t in tags if t.get("name") and (t.get("details") or {}).get("format") != "agent")
        return FormContext(other_agents=others, models=models)

    def action_new_agent(self) -> None:
        self.run_worker(self._open_form(None), exclusive=True, group="agent-form", exit_on_error=False)

    def action_edit_agent(self) -> None:
        agent = self.selected_agent()
        if agent is None:
            self.notify("No agent selected", severity="warning")
            return
        self.run_worker(self._open_form(agent), exclusive=True, group="agent-form", exit_on_error=False)

    async def _open_form(self, agent: Agent | None) -> None:
        context = await self.form_context(agent.name if agent else None)
        result = await self.app.push_screen_wait(AgentFormScreen(agent_config(agent) if agent else None, context))
        if result is None:
            return
        if await self.save(dataclasses.asdict(result), replacing=agent.name if agent else None):
            verb = "created" if agent is None else "saved"
            self.notify(f"agent '{result.name}' {verb}; the gateway serves it now", title="agents")
            self.select(result.name)

    def action_delete_agent(self) -> None:
        agent = self.selected_agent()
        if agent is None:
            self.notify("No agent selected", severity="warning")
            return

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            if await self.save(None, replacing=agent.name):
                self.notify(f"agent '{agent.name}' deleted", title="agents")

        self.app.push_screen(
            ConfirmScreen(
                f"Delete agent [b]{agent.name}[/]? Clients that call it will get 'model not found'.", yes="Delete"
            ),
            answered,
        )

    async def save(self, agent: dict[str, Any] | None, replacing: str | None = None) -> bool:
        """Create, replace (`replacing`) or delete (`agent` None) an agent through the core, which writes its config
        file and serves the change; when it refuses, nothing changes and the reason is shown."""
        source = self.app.source
        assert source is not None  # panes are mounted once the source runs
        try:
            if agent is None:
                assert replacing is not None  # deleting names the agent
                agents = await source.delete_agent(replacing)
            else:
                agents = await source.save_agent(agent, replacing)
        except SourceError as exc:
            self.notify(f"agents not saved: {exc}", severity="error", timeout=10)
            return False
        self.app.model.agents = agents
        self.refresh_data(force=True)
        return True

    def select(self, name: str) -> None:
        table = self.query_one("#agents-table", DataTable)
        if name in table.rows:
            table.move_cursor(row=table.get_row_index(name))
        table.focus()
