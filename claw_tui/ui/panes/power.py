"""The Power pane: per-GPU power trace with its limit, clocks, util/temperature, the GPU's state, alerts with
what to do, session energy by bucket (requests, model loads, unmetered, idle) and tokens per joule, and the
requests that spent that energy. It renders the console's model only (telemetry and requests from events).

Redraws only while visible (the app refreshes the active pane) and the charts at most twice a second.
Keys: [ and ] switch GPU (or click a GPU in the bar), w / W change the time window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.events import Resize
from textual.widgets import DataTable, Static, TabbedContent, Tabs

from claw_tui.telemetry.alerts import AlertThresholds
from claw_tui.ui import format as fmt
from claw_tui.ui.client import GatewayError
from claw_tui.ui.panes.base import Pane
from claw_tui.ui.panes.overview import GpuOverview
from claw_tui.ui.panes.power_widgets import BrailleChart, GpuBar, HLine, Series
from claw_tui.ui.widgets.columns import ellipsize

if TYPE_CHECKING:
    from collections.abc import Sequence

    from textual.widget import Widget
    from textual.worker import WorkType

    from claw_tui.console.model import ConsoleModel
    from claw_tui.console.telemetry_view import HistoryPoint, TelemetryView
    from claw_tui.telemetry.types import GpuSnapshot


WINDOWS_S = (10.0, 60.0, 120.0, 600.0, 3600.0)
DEFAULT_WINDOW_S = 120.0
PLOT_INTERVAL_S = 0.5  # charts redraw at most twice a second
MAX_PLOT_INTERVAL_S = 1.0
MAX_SIDE_INTERVAL_S = 2.0
MIN_WINDOW_S = 10.0
TALL_HEIGHT = 36  # from this pane height on: util/temp chart, recent requests and processes
WIDE_WIDTH = 120
SPLIT_CELLS_WIDTH = 100  # narrower: clocks, util and temperature share cells
CELL_GAP = 2
LOADED_POLL_S = 5.0  # the overview asks /api/ps this often (to name each runner's model)
RECENT_REQUESTS = 200  # records scanned for the bands and the requests table
RECENT_WITH_AVERAGE_WIDTH = 88  # the recent requests show their average power from this width on


@dataclass(frozen=True)
class Cell:
    label: str
    value: str
    style: str = ""

    @property
    def width(self) -> int:
        return len(self.label) + 1 + len(self.value)

    def content(self, width: int) -> Content:
        text = Content.assemble((self.label + " ", "$text-muted"), (self.value, self.style))
        return text.truncate(width, ellipsis=True).pad_right(width - text.cell_length)


def grid_lines(cells: list[Cell], width: int, max_columns: int = 8) -> list[Content]:
    """Lay the cells out row by row in the most columns that fit `width` (each column as wide as its widest cell)."""
    for columns in range(min(max_columns, len(cells)), 0, -1):
        widths = [max(c.width for c in cells[i::columns]) for i in range(columns)]
        if sum(widths) + CELL_GAP * (columns - 1) <= width or columns == 1:
            break
    lines = []
    for start in range(0, len(cells), columns):
        row = cells[start : start + columns]
        parts = []
        for i, cell in enumerate(row):
            if i:
                parts.append(Content(" " * CELL_GAP))
            parts.append(cell.content(min(widths[i], width)))
        lines.append(Content.assemble(*parts))
    return lines


def window_label(seconds: float) -> str:
    def amount(value: float) -> str:
        return f"{value:.0f}" if value >= 10 or value == round(value) else f"{value:.1f}"

    if seconds >= 3600:
        return f"{amount(seconds / 3600)} h"
    if seconds >= 60:
        return f"{amount(seconds / 60)} min"
    return f"{seconds:.0f} s"


class PowerColumns:
    """Mean and peak power per chart column on a grid fixed in time, kept between draws: each draw adds only the
    samples that arrived since the last one (about 50 a second) instead of going over the whole window again."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._columns: dict[int, list[float]] = {}  # column number -> [sum W, count, peak W]
        self._last_ts = -math.inf

    def update(
        self, sampler: TelemetryView, index: int, now: float, span: float, columns: int
    ) -> list[tuple[float, float, float]]:
        """(x relative to now, mean W, peak W) of each column of the window that has samples."""
        width = span / columns
        key = (id(sampler), index, round(width, 9))
        first = math.floor((now - span) / width)
        if key != self._key:
            self._key, self._columns, self._last_ts = key, {}, first * width
        for sample in sampler.power_trace(index, self._last_ts):
            column = self._columns.setdefault(math.floor(sample.ts / width), [0.0, 0, -math.inf])
            column[0] += sample.watts
            column[1] += 1
            if sample.watts > column[2]:
                column[2] = sample.watts
            self._last_ts = sample.ts
        for number in [n for n in self._columns if n < first]:
            del self._columns[number]
        return [
            ((number + 0.5) * width - now, total / count, peak)
            for number, (total, count, peak) in sorted(self._columns.items())
        ]


def merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _show(widget: Widget, visible: bool) -> None:
    if widget.display != visible:  # setting it at all costs a layout pass
        widget.display = visible


def _set_title(widget: Widget, title: str) -> None:
    if widget.border_title != title:
        widget.border_title = title


def short_gpu_name(name: str) -> str:
    return name.removeprefix("NVIDIA ").strip() or name


def power_style(power_w: float | None, limit_w: float | None) -> str:
    if power_w is None or not limit_w:
        return "bold"
    share = power_w / limit_w
    return "bold $error" if share >= 0.95 else "bold $warning" if share >= 0.8 else "bold $success"


def thresholds(model: ConsoleModel) -> AlertThresholds:
    """The service's alert thresholds (its config), as its status says."""
    known = model.status.get("alert_thresholds") or {}
    default = AlertThresholds()
    return AlertThresholds(
        power_alert_w=known.get("power_alert_w") or default.power_alert_w,
        temp_alert_c=known.get("temp_alert_c") or default.temp_alert_c,
    )


def energy_cells(totals: dict[str, Any], narrow: bool = False) -> list[Cell]:
    """Where the session's energy went: requests, model loads, the GPU busy with work claw did not see, idle."""
    cells = [
        Cell("energy", fmt.joules(totals.get("total_j")), "bold"),
        Cell("requests", fmt.joules(totals.get("active_j"))),
    ]
    load, unmetered = totals.get("load_j"), totals.get("unmetered_j")
    if narrow and load is not None and unmetered is not None:
        cells.append(Cell("load/unmet", f"{fmt.num(load, 1)}/{fmt.num(unmetered, 1, ' J')}"))
    else:
        cells += [
            Cell(label, fmt.joules(v)) for label, v in (("load", load), ("unmetered", unmetered)) if v is not None
        ]
    cells.append(Cell("idle", fmt.joules(totals.get("idle_j"))))
    return cells


def efficiency_cells(model: ConsoleModel, narrow: bool = False) -> list[Cell]:
    """Two numbers, two names: all the energy measured (idle included), and the requests' energy alone."""
    all_in, requests = fmt.ratio(model.tokens_per_joule_all_in), fmt.ratio(model.tokens_per_joule_requests)
    if narrow:
        return [Cell("tok/J all-in/requests", f"{all_in}/{requests}", "bold $success")]
    return [Cell("tok/J all-in", all_in, "bold $success"), Cell("tok/J requests", requests)]


