"""The Agents pane: agents from the config (virtual models in the gateway) with their live statistics."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Label

from claw_tui.summary import group_metrics
from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane

COLUMNS = ("agent", "model", "requests", "errors", "p50", "p95", "TTFT p50", "tokens", "J/tok")


class AgentsPane(Pane):
    def compose(self) -> ComposeResult:
        yield Label("Agents (served as virtual models by the gateway)", classes="section-title")
        yield DataTable(id="agents-table", cursor_type="row", zebra_stripes=True)
        yield Label("", id="agents-hint")

    def on_mount(self) -> None:
        table = self.query_one("#agents-table", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.refresh_data()

    def rows(self) -> list[tuple[str, tuple]]:
        session = self.app.session
        records = session.ledger.records()
        out = []
        for agent in session.agents:
            metrics = group_metrics(r for r in records if r.agent == agent.name)
            requests = metrics["requests"]
            out.append((agent.name, (
                agent.name,
                agent.model,
                str(requests["total"]),
                str(requests["errors"]),
                fmt.ms(metrics["latency_ms"]["p50"]),
                fmt.ms(metrics["latency_ms"]["p95"]),
                fmt.ms(metrics["ttft_ms"]["p50"]),
                f"{metrics['tokens']['completion']:,}",
                fmt.ratio(metrics["efficiency"]["joules_per_token"]),
            )))
        return out

    def refresh_data(self) -> None:
        table = self.query_one("#agents-table", DataTable)
        rows = self.rows()
        keys = [key for key, _ in rows]
        for row_key in list(table.rows):
            if row_key.value not in keys:
                table.remove_row(row_key)
        for key, values in rows:
            if key not in table.rows:
                table.add_row(*values, key=key)
                continue
            for column, value in zip(COLUMNS, values):
                if table.get_cell(key, column) != value:
                    table.update_cell(key, column, value)
        hint = self.query_one("#agents-hint", Label)
        hint.update("" if rows else "No agents yet: add [[agents]] to the config (claw config path).")
