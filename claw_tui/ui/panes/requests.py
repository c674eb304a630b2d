"""The Requests pane: the live request log, newest first, rows keyed by request id and updated in place.

Newest first, like a monitoring console: the cursor on the top row follows new requests; a cursor moved down stays
on its request while new rows arrive above it. Filters by model, agent and status; Enter opens every timing and the
energy split of the request under the cursor.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Select, Static

from claw_tui.console.records import RequestView as RequestRecord
from claw_tui.summary import group_metrics
from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane
from claw_tui.ui.screens.request_detail import RequestDetailScreen
from claw_tui.ui.widgets.columns import ColumnWidths, ellipsize, table_room

ALL = "all"
MAX_ROWS = 500
SCAN_RECORDS = 5000  # the newest records the filters look through
STATUSES = ("ok", "error", "cancelled", "rejected", "active")
# Every column, in the order shown; a narrow terminal drops them in DROP_ORDER until the rest fit, so that the
# numbers at the right (energy, tok/J) are never cut.
COLUMNS = (
    "time",
    "status",
    "model",
    "agent",
    "endpoint",
    "TTFT",
    "duration",
    "in",
    "out",
    "tok/s",
    "energy",
    "prefill",
    "decode",
    "tok/J",
    "id",
)
DROP_ORDER = ("id", "endpoint", "prefill", "decode", "tok/s", "in", "agent", "TTFT")  # time orders the rows
MODEL_WIDTH = 28


class TimeCell(Text):
    """The time column's text, carrying the arrival timestamp that orders the rows."""

    def __init__(self, ts: float) -> None:
        super().__init__(time.strftime("%H:%M:%S", time.localtime(ts)))
        self.ts = ts


def row_cells(record: RequestRecord, model_width: int = MODEL_WIDTH) -> dict[str, object]:
    rate = record.decode_tokens_per_s
    return {
        "endpoint": Text(record.endpoint, style="dim"),
        "tok/s": fmt.right("—" if rate is None else f"{rate:,.1f}"),
        "prefill": fmt.right(fmt.joules(record.prefill_j) if record.energy_j else "—"),
        "decode": fmt.right(fmt.joules(record.decode_j) if record.energy_j else "—"),
        "id": Text(record.id, style="dim"),
        "time": TimeCell(record.t_arrival),
        "status": Text(record.status, style=fmt.STATUS_STYLE.get(record.status, "")),
        "model": ellipsize(record.model, model_width),
        "agent": ellipsize(record.agent or "—", MODEL_WIDTH),
        "TTFT": fmt.right(fmt.duration(record.ttft_ms)),
        "duration": fmt.right(fmt.duration(record.duration_ms) if record.t_end else "…"),
        "in": fmt.right(f"{record.prompt_tokens:,}"),
        "out": fmt.right(f"{record.completion_tokens:,}"),
        "energy": fmt.right(fmt.joules(record.energy_j) if record.energy_j else "—"),
        "tok/J": fmt.right("—" if record.tokens_per_joule is None else f"{record.tokens_per_joule:.2f}"),
    }


def matches(record: RequestRecord, model: str, agent: str, status: str) -> bool:
    return (
        (model == ALL or record.model == model)
        and (agent == ALL or (record.agent or "") == agent)
        and (status == ALL or record.status == status)
    )


def summary_text(records: list[RequestRecord], shown: int) -> Text:
    metrics = group_metrics(records)
    requests = metrics.requests
    active = sum(1 for r in records if r.status == "active")
    text = Text.assemble((f"{requests.total:,}", "bold"), " request" if requests.total == 1 else " requests")
    if active:
        text.append(f" + {active} active", style="cyan")
    if shown < len(records):
        text.append(f" (newest {shown} shown)", style="dim")
    errors = requests.errors
    text.append(" · ")
    text.append(fmt.plural(errors, "error"), style="red" if errors else "dim")
    latency = metrics.latency_ms
    text.append(f" · p50 {fmt.duration(latency.p50)} · p95 {fmt.duration(latency.p95)}")
    text.append(f" · {metrics.tokens.completion:,} tok · ")
    tpj = metrics.efficiency.tokens_per_joule
    text.append("—" if tpj is None else f"{tpj:.2f}", style="bold green")
    text.append(" tok/J requests")
    return text


