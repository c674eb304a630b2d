"""Widgets of the Power pane: a braille line chart and the GPU selector bar.

The chart draws with braille dots (2×4 per cell) through Textual's line API. A plotext chart rebuilds its whole
figure and re-parses ANSI on every draw (8–17 ms per chart measured here, plus the parse), which alone would cost
more than the idle budget of the console at two charts and 2 Hz; this one buckets the points into dot columns and
emits one Strip per row, so a 90×30 chart draws in about a millisecond. Colours come from component classes
(styled in claw.tcss), so themes apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.content import Content
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

# Braille dot bits, indexed [column within the cell][row within the cell, top to bottom].
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_BRAILLE_BASE = 0x2800
_BLANK_BRAILLE = chr(_BRAILLE_BASE)
# _RUN_MASKS[column][first][last]: the bits of dots first..last (rows within a cell) of one dot column.
_RUN_MASKS = tuple(
    tuple(tuple(sum(_DOT_BITS[c][r] for r in range(first, last + 1)) for last in range(4)) for first in range(4))
    for c in range(2)
)


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points in ascending x; y None leaves a hole. Drawn in the order given (last on top)."""

    points: Sequence[tuple[float, float | None]]
    style: str  # a component class of BrailleChart, e.g. "chart--series-1"
    aggregate: str = "mean"  # how the points that fall into one dot column combine: "mean" or "max"
    max_gap: float | None = None  # no line across a jump in x larger than this


@dataclass(frozen=True)
class HLine:
    y: float
    style: str


