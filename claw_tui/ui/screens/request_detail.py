"""One request in full: every timing from arrival to the last token, the server's own timings, the energy split."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from claw_tui.console.records import RequestView as RequestRecord
from claw_tui.ui import format as fmt
from claw_tui.ui.screens import dialog_classes

PHASES = (  # (label, start attribute, end attribute, colour)
    ("queue", "t_arrival", "t_queue_exit", "magenta"),
    ("connect", "t_queue_exit", "t_upstream_start", "blue"),
    ("prefill", "t_upstream_start", "t_first_token", "yellow"),
    ("decode", "t_first_token", "t_end", "green"),
)
BAR_WIDTH = 40


def clock_text(ts: float | None) -> str:
    if ts is None:
        return fmt.NA
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def since(record: RequestRecord, ts: float | None) -> str:
    if ts is None:
        return "—"
    return "+" + fmt.ms((ts - record.t_arrival) * 1000)


def phase_bar(record: RequestRecord, width: int = BAR_WIDTH) -> Text:
    """The request's life as one bar: queue, connect, prefill and decode in proportion to their length."""
    spans = []
    for label, start_name, end_name, colour in PHASES:
        start, end = getattr(record, start_name), getattr(record, end_name)
        if start is not None and end is not None and end - start >= 0.0005:
            spans.append((label, end - start, colour))
    total = sum(length for _, length, _ in spans)
    bar = Text()
    if total <= 0:
        return Text("—", style="dim")
    for _label, length, colour in spans:
        cells = max(1, round(width * length / total))
        bar.append("█" * cells, style=colour)
    legend = Text("  ")
    for label, length, colour in spans:
        legend.append("■ ", style=colour)
        legend.append(f"{label} {fmt.ms(length * 1000)}  ", style="dim")
    return Text.assemble(bar, "\n", legend)


def energy_bar(record: RequestRecord, width: int = BAR_WIDTH) -> Text:
    if record.energy_j <= 0:
        return Text("no energy attributed (no GPU telemetry, or no power samples yet)", style="dim")
    prefill_cells = round(width * record.prefill_j / record.energy_j)
    bar = Text()
    bar.append("█" * prefill_cells, style="yellow")
    bar.append("█" * (width - prefill_cells), style="green")
    share = 100 * record.prefill_j / record.energy_j
    return Text.assemble(
        bar,
        "\n",
        ("■ ", "yellow"),
        (f"prefill {fmt.joules(record.prefill_j)} ({share:.0f}%)  ", "dim"),
        ("■ ", "green"),
        (f"decode {fmt.joules(record.decode_j)} ({100 - share:.0f}%)", "dim"),
    )


def section(title: str) -> Text:
    return Text("\n" + title, style="bold")


def pairs(rows: list[tuple[str, str | Text]], columns: int = 2) -> Table:
    """Label/value pairs laid out `columns` pairs to a row."""
    table = Table.grid(padding=(0, 1), expand=True)
    for _ in range(columns):
        table.add_column(style="dim", no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for start in range(0, len(rows), columns):
        chunk = rows[start : start + columns]
        cells: list[Any] = [part for pair in chunk for part in pair]
        table.add_row(*cells, *[""] * (2 * columns - len(cells)))
    return table


def inline(items: list[tuple[str, str]]) -> Text:
    text = Text()
    for label, value in items:
        if text:
            text.append(" · ", style="dim")
        text.append(f"{label} ", style="dim")
        text.append(value)
    return text


def request_details(record: RequestRecord) -> Group:
    status = Text(record.status, style=fmt.STATUS_STYLE.get(record.status, ""))
    if record.http_status:
        status.append(f" {record.http_status}")
    model = record.model + (f" (fallback for {record.downgraded_from})" if record.downgraded_from else "")
    head = pairs(
        [
            ("status", status),
            ("endpoint", f"{record.endpoint} ({record.surface}, {'stream' if record.stream else 'whole'})"),
            ("model", model),
            ("backend", (record.backend or "—") + (f", GPU {record.gpu}" if record.gpu is not None else "")),
            ("agent", record.agent or "—"),
            ("client", record.client or "—"),
        ]
    )
    timeline = Table.grid(padding=(0, 2))
    timeline.add_column(style="dim", no_wrap=True, min_width=14)
    timeline.add_column(no_wrap=True)
    timeline.add_column(justify="right", no_wrap=True)
    for label, ts in (
        ("arrival", record.t_arrival),
        ("queue exit", record.t_queue_exit),
        ("upstream start", record.t_upstream_start),
        ("first token", record.t_first_token),
        ("end", record.t_end),
    ):
        timeline.add_row(label, clock_text(ts), since(record, ts))
    if record.wake_ms is not None:
        timeline.add_row("governor wake", "", fmt.ms(record.wake_ms))
    rate = record.decode_tokens_per_s
    more = Table.grid(padding=(0, 2))
    more.add_column(style="dim", no_wrap=True, min_width=14)
    more.add_column(overflow="fold")
    more.add_row(
        "server",
        inline(
            [
                ("load", fmt.ms(record.server_load_ms)),
                ("prompt eval", fmt.ms(record.server_prompt_eval_ms)),
                ("eval", fmt.ms(record.server_eval_ms)),
                ("total", fmt.ms(record.server_total_ms)),
            ]
        ),
    )
    more.add_row(
        "tokens",
        inline(
            [
                ("prompt", f"{record.prompt_tokens:,}"),
                ("completion", f"{record.completion_tokens:,}"),
                ("decode", f"{rate:.1f} tok/s" if rate else fmt.NA),
            ]
        ),
    )
    energy = Text.assemble(
        ("energy ", "dim"),
        (fmt.joules(record.energy_j), "bold"),
        ("" if record.energy_final else " (still counting)", "dim"),
    )
    energy.append(" · ", style="dim")
    energy.append_text(
        inline([("tokens/J", fmt.ratio(record.tokens_per_joule)), ("J/token", fmt.ratio(record.joules_per_token))])
    )
    parts: list[RenderableType] = [
        head,
        section("Timeline"),
        phase_bar(record),
        timeline,
        more,
        section("Energy"),
        energy_bar(record),
        energy,
    ]
    if record.error:
        parts += ["", section("Error"), Text(record.error, style="red")]
    return Group(*parts)


class RequestDetailScreen(ModalScreen[None]):
    """Follows the record while it is still running or its energy is still being counted."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", show=False)]

    def __init__(self, record: RequestRecord) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        with Vertical(id="request-dialog", classes=dialog_classes(self.app)):
            yield Static(f"Request {self.record.id}", classes="dialog-title")
            with VerticalScroll(id="request-body"):
                yield Static(request_details(self.record), id="request-details")
            yield Static("Esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        if not self.record.energy_final:
            self.set_interval(0.5, self.refresh_details)

    def refresh_details(self) -> None:
        self.query_one("#request-details", Static).update(request_details(self.record))