class RequestsPane(Pane):
    main_widget = "#requests-table"
    BINDINGS = [
        Binding(
            "enter",
            "details",
            "Details",
            show=True,
            tooltip="Details: every timing and the energy split of the request",
        ),
        Binding("ctrl+f", "focus_filters", "Filter", show=True, tooltip="Filter by model, agent or status"),
        Binding("escape", "clear_filters", "Clear filters", show=False, tooltip="Clear the filters"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns: tuple[str, ...] = ()
        self._widths = ColumnWidths(COLUMNS, caps={"model": MODEL_WIDTH, "agent": MODEL_WIDTH})
        self._model_width = MODEL_WIDTH
        self._finished: set[str] = set()  # rows that can no longer change
        self._choices: dict[str, tuple[str, ...]] = {"model": (), "agent": ()}
        self._last_summary = 0.0
        self._signature: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="requests-bar", classes="bar"):
            yield Select([], prompt="model: all", id="filter-model", compact=True)
            yield Select([], prompt="agent: all", id="filter-agent", compact=True)
            yield Select([(s, s) for s in STATUSES], prompt="status: all", id="filter-status", compact=True)
        yield Static("", id="requests-summary")
        yield DataTable(id="requests-table", cursor_type="row", zebra_stripes=True)
        yield Static(
            "No requests yet: point a client at the gateway, or ask something in Chat (F2).",
            id="requests-empty",
            classes="hint",
        )

    def on_mount(self) -> None:
        self._set_columns(self._fitted())

    def on_resize(self) -> None:
        if self._columns and self._fitted() != (self._columns, self._model_width):
            self._set_columns(self._fitted())
            self.refresh_data(force=True)

    def _fitted(self) -> tuple[tuple[str, ...], int]:
        """The columns that fit the table's width with the widest text seen in each, and the model names' width
        (shortened with … when even the fewest columns would not fit)."""
        room = table_room(self.query_one("#requests-table", DataTable), self.app.size.width - 2)
        columns = self._widths.fit(DROP_ORDER, room)
        return columns, self._widths.squeezed(columns, "model", room)

    def _set_columns(self, layout: tuple[tuple[str, ...], int]) -> None:
        table = self.query_one("#requests-table", DataTable)
        table.clear(columns=True)
        self._finished.clear()
        self._columns, self._model_width = layout
        for column in self._columns:
            table.add_column(column, key=column)

    # ---- filters --------------------------------------------------------------------------------------------------
    def filter_value(self, name: str) -> str:
        value = self.query_one(f"#filter-{name}", Select).value
        return ALL if value is Select.NULL else str(value)

    def _update_choices(self, records: list[RequestRecord]) -> None:
        seen = {"model": sorted({r.model for r in records}), "agent": sorted({r.agent for r in records if r.agent})}
        for name, values in seen.items():
            if tuple(values) == self._choices[name]:
                continue
            self._choices[name] = tuple(values)
            select = self.query_one(f"#filter-{name}", Select)
            current = select.value
            with select.prevent(Select.Changed):
                select.set_options([(value, value) for value in values])
                if current is not Select.NULL and current in values:
                    select.value = current

    @on(Select.Changed, "#requests-bar Select")
    def _filter_changed(self) -> None:
        self.refresh_data(force=True)

    def action_focus_filters(self) -> None:
        self.query_one("#filter-model", Select).focus()

    def action_clear_filters(self) -> None:
        for name in ("model", "agent", "status"):
            self.query_one(f"#filter-{name}", Select).clear()
        self.query_one("#requests-table", DataTable).focus()

    # ---- the log ------------------------------------------------------------------------------------------------
    def refresh_data(self, force: bool = False) -> None:
        console = self.app.model
        # Nothing new: skip the work (this runs 4 times a second).
        signature = console.requests_version
        if not force and signature == self._signature:
            return
        records = console.records(SCAN_RECORDS)
        self._signature = signature
        self._update_choices(records)
        model, agent, status = (self.filter_value(n) for n in ("model", "agent", "status"))
        selected = [r for r in records if matches(r, model, agent, status)]
        shown = selected[-MAX_ROWS:]
        self._sync_rows(shown)
        if self._fitted() != (self._columns, self._model_width):  # a wider value: drop a column, not cut a number
            self._set_columns(self._fitted())
            self._sync_rows(shown)
        self.query_one("#requests-empty", Static).display = not shown
        self.query_one("#requests-table", DataTable).display = bool(shown)
        now = time.monotonic()
        if now - self._last_summary >= 1.0 or not shown or force:
            self._last_summary = now
            self.query_one("#requests-summary", Static).update(summary_text(selected, len(shown)))

    def _sync_rows(self, records: list[RequestRecord]) -> None:
        table = self.query_one("#requests-table", DataTable)
        wanted = {r.id for r in records}
        for row_key in list(table.rows):
            if row_key.value not in wanted:
                table.remove_row(row_key)
                self._finished.discard(row_key.value)
        added = False
        for record in records:
            if record.id in self._finished:
                continue
            cells = row_cells(record, self._model_width)
            self._widths.add({**cells, "model": record.model})
            if record.id not in table.rows:
                table.add_row(*(cells[c] for c in self._columns), key=record.id)
                added = True
            else:
                for column in self._columns:
                    if column != "time" and str(table.get_cell(record.id, column)) != str(cells[column]):
                        table.update_cell(record.id, column, cells[column], update_width=True)
            if record.status != "active" and record.energy_final:
                self._finished.add(record.id)
        if added:
            self._newest_first(table)

    def _newest_first(self, table: DataTable[Any]) -> None:
        following = table.cursor_row <= 0
        current = (
            None if following or not table.row_count else table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        )
        table.sort("time", key=lambda cell: cell.ts, reverse=True)
        if following:
            table.move_cursor(row=0)
        elif current is not None and current in table.rows:
            table.move_cursor(row=table.get_row_index(current))

    def selected_record(self) -> RequestRecord | None:
        table = self.query_one("#requests-table", DataTable)
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        assert row_key.value is not None  # every row is added with its request's id as its key
        return self.app.model.record(row_key.value)

    def action_details(self) -> None:
        record = self.selected_record()
        if record is None:
            self.notify("No request selected", severity="warning")
            return
        self.app.push_screen(RequestDetailScreen(record))

    @on(DataTable.RowSelected, "#requests-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()