def nice_step(span: float, max_ticks: int) -> float:
    """A 1/2/5×10^n step that cuts `span` into at most `max_ticks` intervals."""
    if span <= 0 or max_ticks < 1:
        return 1.0
    raw = span / max_ticks
    magnitude: float = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def format_tick(value: float, step: float) -> str:
    if step >= 1000 and value % 1000 == 0 and value:
        return f"{value / 1000:g}k"
    if step >= 1:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _ticks(y_range: tuple[float, float], plot_h: int) -> list[tuple[float, str]]:
    """Nice y ticks: a 1/2/5 step, one label every two rows at most."""
    y0, y1 = y_range
    step = nice_step(y1 - y0, max(1, min(5, plot_h // 2)))
    ticks = []
    value = math.ceil(y0 / step) * step
    while value <= y1 + 1e-9:
        ticks.append((value, format_tick(value, step)))
        value += step
    return ticks


def bucket(
    points: Sequence[tuple[float, float | None]], x0: float, x1: float, columns: int, aggregate: str
) -> list[float | None]:
    """The value of each dot column: mean or max of the points that fall into it."""
    sums = [0.0] * columns
    counts = [0] * columns
    peaks: list[float | None] = [None] * columns
    scale = columns / (x1 - x0)
    for x, y in points:
        if y is None:
            continue
        column = int((x - x0) * scale)
        if column < 0 or column >= columns:
            if column == columns and x <= x1:
                column = columns - 1
            else:
                continue
        if aggregate == "max":
            peak = peaks[column]
            peaks[column] = y if peak is None or y > peak else peak
        else:
            sums[column] += y
            counts[column] += 1
    if aggregate == "max":
        return peaks
    return [sums[i] / counts[i] if counts[i] else None for i in range(columns)]


class BrailleChart(Widget):
    """A line chart: series, horizontal reference lines, shaded x bands, y ticks on the left, x labels below."""

    COMPONENT_CLASSES = {
        "chart--axis",
        "chart--band",
        "chart--series-1",
        "chart--series-2",
        "chart--series-3",
        "chart--series-4",
        "chart--peak",
        "chart--limit",
        "chart--threshold",
        "chart--empty",
    }
    DEFAULT_CSS = """
    BrailleChart {
        height: 1fr;
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: list[Series] = []
        self._hlines: list[HLine] = []
        self._bands: list[tuple[float, float]] = []
        self._x_range = (0.0, 1.0)
        self._y_range = (0.0, 1.0)
        self._x_labels: list[tuple[float, str]] = []
        self._empty_text = "no data yet"
        self._version = 0
        self._cache_key: tuple[Any, ...] | None = None
        self._strips: list[Strip] = []
        self._styles: dict[str, Style] | None = None
        self._styles_theme = ""
        self._cell_style_cache: dict[Any, Any] = {}
        self._strip_width = 0

    def plot(
        self,
        *,
        series: Sequence[Series],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        hlines: Sequence[HLine] = (),
        bands: Sequence[tuple[float, float]] = (),
        x_labels: Sequence[tuple[float, str]] = (),
        empty_text: str = "no data yet",
    ) -> None:
        """Replace what the chart shows; it redraws on the next frame (and only if visible)."""
        x0, x1 = x_range
        y0, y1 = y_range
        self._series = list(series)
        self._hlines = list(hlines)
        self._bands = list(bands)
        self._x_range = (x0, x1 if x1 > x0 else x0 + 1.0)
        self._y_range = (y0, y1 if y1 > y0 else y0 + 1.0)
        self._x_labels = list(x_labels)
        self._empty_text = empty_text
        self._version += 1
        changed = self._render_changes()
        if changed is None:
            self.refresh()
        elif changed:
            # Repaint only the rows that changed: a flat idle trace moves a few rows, not the whole chart.
            width = self.size.width
            self.refresh(*(Region(0, y, width, 1) for y in changed))

    def dot_columns(self, y_range: tuple[float, float]) -> int:
        """How many dot columns the plot area has at this size with these y labels (for pre-aggregating data)."""
        width, height = self.size
        labels = self._tick_labels(y_range, height - 1)
        gutter = max((len(label) for label in labels), default=1) + 1
        return max(1, (width - gutter) * 2)

    @property
    def has_data(self) -> bool:
        return any(any(y is not None for _, y in s.points) for s in self._series)

    # ---- rendering ------------------------------------------------------------------------------------------------
    def _render_changes(self) -> list[int] | None:
        """Render now if the size is known; the rows that differ from what is on screen (None: all of them)."""
        width, height = self.size
        if width <= 0 or height <= 0:
            return None
        key = (self._version, width, height, self.app.theme)
        strips = self._render_strips(width, height)
        same_frame = self._cache_key is not None and self._cache_key[1:] == key[1:] and len(strips) == len(self._strips)
        changed = [y for y, (a, b) in enumerate(zip(strips, self._strips)) if a != b] if same_frame else None
        self._strips, self._cache_key = strips, key
        return changed

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        key = (self._version, width, height, self.app.theme)
        if key != self._cache_key:
            self._strips = self._render_strips(width, height)
            self._cache_key = key
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(width, self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._cell_style_cache = {}
        self._cache_key = None
        self._strips = []

    def _resolved_styles(self) -> dict[str, Style]:
        """Rich styles of the component classes on the widget's background (resolving them is not cheap)."""
        if self._styles is None or self._styles_theme != self.app.theme:
            base = self.rich_style
            self._styles = {name: base + self.get_component_rich_style(name) for name in self.COMPONENT_CLASSES}
            self._styles["base"] = base
            self._styles_theme = self.app.theme
        return self._styles

    def _render_strips(self, width: int, height: int) -> list[Strip]:
        styles = self._resolved_styles()
        base = styles["base"]
        if width <= 0 or height <= 0:
            return []
        y0, y1 = self._y_range
        plot_h = height - 1
        ticks = self._y_ticks(plot_h)
        gutter = max((len(label) for _, label in ticks), default=1) + 1
        plot_w = width - gutter
        if plot_w < 4 or plot_h < 2:
            return [Strip([Segment(" " * width, base)], width) for _ in range(height)]
        rows = plot_h * 4
        columns = plot_w * 2
        bits = [[0] * plot_w for _ in range(plot_h)]
        owner: list[list[str | None]] = [[None] * plot_w for _ in range(plot_h)]

        def dot_row(value: float) -> int:
            fraction = (value - y0) / (y1 - y0)
            return rows - 1 - min(rows - 1, max(0, round(fraction * (rows - 1))))

        def set_dot(column: int, row: int, style: str) -> None:
            cell_y, cell_x = row // 4, column // 2
            bits[cell_y][cell_x] |= _DOT_BITS[column % 2][row % 4]
            owner[cell_y][cell_x] = style

        def fill(column: int, low: int, high: int, style: str) -> None:
            """Dots low..high (inclusive) of one dot column, a cell at a time."""
            cell_x, masks = column // 2, _RUN_MASKS[column % 2]
            for cell_y in range(low // 4, high // 4 + 1):
                first = max(low, cell_y * 4) - cell_y * 4
                last = min(high, cell_y * 4 + 3) - cell_y * 4
                bits[cell_y][cell_x] |= masks[first][last]
                owner[cell_y][cell_x] = style

        for line in self._hlines:
            if y0 <= line.y <= y1:
                row = dot_row(line.y)
                for column in range(0, columns, 2):  # every other dot: a lighter, dashed look
                    set_dot(column, row, line.style)
        x0, x1 = self._x_range
        for series in self._series:
            self._draw_series(series, x0, x1, columns, dot_row, fill)

        band_cells = self._band_cells(plot_w)
        tick_rows = {dot_row(v) // 4: label for v, label in ticks}
        axis = styles["chart--axis"]
        cell_styles = self._cell_styles(styles)
        rows_segments = []
        for cell_y in range(plot_h):
            label = tick_rows.get(cell_y)
            gutter_text = (label.rjust(gutter - 1) + "┤") if label is not None else " " * (gutter - 1) + "│"
            rows_segments.append(
                [Segment(gutter_text, axis), *self._row_segments(bits[cell_y], owner[cell_y], band_cells, cell_styles)]
            )
        rows_segments.append([Segment(" " * gutter, axis), Segment(self._x_axis_text(plot_w), axis)])
        # A Strip is not cheap to make (it carries caches): keep the old one for every row that did not change.
        old = self._strips if len(self._strips) == len(rows_segments) and self._strip_width == width else []
        strips = [
            old[y] if old and old[y]._segments == segments else Strip(segments, width)
            for y, segments in enumerate(rows_segments)
        ]
        self._strip_width = width
        if not self.has_data:
            self._overlay_text(strips, self._empty_text, gutter, plot_w, plot_h, styles["chart--empty"])
        return strips

    def _y_ticks(self, plot_h: int) -> list[tuple[float, str]]:
        return _ticks(self._y_range, plot_h)

    @staticmethod
    def _tick_labels(y_range: tuple[float, float], plot_h: int) -> list[str]:
        return [label for _, label in _ticks(y_range, plot_h)]

    @staticmethod
    def _draw_series(
        series: Series,
        x0: float,
        x1: float,
        columns: int,
        dot_row: Callable[[float], int],
        fill: Callable[[int, int, int, str], None],
    ) -> None:
        values = bucket(series.points, x0, x1, columns, series.aggregate)
        gap_columns = math.inf if series.max_gap is None else series.max_gap / (x1 - x0) * columns + 1
        previous: tuple[int, int] | None = None
        for column, value in enumerate(values):
            if value is None:
                continue
            row = dot_row(value)
            if previous is not None and column - previous[0] <= gap_columns:
                p_column, p_row = previous
                span = column - p_column
                for step in range(1, span + 1):
                    # Interpolate across empty columns, then fill the vertical run so the line stays connected.
                    target = round(p_row + (row - p_row) * step / span)
                    start = round(p_row + (row - p_row) * (step - 1) / span)
                    low, high = (start, target) if start <= target else (target, start)
                    fill(p_column + step, low, high, series.style)
            else:
                fill(column, row, row, series.style)
            previous = (column, row)

    def _band_cells(self, plot_w: int) -> list[bool]:
        shaded = [False] * plot_w
        x0, x1 = self._x_range
        for b0, b1 in self._bands:
            start = max(0, math.floor((b0 - x0) / (x1 - x0) * plot_w))
            end = min(plot_w - 1, math.floor((b1 - x0) / (x1 - x0) * plot_w))
            for cell in range(start, end + 1):
                shaded[cell] = True
        return shaded

    def _cell_styles(self, styles: dict[str, Style]) -> dict[tuple[str | None, bool], Style]:
        """The style of a cell by (series that owns it, shaded by a band), made once per theme."""
        key = self._styles_theme
        if self._cell_style_cache.get("theme") != key:
            band_bg = styles["chart--band"].bgcolor
            cache: dict[Any, Any] = {"theme": key}
            for owner in (None, *self.COMPONENT_CLASSES):
                style = styles[owner] if owner is not None else styles["base"]
                cache[(owner, False)] = style
                cache[(owner, True)] = style + Style(bgcolor=band_bg) if band_bg is not None else style
            self._cell_style_cache = cache
        return self._cell_style_cache

    @staticmethod
    def _row_segments(
        bits: list[int], owner: list[str | None], band: list[bool], cell_styles: dict[tuple[str | None, bool], Style]
    ) -> list[Segment]:
        """One row of cells as segments, one per run of cells that look the same."""
        text = "".join([chr(_BRAILLE_BASE + value) for value in bits]).replace(_BLANK_BRAILLE, " ")
        keys = [(who if value else None, shaded) for value, who, shaded in zip(bits, owner, band)]
        segments = []
        start = 0
        for key, run in groupby(keys):
            length = sum(1 for _ in run)
            segments.append(Segment(text[start : start + length], cell_styles[key]))
            start += length
        return segments

    def _x_axis_text(self, plot_w: int) -> str:
        line = [" "] * plot_w
        x0, x1 = self._x_range
        occupied = [False] * plot_w
        for x, label in self._x_labels:
            position = round((x - x0) / (x1 - x0) * (plot_w - 1))
            start = min(max(0, position - len(label) // 2), plot_w - len(label))
            if start < 0 or any(occupied[max(0, start - 1) : start + len(label) + 1]):
                continue
            for i, char in enumerate(label):
                line[start + i] = char
                occupied[start + i] = True
        return "".join(line)

    @staticmethod
    def _overlay_text(strips: list[Strip], text: str, gutter: int, plot_w: int, plot_h: int, style: Style) -> None:
        text = text[:plot_w]
        row = plot_h // 2
        left = gutter + (plot_w - len(text)) // 2
        strip = strips[row]
        strips[row] = Strip.join(
            [strip.crop(0, left), Strip([Segment(text, style)]), strip.crop(left + len(text), strip.cell_length)]
        )


class GpuBar(Static):
    """One line of GPU chips (index, short name, power); click one, or press [ and ], to select it."""

    class Selected(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def show_gpus(self, chips: Sequence[tuple[int, str, bool]]) -> None:
        """chips: (index, text, selected)."""
        parts: list[Content] = [Content.styled("GPUs ", "$text-muted")]
        for index, text, selected in chips:
            style = "reverse bold $accent" if selected else "$text"
            parts.append(Content.styled(f" {text} ", style).stylize(f"@click=select({index})"))
            parts.append(Content(" "))
        parts.append(Content.styled(" [ ] to switch", "$text-muted"))
        self.update(Content.assemble(*parts), layout=False)

    def action_select(self, index: int) -> None:
        self.post_message(self.Selected(index))
