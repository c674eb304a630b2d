"""The Batch pane: batch jobs (the OpenAI Batch API and `claw batch`), newest first, with progress, energy and ETA.

Rows are keyed by job id and updated in place from the console model, which `batch.*` events keep current; the line
under the table tells the selected job's window, files and webhook. `x` cancels the selected job.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from claw_tui.console.source import SourceError
from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane

COLUMNS = ("job", "status", "progress", "done", "failed", "energy", "J/tok", "ETA", "model", "created")
BAR_WIDTH = 12
STATUS_STYLE = {
    "completed": "green",
    "in_progress": "cyan",
    "validating": "cyan",
    "finalizing": "cyan",
    "failed": "bold red",
    "expired": "yellow",
    "cancelling": "yellow",
    "cancelled": "dim",
}
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


def progress_bar(done: int, total: int) -> Text:
    share = done / total if total else 0.0
    filled = round(share * BAR_WIDTH)
    return Text.assemble(("█" * filled, "green"), ("░" * (BAR_WIDTH - filled), "dim"), f" {share:4.0%}")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def row_cells(job: dict[str, Any]) -> tuple[Any, ...]:
    counts, claw = job.get("request_counts") or {}, job.get("claw") or {}
    done, failed, total = counts.get("completed", 0), counts.get("failed", 0), counts.get("total", 0)
    jpt = claw.get("joules_per_token")
    status = job.get("status", "")
    return (
        Text(job.get("id", ""), style="dim"),
        Text(status, style=STATUS_STYLE.get(status, "")),
        progress_bar(done + failed, total),
        fmt.right(f"{done:,}/{total:,}"),
        fmt.right(str(failed), "bold red" if failed else ""),
        fmt.right(fmt.joules(claw["energy_j"]) if claw.get("energy_j") else "—"),
        fmt.right("—" if jpt is None else f"{jpt:.3f}"),
        fmt.right(eta_text(claw.get("eta_s")) if status in ACTIVE else "—"),
        job.get("model") or "—",
        time.strftime("%m-%d %H:%M", time.localtime(job.get("created_at") or 0)),
    )


def summary_text(jobs: list[dict[str, Any]]) -> Text:
    if not jobs:
        return Text.assemble(
            ("No batch jobs yet. ", "bold"),
            "Submit one with the OpenAI SDK (client.batches.create) or `claw batch submit FILE.jsonl --model M`; "
            "it runs when interactive traffic leaves the GPU room.",
        )
    active = [j for j in jobs if j.get("status") in ACTIVE]
    queued = sum((j.get("claw") or {}).get("queued", 0) for j in active)
    running = sum((j.get("claw") or {}).get("in_flight", 0) for j in active)
    energy = sum((j.get("claw") or {}).get("energy_j") or 0.0 for j in jobs)
    text = Text.assemble((f"{len(jobs)}", "bold"), " job" if len(jobs) == 1 else " jobs")
    text.append(f" · {len(active)} active · {queued:,} requests queued · {running} running")
    text.append(f" · {fmt.joules(energy)} in all")
    return text


def detail_text(job: dict[str, Any] | None) -> Text:
    if job is None:
        return Text("")
    claw = job.get("claw") or {}
    usage = job.get("usage") or {}
    parts = [
        f"{job.get('id')} · {job.get('endpoint')} · window {job.get('completion_window')}",
        f"tokens {usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out",
        f"model loads {fmt.joules(claw.get('load_j') or 0.0)}",
    ]
    if not claw.get("energy_final", True):
        parts.append("energy not final yet")
    if job.get("output_file_id"):
        parts.append(f"output {job['output_file_id']}")
    if job.get("error_file_id"):
        parts.append(f"errors {job['error_file_id']}")
    hook = claw.get("webhook")
    if hook:
        parts.append(f"webhook {hook.get('state')} ({hook.get('tries')} tries)")
    return Text(" · ".join(parts), style="dim")


class BatchPane(Pane):
    main_widget = "#batch-table"
    DEFAULT_CSS = """
    BatchPane #batch-table { height: 1fr; }
    BatchPane #batch-summary, BatchPane #batch-detail { height: auto; padding: 0 1; }
    """
    BINDINGS = [Binding("x", "cancel_job", "Cancel job", show=True, tooltip="Cancel the selected batch job")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._version = -1
        self._rows: dict[str, tuple[Any, ...]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="batch-summary")
        table: DataTable[Any] = DataTable(id="batch-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="batch-detail")

    def on_mount(self) -> None:
        table = self.query_one("#batch-table", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)

    def refresh_data(self) -> None:
        model = self.app.model
        if model.batches_version == self._version:
            return
        self._version = model.batches_version
        jobs = model.batches
        self.query_one("#batch-summary", Static).update(summary_text(jobs))
        self._update_rows(jobs)
        self._show_detail()

    def _update_rows(self, jobs: list[dict[str, Any]]) -> None:
        table = self.query_one("#batch-table", DataTable)
        wanted = [job["id"] for job in jobs if job.get("id")]
        if list(self._rows) != wanted:  # jobs came or went: rebuild in order, keep the cursor on its job
            selected = self.selected_id()
            table.clear()
            self._rows = {}
            for job in jobs:
                cells = row_cells(job)
                table.add_row(*cells, key=job["id"])
                self._rows[job["id"]] = cells
            if selected in self._rows:
                table.move_cursor(row=table.get_row_index(selected))
            return
        for job in jobs:
            cells = row_cells(job)
            old = self._rows.get(job["id"])
            assert old is not None  # the same jobs as the rows (else they were rebuilt above)
            for column, (before, after) in zip(COLUMNS, zip(old, cells)):
                if str(before) != str(after):
                    table.update_cell(job["id"], column, after)
            self._rows[job["id"]] = cells

    def selected_id(self) -> str | None:
        table = self.query_one("#batch-table", DataTable)
        if not table.row_count:
            return None
        try:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:  # no cell under the cursor yet
            return None
        return key.value

    def _show_detail(self) -> None:
        selected = self.selected_id()
        job = next((j for j in self.app.model.batches if j.get("id") == selected), None)
        self.query_one("#batch-detail", Static).update(detail_text(job))

    @on(DataTable.RowHighlighted, "#batch-table")
    def _highlighted(self) -> None:
        self._show_detail()

    def action_cancel_job(self) -> None:
        batch_id = self.selected_id()
        if batch_id is None:
            self.notify("no batch job selected", severity="warning")
            return
        self.run_worker(self._cancel(batch_id), exclusive=True, group="batch-cancel", exit_on_error=False)

    async def _cancel(self, batch_id: str) -> None:
        try:
            source = self.app.source
            assert source is not None  # panes are mounted once the source runs
            job = await source.cancel_batch(batch_id)
        except SourceError as exc:
            self.notify(f"cancel: {exc}", severity="error")
            return
        self.notify(f"{batch_id}: {job.get('status')}", title="batch")
