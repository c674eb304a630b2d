"""The Requests pane: the live request log, rows keyed by request id and updated in place."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable

from claw_tui.ledger import RequestRecord
from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane

COLUMNS = ("time", "status", "model", "agent", "TTFT", "duration", "in", "out", "energy", "tok/J")
STATUS_STYLE = {"ok": "green", "error": "red", "cancelled": "yellow", "rejected": "magenta", "active": "cyan"}
MAX_ROWS = 500


def row_cells(record: RequestRecord) -> tuple:
    return (
        time.strftime("%H:%M:%S", time.localtime(record.t_arrival)),
        Text(record.status, style=STATUS_STYLE.get(record.status, "")),
        record.model,
        record.agent or "—",
        fmt.ms(record.ttft_ms),
        fmt.ms(record.duration_ms),
        str(record.prompt_tokens),
        str(record.completion_tokens),
        fmt.joules(record.energy_j) if record.energy_j else "—",
        fmt.ratio(record.tokens_per_joule),
    )


class RequestsPane(Pane):
    def compose(self) -> ComposeResult:
        yield DataTable(id="requests-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#requests-table", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.refresh_data()

    def refresh_data(self) -> None:
        table = self.query_one("#requests-table", DataTable)
        records = self.app.session.ledger.records(MAX_ROWS)
        for record in records:
            cells = row_cells(record)
            if record.id not in table.rows:
                table.add_row(*cells, key=record.id)
                continue
            for column, value in zip(COLUMNS, cells):
                if str(table.get_cell(record.id, column)) != str(value):
                    table.update_cell(record.id, column, value)
        keep = {r.id for r in records}
        for row_key in list(table.rows):
            if row_key.value not in keep:
                table.remove_row(row_key)