class PowerPane(Pane):
    can_focus = True
    HELP_KEYS = (("Enter", "in the overview: the highlighted GPU in detail"),)
    BINDINGS = [
        Binding("o", "toggle_overview", "Overview", show=True, tooltip="Every GPU at once, or one GPU in detail"),
        Binding("left_square_bracket", "gpu(-1)", "Prev GPU", show=False),
        Binding("right_square_bracket", "gpu(1)", "Next GPU", show=False),
        Binding("w", "window(1)", "Window", show=False, tooltip="Longer chart window: 10 s … 1 h, then back"),
        Binding("W", "window(-1)", "Window", show=False, tooltip="Shorter chart window"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpu_index = 0
        self.window_s = DEFAULT_WINDOW_S
        self._last_plot = -float("inf")
        self._last_values = -float("inf")
        self._last_side_plot = -float("inf")
        self._shown: dict[str, object] = {}
        self._power_columns = PowerColumns()
        self.chart_draws = 0  # how many times the charts were rebuilt (benchmarks and tests read it)
        self.mode = "detail"  # or "overview": every GPU at once (`o`); several GPUs open on it
        self._mode_chosen = False
        self._loaded_models: list[dict[str, Any]] = []
        self._loaded_polled_at = -math.inf

    def compose(self) -> ComposeResult:
        yield GpuOverview(id="power-overview")
        with Vertical(id="power-detail"):
            yield GpuBar(id="power-gpus")
            yield Static(id="power-stats")
            yield Static(id="power-alerts")
            with Horizontal(id="power-charts"):
                yield BrailleChart(id="power-chart")
                with Vertical(id="power-side"):
                    yield BrailleChart(id="clock-chart")
                    yield BrailleChart(id="util-chart")
            with Horizontal(id="power-bottom"):
                yield Static(id="power-requests")
                yield Static(id="power-processes")

    def on_mount(self) -> None:
        self._show_mode()
        self.refresh_data()

    # ---- overview or detail --------------------------------------------------------------------------------------
    @property
    def overview(self) -> bool:
        return self.mode == "overview"

    def action_toggle_overview(self) -> None:
        self._mode_chosen = True
        highlighted = self.query_one(GpuOverview).highlighted_gpu
        if self.overview and highlighted is not None:
            self.gpu_index = highlighted  # the GPU highlighted in the overview is the one shown in detail
        self.mode = "detail" if self.overview else "overview"
        self._show_mode()
        # Once laid out: the charts size their dot columns from their widgets, which a hidden view did not have.
        self.call_after_refresh(self.refresh_data, True)

    def _show_mode(self) -> None:
        _show(self.query_one("#power-overview"), self.overview)
        _show(self.query_one("#power-detail"), not self.overview)
        if self.overview:
            self.query_one(GpuOverview).highlight(self.gpu_index)
            self._poll_loaded_models()
            if self.has_focus:
                self.query_one("#overview-gpus").focus()
        elif self.app.focused is not None and self in self.app.focused.ancestors:
            self.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a GPU of the overview: that GPU in detail."""
        if event.data_table.id == "overview-gpus":
            event.stop()
            self.action_toggle_overview()  # the selected row is the highlighted one

    def _poll_loaded_models(self) -> None:
        """The models /api/ps says are loaded, to name what each Ollama runner serves (every few seconds)."""
        now = time.monotonic()
        if now - self._loaded_polled_at >= LOADED_POLL_S:
            self._loaded_polled_at = now
            read: WorkType[None] = self._read_loaded_models
            self.run_worker(read, exclusive=True, group="power-ps", exit_on_error=False)

    async def _read_loaded_models(self) -> None:
        try:
            self._loaded_models = await self.app.gateway.ps()
        except GatewayError:
            self._loaded_models = []  # no names: the runners show as runners
            return
        self._show_overview(self.app.model)

    def _show_overview(self, session: ConsoleModel) -> None:
        sampler = session.telemetry
        snapshots = sampler.latest_all() if sampler.state == "ok" else []
        self.query_one(GpuOverview).show(session, snapshots, self._loaded_models, self.app.clock())

    def on_show(self) -> None:
        self.call_after_refresh(self._take_focus)

    def focus_main(self) -> None:
        if self.overview:
            self.query_one("#overview-gpus").focus()  # arrows move between GPUs; the pane's keys still apply
        else:
            self.focus()  # the pane itself takes the keys ([ ] w W)

    def _take_focus(self) -> None:
        """Hold the focus while shown (unless a field has it), so that [ ] and w reach the pane without a click."""
        tabs = next((node for node in self.ancestors if isinstance(node, TabbedContent)), None)
        if tabs is not None and self.parent is not None and tabs.active != self.parent.id:
            return  # another pane was chosen meanwhile: taking the focus would pull this tab back to the front
        if self.app.focused is None or isinstance(self.app.focused, Tabs):
            self.focus_main()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.height >= TALL_HEIGHT, "-tall")
        self.set_class(event.size.width >= WIDE_WIDTH, "-wide")
        self.refresh_data(force_plot=True)

    # ---- actions ------------------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "gpu":
            return self._gpu_count() > 1
        return True

    def action_gpu(self, step: int) -> None:
        count = self._gpu_count()
        if count:
            self.select_gpu((self.gpu_index + step) % count)

    def action_window(self, step: int) -> None:
        index = WINDOWS_S.index(self.window_s) if self.window_s in WINDOWS_S else 0
        wrapped = not 0 <= index + step < len(WINDOWS_S)
        self.window_s = WINDOWS_S[(index + step) % len(WINDOWS_S)]
        note = f"window {window_label(self.window_s)}"
        if wrapped:
            note += " (back to the shortest)" if step > 0 else " (round to the longest)"
        self.notify(note, title="power chart", timeout=3)
        self.refresh_data(force_plot=True)

    def on_gpu_bar_selected(self, message: GpuBar.Selected) -> None:
        self.select_gpu(message.index)

    def select_gpu(self, index: int) -> None:
        if self.overview:
            self.query_one(GpuOverview).highlight(index)
        if 0 <= index < self._gpu_count() and index != self.gpu_index:
            self.gpu_index = index
            self.refresh_data(force_plot=True)

    def _gpu_count(self) -> int:
        return self.app.model.telemetry.gpu_count

    # ---- refresh ------------------------------------------------------------------------------------------------
    def refresh_data(self, force_plot: bool = False) -> None:
        """Repaint at most twice a second, values and charts in the same pass (each repaint has a fixed cost in
        the compositor, so fewer, fuller repaints keep the idle console cheap); charts at most once per cell."""
        if not self.is_mounted:
            return
        now = self.app.clock()
        if not force_plot and now - self._last_values < PLOT_INTERVAL_S - 0.05:
            return
        self._last_values = now
        session = self.app.model
        sampler = session.telemetry
        telemetry_ok = sampler.state == "ok" and sampler.gpu_count > 0
        if telemetry_ok and self.gpu_index >= sampler.gpu_count:
            self.gpu_index = 0
        if telemetry_ok and not self._mode_chosen:  # a box of several GPUs opens on all of them at once
            self._mode_chosen = True
            if sampler.gpu_count > 1:
                self.mode = "overview"
                self._show_mode()
        if self.overview:
            self._poll_loaded_models()
            self._show_overview(session)
            return
        self._show_gpu_bar(sampler if telemetry_ok else None)
        self._show_stats(session, telemetry_ok)
        self._show_alerts(session)
        if force_plot or now - self._last_plot >= self._plot_interval(sampler if telemetry_ok else None, now) - 0.05:
            self._last_plot = now
            self.chart_draws += 1
            self._draw_charts(session, now, telemetry_ok, force_plot)
            if self.has_class("-tall"):
                self._show_requests(session)
                self._show_processes(sampler.latest(self.gpu_index) if telemetry_ok else None)

    def _plot_interval(self, sampler: TelemetryView | None, now: float) -> float:
        """Redraw when the chart would move by about one cell: twice a second for short windows, once for long."""
        if sampler is None:
            return PLOT_INTERVAL_S
        cells = max(1, self.query_one("#power-chart", BrailleChart).size.width - 5)
        return min(MAX_PLOT_INTERVAL_S, max(PLOT_INTERVAL_S, self._x_span(sampler, now) / cells))

    def _set_subtitle(self, widget: Widget, subtitle: Content | str) -> None:
        # Compared with what was set last (the border keeps its own form of it): any assignment repaints the chart.
        key = (subtitle.plain, tuple(subtitle.spans)) if isinstance(subtitle, Content) else subtitle
        if self._shown.get(f"subtitle:{widget.id}") != key:
            self._shown[f"subtitle:{widget.id}"] = key
            widget.border_subtitle = subtitle

    def _set_text(self, widget_id: str, lines: list[Content]) -> None:
        """Fill a fixed-size Static, repainting only when the text changed."""
        shown = [(line.plain, tuple(line.spans)) for line in lines]
        if self._shown.get(widget_id) != shown:
            self._shown[widget_id] = shown
            self.query_one(widget_id, Static).update(Content("\n").join(lines), layout=False)

    def _set_lines(self, widget_id: str, lines: list[Content]) -> None:
        shown = [(line.plain, tuple(line.spans)) for line in lines]
        if self._shown.get(widget_id) == shown:
            return  # unchanged: no repaint
        self._shown[widget_id] = shown
        widget = self.query_one(widget_id, Static)
        height = max(1, len(lines))
        resized = widget.styles.height is None or widget.styles.height.value != height
        if resized:
            widget.styles.height = height
        widget.update(Content("\n").join(lines), layout=resized)

    # ---- GPU bar, stats, alerts -------------------------------------------------------------------------------------
    def _show_gpu_bar(self, sampler: TelemetryView | None) -> None:
        bar = self.query_one("#power-gpus", GpuBar)
        several = sampler is not None and sampler.gpu_count > 1
        _show(bar, several)
        if not several:
            return
        assert sampler is not None  # several GPUs: there is telemetry
        chips = []
        for snapshot in sampler.latest_all():
            text = f"{snapshot.index} {short_gpu_name(snapshot.name)} {fmt.watts(snapshot.power_w)}"
            chips.append((snapshot.index, text, snapshot.index == self.gpu_index))
        bar.show_gpus(chips)

    def _show_stats(self, session: ConsoleModel, telemetry_ok: bool) -> None:
        width = max(20, self.size.width - 2)
        if not telemetry_ok:
            self._set_lines("#power-stats", self._no_telemetry_lines(session.telemetry))
            return
        snapshot = session.telemetry.latest(self.gpu_index)
        if snapshot is None:
            self._set_lines("#power-stats", [Content("waiting for the first sample…")])
            return
        lines = grid_lines(self._cells(session, snapshot), width)
        lines.append(self._status_line(session, snapshot).truncate(width, ellipsis=True))
        self._set_lines("#power-stats", lines)

    @staticmethod
    def _no_telemetry_lines(sampler: TelemetryView | None) -> list[Content]:
        if sampler is None or sampler.kind == "none" or sampler.state == "none":
            reason = sampler.message if sampler is not None else "no telemetry source"
            head = Content.assemble(("No GPU telemetry: ", "bold $warning"), reason or "source unavailable")
            tail = "The gateway keeps working; energy is not measured. Try `claw --demo` or `claw --replay FILE`."
        else:
            head = Content.assemble(("GPU telemetry lost: ", "bold $error"), sampler.message or "unknown error")
            tail = "claw reopens the source every few seconds and resumes by itself; the gateway keeps working."
        return [head, Content.styled(tail, "$text-muted")]

    def _cells(self, session: ConsoleModel, snapshot: GpuSnapshot) -> list[Cell]:
        sampler = session.telemetry
        index = self.gpu_index
        totals = session.energy
        limit = snapshot.power_limit_w
        if self.size.width >= SPLIT_CELLS_WIDTH:
            clocks = [
                Cell("SM", fmt.num(snapshot.sm_clock_mhz, 0, " MHz")),
                Cell("mem", fmt.num(snapshot.mem_clock_mhz, 0, " MHz")),
                Cell("util", fmt.num(snapshot.util_pct, 0, "%")),
                Cell("temp", fmt.num(snapshot.temp_c, 0, " °C")),
            ]
        else:  # narrow: pairs share a cell, so that the essentials keep to a few lines
            clocks = [
                Cell("SM/mem", f"{fmt.num(snapshot.sm_clock_mhz, 0)}/{fmt.num(snapshot.mem_clock_mhz, 0, ' MHz')}"),
                Cell("util/temp", f"{fmt.num(snapshot.util_pct, 0, '%')}/{fmt.num(snapshot.temp_c, 0, ' °C')}"),
            ]
        return [
            Cell(f"GPU {snapshot.index}", short_gpu_name(snapshot.name), "bold"),
            Cell("power", f"{fmt.num(snapshot.power_w, 0)}/{fmt.watts(limit)}", power_style(snapshot.power_w, limit)),
            Cell("σ60s", fmt.num(sampler.power_stddev_w(index), 1, " W")),
            *clocks,
            Cell("VRAM", fmt.vram(snapshot.vram_used_mib, snapshot.vram_total_mib)),
            Cell("P-state", snapshot.pstate or fmt.NA),
            *energy_cells(totals, narrow=self.size.width < SPLIT_CELLS_WIDTH),
            *efficiency_cells(session, narrow=self.size.width < SPLIT_CELLS_WIDTH),
        ]

    def _status_line(self, session: ConsoleModel, snapshot: GpuSnapshot) -> Content:
        sampler = session.telemetry
        reasons = ", ".join(snapshot.clock_event_reasons) or "none"
        reason_style = "$text" if reasons in ("none", "gpu_idle") else "bold $warning"
        trace = sampler.trace_stats(self.gpu_index)
        rate = f"{trace['rate_hz']:g} Hz" if trace.get("rate_hz") else "N/A"
        gaps = trace.get("gaps", 0)
        check = sampler.energy_check(self.gpu_index)
        counter = fmt.NA if check["error_pct"] is None else f"{check['error_pct']:+.2f}%"
        governor_text = fmt.governor_words(session.governor) + " · F6"
        parts = [
            ("reasons ", "$text-muted"),
            (reasons, reason_style),
            ("  in flight ", "$text-muted"),
            (str(session.in_flight), "$text"),
            ("  governor ", "$text-muted"),
            (governor_text, "$text"),
            ("  trace ", "$text-muted"),
            (f"{sampler.kind} {rate}", "$text"),
        ]
        if gaps:
            parts.append((f" {gaps} gap{'s' if gaps > 1 else ''}", "$warning"))
        parts += [("  samples vs counter ", "$text-muted"), (counter, "$text")]
        return Content.assemble(*parts)

    def _show_alerts(self, session: ConsoleModel) -> None:
        widget = self.query_one("#power-alerts", Static)
        gpu = self.gpu_index if session.telemetry.state == "ok" else None
        alerts = session.alerts_for(gpu)
        _show(widget, bool(alerts))
        if not alerts:
            return
        width = max(20, self.size.width - 2)
        lines = []
        for alert in alerts[:3]:
            critical = alert.get("severity") == "critical"
            style = "bold $error" if critical else "bold $warning"
            if alert.get("clearing"):
                style = "$text-muted"
            ago = "" if not alert.get("clearing") else f" (lasted {alert.get('duration_s') or 0:.0f} s, clearing)"
            line = Content.assemble(
                ("▲ " if critical else "△ ", style),
                (str(alert.get("message", "")), style),
                (ago, "$text-muted"),
                (" — ", "$text-muted"),
                (str(alert.get("hint", "")), "$text"),
            )
            lines.append(line.truncate(width, ellipsis=True))
        if len(alerts) > 3:
            lines[-1] = lines[-1].truncate(width - 12, ellipsis=True) + Content.styled(
                f"  +{len(alerts) - 3} more", "$text-muted"
            )
        self._set_lines("#power-alerts", lines)

    # ---- charts ---------------------------------------------------------------------------------------------------
    def _x_span(self, sampler: TelemetryView, now: float) -> float:
        """The window shown: the chosen one, or less while the session is younger (so the chart is never blank)."""
        elapsed = now - sampler.started_at
        return max(MIN_WINDOW_S, min(self.window_s, elapsed))

    def _draw_charts(self, session: ConsoleModel, now: float, telemetry_ok: bool, force: bool = False) -> None:
        power_chart = self.query_one("#power-chart", BrailleChart)
        clock_chart = self.query_one("#clock-chart", BrailleChart)
        util_chart = self.query_one("#util-chart", BrailleChart)
        if not telemetry_ok:
            for chart, title in ((power_chart, "Power"), (clock_chart, "Clocks"), (util_chart, "Util / temp")):
                _set_title(chart, title)
                self._set_subtitle(chart, "")
                chart.plot(series=[], x_range=(-self.window_s, 0), y_range=(0, 1), empty_text="no telemetry")
            return
        sampler = session.telemetry
        span = self._x_span(sampler, now)
        x_range = (-span, 0.0)
        x_labels = [(-span, f"-{window_label(span)}"), (-span / 2, f"-{window_label(span / 2)}"), (0.0, "now")]
        label = window_label(self.window_s)  # the window chosen (w / W); the axis shows how much of it has passed
        self._draw_power(power_chart, session, now, span, x_range, x_labels, label)
        # The side charts are narrower: they move by a cell less often, so they redraw less often (≤ every 2 s).
        side_cells = max(1, clock_chart.size.width - 5)
        side_interval = min(MAX_SIDE_INTERVAL_S, max(PLOT_INTERVAL_S, span / side_cells))
        if not force and now - self._last_side_plot < side_interval - 0.05:
            return
        self._last_side_plot = now
        history = self._history(sampler, now, span)
        self._draw_clocks(clock_chart, sampler, history, now, x_range, x_labels, label)
        if self.has_class("-tall"):
            self._draw_util(util_chart, session, history, now, x_range, x_labels, label)

    def _history(self, sampler: TelemetryView, now: float, span: float) -> list[HistoryPoint]:
        if span <= sampler.history_minutes * 60:
            return sampler.recent_history(self.gpu_index, now - span)
        return sampler.history_1hz(self.gpu_index, now - span)

    def _draw_power(
        self,
        chart: BrailleChart,
        session: ConsoleModel,
        now: float,
        span: float,
        x_range: tuple[float, float],
        x_labels: Sequence[tuple[float, str]],
        label: str,
    ) -> None:
        sampler = session.telemetry
        index = self.gpu_index
        snapshot = sampler.latest(index)
        limit = snapshot.power_limit_w if snapshot is not None else None
        threshold = thresholds(session).power_threshold_w(limit)
        y_top = max(limit or 0.0, 100.0)
        if span <= sampler.history_minutes * 60:
            columns = chart.dot_columns((0.0, y_top))
            slices = self._power_columns.update(sampler, index, now, span, columns)
            means: list[tuple[float, float | None]] = [(x, mean) for x, mean, _ in slices]
            peaks = [(x, peak) for x, _, peak in slices]
            per_column = span * 50 / columns  # 20 ms samples
        else:
            means = [(p.ts - now, p.power_w) for p in sampler.history_1hz(index, now - span)]
            peaks, per_column = [], 1.0
        top = max([limit or 0.0] + [w for _, w in peaks or means if w is not None])
        y_range = (0.0, top * 1.05 if top else 100.0)
        hlines = []
        if threshold is not None and threshold != limit:
            hlines.append(HLine(threshold, "chart--threshold"))
        if limit:
            hlines.append(HLine(limit, "chart--limit"))
        series = []
        if per_column > 2:  # several samples per dot column: show their peaks behind the mean
            series.append(Series(peaks, "chart--peak", aggregate="max", max_gap=1.0))
        series.append(Series(means, "chart--series-1", max_gap=1.0))
        chart.plot(
            series=series,
            x_range=x_range,
            y_range=y_range,
            hlines=hlines,
            bands=self._request_bands(session, now, span),
            x_labels=x_labels,
            empty_text="waiting for samples",
        )
        _set_title(chart, f"Power W · GPU {index} · {label} · {self._trace_rate(sampler)}")
        self._set_subtitle(chart, self._power_legend(chart.size.width, len(series) > 1, limit, threshold))

    @staticmethod
    def _power_legend(width: int, peaks: bool, limit: float | None, threshold: float | None) -> Content:
        wide = width >= 70
        legend = [Content.styled("━ mean", "$warning")]
        if peaks:
            legend.append(Content.styled("⠒ peak", "$text-muted"))
        if limit:
            legend.append(Content.styled(f"┄ limit {limit:.0f}" if wide else "┄ limit", "$error"))
        if threshold is not None and threshold != limit:
            legend.append(Content.styled(f"┄ alert {threshold:.0f}" if wide else "┄ alert", "$warning"))
        legend.append(Content.styled("█ requests" if wide else "█ req", "$primary"))
        if wide:
            legend.append(Content.styled("w window", "$text-muted"))
        return Content(" ").join(legend)

    def _trace_rate(self, sampler: TelemetryView) -> str:
        trace = sampler.trace_stats(self.gpu_index)
        median = trace.get("median_dt_s")
        return f"{median * 1000:.0f} ms" if median else "no samples"

    def _request_bands(self, session: ConsoleModel, now: float, span: float) -> list[tuple[float, float]]:
        start = now - span
        intervals = []
        for record in session.records(RECENT_REQUESTS):
            if record.gpu is not None and record.gpu != self.gpu_index:
                continue
            begin = record.t_upstream_start or record.t_arrival
            end = record.t_end if record.t_end is not None else now
            if end >= start and begin <= now:
                intervals.append((max(begin, start) - now, min(end, now) - now))
        return merge_intervals(intervals)

    def _draw_clocks(
        self,
        chart: BrailleChart,
        sampler: TelemetryView,
        history: list[HistoryPoint],
        now: float,
        x_range: tuple[float, float],
        x_labels: Sequence[tuple[float, str]],
        label: str,
    ) -> None:
        static = sampler.statics()[self.gpu_index]
        sm = [(p.ts - now, p.sm_clock_mhz) for p in history]
        mem = [(p.ts - now, p.mem_clock_mhz) for p in history]
        top = max(
            [static.max_sm_clock_mhz or 0, static.max_mem_clock_mhz or 0] + [v for _, v in sm + mem if v is not None]
        )
        chart.plot(
            series=[Series(mem, "chart--series-3", max_gap=5.0), Series(sm, "chart--series-2", max_gap=5.0)],
            x_range=x_range,
            y_range=(0.0, (top or 1000) * 1.05),
            x_labels=x_labels,
        )
        _set_title(chart, f"Clocks MHz · last {label}")
        self._set_subtitle(
            chart, Content(" ").join([Content.styled("━ SM", "$primary"), Content.styled("━ mem", "$secondary")])
        )

    def _draw_util(
        self,
        chart: BrailleChart,
        session: ConsoleModel,
        history: list[HistoryPoint],
        now: float,
        x_range: tuple[float, float],
        x_labels: Sequence[tuple[float, str]],
        label: str,
    ) -> None:
        util = [(p.ts - now, p.util_pct) for p in history]
        temp = [(p.ts - now, p.temp_c) for p in history]
        alert_c = thresholds(session).temp_alert_c
        top = max([100.0, alert_c] + [v for _, v in temp if v is not None])
        chart.plot(
            series=[Series(util, "chart--series-4", max_gap=5.0), Series(temp, "chart--series-1", max_gap=5.0)],
            x_range=x_range,
            y_range=(0.0, top * 1.05),
            hlines=[HLine(alert_c, "chart--threshold")],
            x_labels=x_labels,
        )
        _set_title(chart, f"Util % · Temp °C · last {label}")
        self._set_subtitle(
            chart,
            Content(" ").join(
                [
                    Content.styled("━ util", "$success"),
                    Content.styled("━ temp", "$warning"),
                    Content.styled(f"┄ alert {alert_c:.0f} °C", "$warning"),
                ]
            ),
        )

    # ---- bottom: the requests behind the energy, and who holds the VRAM --------------------------------------------
    def _show_requests(self, session: ConsoleModel) -> None:
        records = [
            r
            for r in session.records(RECENT_REQUESTS)
            if r.status != "active" and (r.gpu is None or r.gpu == self.gpu_index)
        ][-7:]
        with_average = self.query_one("#power-requests").size.width >= RECENT_WITH_AVERAGE_WIDTH
        head = f"{'time':8}  {'model':16} {'agent':10} {'status':9} {'dur':>7} {'tok':>5} {'energy':>9} {'J/tok':>6}"
        lines = [
            Content.styled(f"Recent requests on GPU {self.gpu_index}", "bold"),
            Content.styled(head + (f" {'avg W':>6}" if with_average else ""), "bold $text-muted"),
        ]
        for record in reversed(records):
            duration = record.duration_ms
            seconds = (duration or 0) / 1000
            avg_w = record.energy_j / seconds if seconds > 0 and record.energy_j else None
            status_style = "$success" if record.status == "ok" else "$error"
            numbers = (
                f"{fmt.ms(duration):>7} {record.completion_tokens:>5} {fmt.joules(record.energy_j):>9} "
                f"{fmt.ratio(record.joules_per_token, 2):>6}" + (f" {fmt.num(avg_w, 0):>6}" if with_average else "")
            )
            lines.append(
                Content.assemble(
                    (time.strftime("%H:%M:%S", time.localtime(record.t_arrival)) + "  ", "$text-muted"),
                    (f"{ellipsize(record.model, 16):16} ", "$text"),
                    (f"{ellipsize(record.agent or '—', 10):10} ", "$text-muted"),
                    (f"{record.status:9} ", status_style),
                    (numbers, "$text"),
                )
            )
        if not records:
            lines.append(Content.styled("no finished request yet: energy per request shows here", "$text-muted"))
        self._set_text("#power-requests", lines)

    def _show_processes(self, snapshot: GpuSnapshot | None) -> None:
        lines = [Content.styled("Processes on this GPU", "bold")]
        processes = snapshot.processes if snapshot is not None else []
        for process in sorted(processes, key=lambda p: -(p.vram_mib or 0))[:7]:
            runner = Content.styled(" ollama runner", "$accent") if process.is_ollama_runner else Content("")
            lines.append(
                Content.assemble(
                    (f"{process.pid:>7} ", "$text-muted"),
                    (f"{process.name[:18]:18} ", "$text"),
                    (f"{fmt.mib(process.vram_mib):>10}", "$text"),
                )
                + runner
            )
        if not processes:
            lines.append(Content.styled("no compute process", "$text-muted"))
        self._set_text("#power-processes", lines)
