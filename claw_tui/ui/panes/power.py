"""The Power pane: live power and clock graphs per GPU, the GPU's state, session energy and tokens/J."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static
from textual_plotext import PlotextPlot

from claw_tui.telemetry.types import PowerSample
from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane

WINDOW_S = 120.0
PLOT_BUCKET_S = 1.0


STAT_CELL_WIDTH = 19


def stat_grid(cells: list[Text], width: int) -> Table:
    """Lay the cells out in as many columns as the pane's width allows."""
    columns = max(2, min(6, (width - 2) // STAT_CELL_WIDTH))
    table = Table.grid(padding=(0, 1), expand=True)
    for _ in range(columns):
        table.add_column(no_wrap=True, overflow="ellipsis")
    for start in range(0, len(cells), columns):
        row = cells[start:start + columns]
        table.add_row(*row, *[""] * (columns - len(row)))
    return table


def downsample(samples: list[PowerSample], start: float, bucket_s: float) -> tuple[list[float], list[float]]:
    """Mean power per time bucket, as (seconds relative to now, watts), for plotting."""
    buckets: dict[int, list[float]] = {}
    for sample in samples:
        buckets.setdefault(int((sample.ts - start) // bucket_s), []).append(sample.watts)
    xs, ys = [], []
    for key in sorted(buckets):
        values = buckets[key]
        xs.append(key * bucket_s)
        ys.append(sum(values) / len(values))
    return xs, ys


class PowerPane(Pane):
    """Redraws only when visible (the app calls `refresh_data` for the active pane) and at most twice a second."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gpu_index = 0
        self._last_plot = 0.0
        self._clock_history: list[tuple[float, int | None, int | None]] = []

    def compose(self) -> ComposeResult:
        yield Static(id="power-stats")
        with Horizontal(id="power-plots"):
            yield PlotextPlot(id="power-plot")
            yield PlotextPlot(id="clock-plot")

    def on_mount(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        session = self.app.session
        self.query_one("#power-stats", Static).update(self._stats(session))
        now = self.app.clock()
        if now - self._last_plot >= 0.5:
            self._last_plot = now
            self._draw_plots(session, now)

    # ---- the stats block ------------------------------------------------------------------------------------
    def _stats(self, session) -> Table | Text:
        sampler = session.sampler
        if sampler is None or sampler.kind == "none" or sampler.state != "ok":
            message = sampler.message if sampler else "no telemetry"
            return Text.assemble(("No GPU telemetry: ", "bold"), message or "source unavailable",
                                 "\nThe gateway keeps working; energy is not measured.")
        snapshot = sampler.latest(self.gpu_index)
        if snapshot is None:
            return Text("waiting for the first sample…")
        return stat_grid(self._cells(session, snapshot), width=self.size.width)

    def _cells(self, session, snapshot) -> list[Text]:
        sampler = session.sampler
        totals = session.ledger.totals()
        tokens = sum(r.completion_tokens for r in session.ledger.records() if r.status == "ok")
        tokens_per_j = tokens / totals["total_j"] if totals["total_j"] > 0 and tokens else None

        def cell(label: str, value: str, style: str = "") -> Text:
            return Text.assemble((f"{label} ", "dim"), (value, style))

        return [
            cell(f"GPU {snapshot.index}", snapshot.name),
            cell("power", f"{fmt.watts(snapshot.power_w)} / {fmt.watts(snapshot.power_limit_w)}", "bold"),
            cell("SM", fmt.num(snapshot.sm_clock_mhz, 0, " MHz")),
            cell("mem", fmt.num(snapshot.mem_clock_mhz, 0, " MHz")),
            cell("util", fmt.num(snapshot.util_pct, 0, "%")),
            cell("temp", fmt.num(snapshot.temp_c, 0, "°C")),
            cell("VRAM", fmt.vram(snapshot.vram_used_mib, snapshot.vram_total_mib)),
            cell("P-state", snapshot.pstate or fmt.NA),
            cell("σ60s", fmt.num(sampler.power_stddev_w(self.gpu_index), 1, " W")),
            cell("energy", fmt.joules(totals["total_j"])),
            cell("idle", fmt.joules(totals["idle_j"])),
            cell("tokens/J", fmt.ratio(tokens_per_j), "bold green"),
            cell("reasons", ", ".join(snapshot.clock_event_reasons) or "none"),
            cell("governor", session.governor_json().get("state", "off")),
            cell("in flight", str(session.ledger.in_flight())),
            cell("source", sampler.kind),
        ]

    # ---- the graphs ---------------------------------------------------------------------------------------------
    def _draw_plots(self, session, now: float) -> None:
        sampler = session.sampler
        if sampler is None or sampler.state != "ok":
            return
        start = now - WINDOW_S
        xs, ys = downsample(sampler.power_trace(self.gpu_index, start), start, PLOT_BUCKET_S)
        xs = [x - WINDOW_S for x in xs]
        snapshot = sampler.latest(self.gpu_index)
        power_plot = self.query_one("#power-plot", PlotextPlot)
        plt = power_plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Power (W)")
        if xs:
            plt.plot(xs, ys, color="orange", marker="braille")
        if snapshot is not None and snapshot.power_limit_w:
            plt.hline(snapshot.power_limit_w, "red")
            plt.ylim(0, snapshot.power_limit_w * 1.05)
        plt.xlim(-WINDOW_S, 0)
        plt.xlabel("seconds")
        power_plot.refresh()
        self._draw_clocks(sampler, now)

    def _draw_clocks(self, sampler, now: float) -> None:
        history = [s for s in sampler.history_1hz(self.gpu_index) if s.ts >= now - WINDOW_S]
        clock_plot = self.query_one("#clock-plot", PlotextPlot)
        plt = clock_plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Clocks (MHz)")
        xs = [s.ts - now for s in history]
        sm = [s.sm_clock_mhz or 0 for s in history]
        mem = [s.mem_clock_mhz or 0 for s in history]
        if xs:
            plt.plot(xs, sm, color="cyan", marker="braille", label="SM")
            plt.plot(xs, mem, color="magenta", marker="braille", label="mem")
        plt.xlim(-WINDOW_S, 0)
        plt.xlabel("seconds")
        clock_plot.refresh()
