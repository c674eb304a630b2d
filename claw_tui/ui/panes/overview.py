"""The Power pane's overview: every GPU at once (like nvitop, plus energy and the reasons clocks dropped), the
processes that hold GPU memory with the model each Ollama runner serves, and the host's CPU and RAM.

One row per GPU: power against its limit, the energy counter, SM/memory clocks, utilisation, temperature, fan, VRAM,
PCIe throughput, ECC and Xid errors, clock-event reasons; any of them N/A where the GPU does not report it. A narrow
terminal drops columns (the highlighted GPU's line below the table shows them all), never cuts a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from claw_tui.telemetry.types import GpuProcess, GpuSnapshot
from claw_tui.ui import format as fmt
from claw_tui.ui.widgets.columns import ColumnWidths, ellipsize, table_room

if TYPE_CHECKING:
    from claw_tui.console.model import ConsoleModel


GPU_COLUMNS = (
    "GPU",
    "name",
    "power W",
    "energy",
    "SM MHz",
    "mem MHz",
    "util",
    "temp",
    "fan",
    "VRAM",
    "PCIe rx/tx",
    "ECC c/u",
    "Xid",
    "reasons",
    "power, last 60 s",
)
GPU_DROP_ORDER = (
    "power, last 60 s",
    "name",
    "energy",
    "reasons",
    "Xid",
    "ECC c/u",
    "mem MHz",
    "fan",
    "PCIe rx/tx",
    "SM MHz",
)
PROCESS_COLUMNS = ("GPU", "pid", "process", "GPU mem", "SM", "mem", "model")
PROCESS_DROP_ORDER = ("mem", "pid", "SM")
NAME_WIDTH = 20
# A runner holds its model's weights plus its CUDA context and buffers: match within this much.
MATCH_SLACK_MIB = 1024.0
MATCH_SLACK_SHARE = 0.15
QUIET_REASONS = ("gpu_idle",)  # clock-event reasons that need no attention
SPARK_SECONDS = 60.0
SPARK_CELLS = 20
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


# ---- cells ----------------------------------------------------------------------------------------------------------
def energy_text(joules: float | None) -> str:
    if joules is None:
        return fmt.NA
    if joules >= 10e6:
        return f"{joules / 1e6:,.1f} MJ"
    return f"{joules / 1e3:,.1f} kJ" if joules >= 10e3 else f"{joules:,.0f} J"


def rate_text(kib_s: float | None) -> str:
    """PCIe throughput in the unit that keeps it short: `850 K`, `12.3 M`, `1.2 G` (bytes a second)."""
    if kib_s is None:
        return fmt.NA
    if kib_s >= 1024**2:
        return f"{kib_s / 1024**2:.1f}G"
    if kib_s >= 1024:
        return f"{kib_s / 1024:.1f}M"
    return f"{kib_s:.0f}K"


def pct(value: float | None) -> str:
    return fmt.num(value, 0, "%")


def power_cell(snapshot: GpuSnapshot) -> Text:
    power, limit = snapshot.power_w, snapshot.power_limit_w
    style = ""
    if power is not None and limit:
        share = power / limit
        style = "bold red" if share >= 0.95 else "bold yellow" if share >= 0.8 else "green"
    return fmt.right(f"{fmt.num(power, 0)}/{fmt.num(limit, 0)}", style)


def errors_cell(snapshot: GpuSnapshot) -> Text:
    corrected, uncorrected = snapshot.ecc_corrected, snapshot.ecc_uncorrected
    if corrected is None and uncorrected is None:
        return fmt.right(fmt.NA, "dim")
    return fmt.right(f"{fmt.num(corrected)}/{fmt.num(uncorrected)}", "bold red" if uncorrected else "")


def xid_cell(snapshot: GpuSnapshot) -> Text:
    if snapshot.xid_count is None:
        return fmt.right(fmt.NA, "dim")
    if not snapshot.xid_count:
        return fmt.right("0")
    return fmt.right(f"{snapshot.xid_count} ({snapshot.last_xid})", "bold red")


def reasons_cell(snapshot: GpuSnapshot) -> Text:
    reasons = [r for r in snapshot.clock_event_reasons if r not in QUIET_REASONS]
    if not reasons:
        return Text("idle" if snapshot.clock_event_reasons else "none", style="dim")
    return Text(", ".join(reasons), style="bold yellow")


def sparkline(points: list[tuple[float, float | None]], now: float, limit: float | None) -> Text:
    """The mean power of each 3 s of the last minute as a block (full block = the power limit), oldest first."""
    if not points or not limit:
        return Text("·" * SPARK_CELLS, style="dim")
    width = SPARK_SECONDS / SPARK_CELLS
    sums = [0.0] * SPARK_CELLS
    counts = [0] * SPARK_CELLS
    for ts, watts in points:
        cell = int((ts - (now - SPARK_SECONDS)) / width)
        if watts is not None and 0 <= cell < SPARK_CELLS:
            sums[cell] += watts
            counts[cell] += 1
    text = Text()
    for total, count in zip(sums, counts):
        if not count:
            text.append("·", style="dim")
            continue
        share = min(1.0, max(0.0, total / count / limit))
        style = "red" if share >= 0.95 else "yellow" if share >= 0.8 else "green"
        text.append(SPARK_BLOCKS[min(len(SPARK_BLOCKS) - 1, int(share * len(SPARK_BLOCKS)))], style=style)
    return text


def gpu_cells(snapshot: GpuSnapshot, history: Text | None = None) -> dict[str, object]:
    return {
        "GPU": fmt.right(str(snapshot.index), "bold"),
        "name": ellipsize(snapshot.name.removeprefix("NVIDIA ").strip() or snapshot.name, NAME_WIDTH),
        "power W": power_cell(snapshot),
        "energy": fmt.right(energy_text(snapshot.energy_j)),
        "SM MHz": fmt.right(fmt.num(snapshot.sm_clock_mhz)),
        "mem MHz": fmt.right(fmt.num(snapshot.mem_clock_mhz)),
        "util": fmt.right(pct(snapshot.util_pct)),
        "temp": fmt.right(fmt.num(snapshot.temp_c, 0, "°C")),
        "fan": fmt.right(pct(snapshot.fan_pct), "" if snapshot.fan_pct is not None else "dim"),
        "VRAM": fmt.right(fmt.vram(snapshot.vram_used_mib, snapshot.vram_total_mib)),
        "PCIe rx/tx": fmt.right(f"{rate_text(snapshot.pcie_rx_kib_s)}/{rate_text(snapshot.pcie_tx_kib_s)}"),
        "ECC c/u": errors_cell(snapshot),
        "Xid": xid_cell(snapshot),
        "reasons": reasons_cell(snapshot),
        "power, last 60 s": history if history is not None else Text("·" * SPARK_CELLS, style="dim"),
    }


def gpu_line(snapshot: GpuSnapshot, shown: Iterable[str] = ()) -> Text:
    """The highlighted GPU in words: its name, memory utilisation and P-state, and every field whose column the
    table left out for lack of room."""
    xid = fmt.NA if snapshot.xid_count is None else str(snapshot.xid_count)
    if snapshot.xid_count:
        xid += f" (last {snapshot.last_xid})"
    parts = [
        (None, "GPU ", f"{snapshot.index} {snapshot.name}"),
        ("power W", " · power ", f"{fmt.num(snapshot.power_w, 0)}/{fmt.watts(snapshot.power_limit_w)}"),
        ("energy", " · energy counter ", energy_text(snapshot.energy_j)),
        ("SM MHz", " · SM ", fmt.num(snapshot.sm_clock_mhz, 0, " MHz")),
        ("mem MHz", " · mem ", fmt.num(snapshot.mem_clock_mhz, 0, " MHz")),
        ("util", " · util ", pct(snapshot.util_pct)),
        (None, " · memory util ", pct(snapshot.mem_util_pct)),
        ("temp", " · temp ", fmt.num(snapshot.temp_c, 0, " °C")),
        ("fan", " · fan ", pct(snapshot.fan_pct)),
        ("VRAM", " · VRAM ", fmt.vram(snapshot.vram_used_mib, snapshot.vram_total_mib)),
        (
            "PCIe rx/tx",
            " · PCIe rx ",
            f"{rate_text(snapshot.pcie_rx_kib_s)}B/s tx {rate_text(snapshot.pcie_tx_kib_s)}B/s",
        ),
        (
            "ECC c/u",
            " · ECC ",
            f"{fmt.num(snapshot.ecc_corrected)} corrected, {fmt.num(snapshot.ecc_uncorrected)} uncorrected",
        ),
        ("Xid", " · Xid ", xid),
        (None, " · P-state ", snapshot.pstate or fmt.NA),
        ("reasons", " · reasons ", ", ".join(snapshot.clock_event_reasons) or "none"),
    ]
    shown = set(shown)
    text = Text()
    for column, label, value in parts:
        if column not in shown:
            text.append(label, style="dim")
            text.append(value)
    return text


def host_line(model: ConsoleModel, snapshots: list[GpuSnapshot], width: int = 200) -> Text:
    """The host and the GPUs together; parts that would not fit `width` are left out, not cut."""
    host = model.host
    text = Text()

    def part(label: str, value: str, style: str = "") -> None:
        piece = Text.assemble((" · " if text else "", "dim"), (label + " ", "dim"), (value, style))
        if text.cell_len + piece.cell_len <= width:
            text.append_text(piece)

    cpus = f" of {host['cpus']}" if host.get("cpus") else ""
    part("host CPU", pct(host.get("cpu_pct")) + cpus)
    used, total = host.get("ram_used_mib"), host.get("ram_total_mib")
    part("RAM", fmt.vram(used, total) if used is not None else fmt.NA)
    powers = [s.power_w for s in snapshots if s.power_w is not None]
    limits = [s.power_limit_w for s in snapshots if s.power_limit_w]
    total_power = f"{sum(powers):,.0f}" if powers else fmt.NA
    part(f"{len(snapshots)} GPU{'s' if len(snapshots) != 1 else ''}", f"{total_power}/{sum(limits):,.0f} W", "bold")
    used_vram = [s.vram_used_mib for s in snapshots if s.vram_used_mib is not None]
    total_vram = [s.vram_total_mib for s in snapshots if s.vram_total_mib is not None]
    if used_vram and total_vram:
        part("VRAM", fmt.vram(sum(used_vram), sum(total_vram)))
    part("tok/J all-in", fmt.ratio(model.tokens_per_joule_all_in), "bold green")
    return text


# ---- which model each Ollama runner serves ------------------------------------------------------------------------
def runner_models(gpus: Iterable[tuple[int, GpuProcess]], loaded: list[dict[str, Any]]) -> dict[int, str]:
    """pid → model for Ollama runners: the runner's GPU memory (added up over the GPUs it spans) against each loaded
    model's `size_vram` from /api/ps, closest first, within the slack a runner adds to its weights."""
    held: dict[int, float] = {}
    for _, process in gpus:
        if process.is_ollama_runner and process.vram_mib:
            held[process.pid] = held.get(process.pid, 0.0) + process.vram_mib
    sizes = {m["name"]: (m.get("size_vram") or 0) / 2**20 for m in loaded if m.get("name") and m.get("size_vram")}
    pairs = sorted((abs(mib - size), pid, name) for pid, mib in held.items() for name, size in sizes.items())
    matched: dict[int, str] = {}
    for difference, pid, name in pairs:
        if pid in matched or name in matched.values():
            continue
        if difference <= max(MATCH_SLACK_MIB, MATCH_SLACK_SHARE * sizes[name]):
            matched[pid] = name
    return matched


def process_cells(index: int, process: GpuProcess, model: str | None) -> dict[str, object]:
    return {
        "GPU": fmt.right(str(index)),
        "pid": fmt.right(str(process.pid), "dim"),
        "process": ellipsize(process.name, 18),
        "GPU mem": fmt.right(fmt.mib(process.vram_mib)),
        "SM": fmt.right(pct(process.sm_util_pct)),
        "mem": fmt.right(pct(process.mem_util_pct)),
        "model": Text(model, style="bold") if model else Text("—" if not process.is_ollama_runner else "runner", "dim"),
    }


# ---- the widget -----------------------------------------------------------------------------------------------------
class GpuOverview(Vertical):
    """Fed by the Power pane (`show`): it owns no state of the service."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gpu_widths = ColumnWidths(GPU_COLUMNS, caps={"name": NAME_WIDTH})
        self._process_widths = ColumnWidths(PROCESS_COLUMNS)
        self._columns: dict[str, tuple[str, ...]] = {}
        self._snapshots: list[GpuSnapshot] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="overview-host")
        yield DataTable(id="overview-gpus", cursor_type="row", zebra_stripes=True)
        yield Static("", id="overview-gpu-line")
        yield Static("Processes holding GPU memory", id="overview-processes-title", classes="section-title")
        yield DataTable(id="overview-processes", cursor_type="row", zebra_stripes=True)

    @property
    def gpus_table(self) -> DataTable[Any]:
        return self.query_one("#overview-gpus", DataTable)

    @property
    def highlighted_gpu(self) -> int | None:
        table = self.gpus_table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert key is not None  # every row is added with its GPU's index as its key
        return int(key)

    def highlight(self, index: int) -> None:
        table = self.gpus_table
        if str(index) in table.rows:
            table.move_cursor(row=table.get_row_index(str(index)))

    def show(
        self, model: ConsoleModel, snapshots: list[GpuSnapshot], loaded: list[dict[str, Any]], now: float | None = None
    ) -> None:
        self._snapshots = snapshots
        telemetry = model.telemetry
        now = snapshots[0].ts if now is None and snapshots else now
        host = self.query_one("#overview-host", Static)
        host.update(host_line(model, snapshots, (host.size.width or 78) - 2))
        self._fill(
            "#overview-gpus",
            self._gpu_widths,
            GPU_DROP_ORDER,
            {
                str(s.index): gpu_cells(
                    s,
                    sparkline(
                        [(p.ts, p.power_w) for p in telemetry.recent_history(s.index, now - SPARK_SECONDS)],
                        now,
                        s.power_limit_w,
                    )
                    if now is not None
                    else None,
                )
                for s in snapshots
            },
        )
        on_gpus = [(s.index, p) for s in snapshots for p in s.processes]
        models = runner_models(on_gpus, loaded)
        rows = {
            f"{index}:{process.pid}": process_cells(index, process, models.get(process.pid))
            for index, process in sorted(on_gpus, key=lambda item: (item[0], -(item[1].vram_mib or 0)))
        }
        self._fill("#overview-processes", self._process_widths, PROCESS_DROP_ORDER, rows)
        self.query_one("#overview-processes-title", Static).update(
            "Processes holding GPU memory" if rows else "Processes holding GPU memory: none"
        )
        self.show_highlighted()

    def show_highlighted(self) -> None:
        index = self.highlighted_gpu
        snapshot = next((s for s in self._snapshots if s.index == index), None)
        shown = self._columns.get("#overview-gpus", ())
        self.query_one("#overview-gpu-line", Static).update(gpu_line(snapshot, shown) if snapshot else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "overview-gpus":
            self.show_highlighted()

    def _fill(
        self, table_id: str, widths: ColumnWidths, drop_order: Iterable[str], rows: dict[str, dict[str, Any]]
    ) -> None:
        table = self.query_one(table_id, DataTable)
        widths.reset()
        for cells in rows.values():
            widths.add(cells)
        columns = widths.fit(drop_order, table_room(table, self.size.width or 78))
        if self._columns.get(table_id) != columns:
            self._columns[table_id] = columns
            table.clear(columns=True)
            for column in columns:
                table.add_column(column, key=column)
        for row_key in list(table.rows):
            if row_key.value not in rows:
                table.remove_row(row_key)
        for key, cells in rows.items():
            if key not in table.rows:
                table.add_row(*(cells[c] for c in columns), key=key)
                continue
            for column in columns:
                if str(table.get_cell(key, column)) != str(cells[column]):
                    table.update_cell(key, column, cells[column], update_width=True)
