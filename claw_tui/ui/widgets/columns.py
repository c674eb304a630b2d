"""Tables that fit their terminal: columns of low priority are dropped before a number is cut.

A DataTable wider than its widget scrolls sideways, so its rightmost column (often the energy or J/token) shows cut
at the edge (`213.`). Each table keeps the widest text of each column, and shows the columns, in their order, that
fit its width, dropping them in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from textual.widget import Widget

CELL_PADDING = 2  # a DataTable cell has one blank column on each side
SCROLLBAR = 2  # room kept for the vertical scrollbar


def cell_width(value: object) -> int:
    if isinstance(value, Text):
        return value.cell_len
    return Text(str(value)).cell_len


class ColumnWidths:
    """The widest text of each column seen so far (headers included)."""

    def __init__(self, columns: Iterable[str], caps: Mapping[str, int] | None = None) -> None:
        self.headers = tuple(columns)
        self.caps = dict(caps or {})  # text columns shown at most this wide (longer text is ellipsized)
        self.reset()

    def reset(self) -> None:
        self.widths = {column: cell_width(column) for column in self.headers}

    def add(self, cells: Mapping[str, object]) -> None:
        widths = self.widths
        for column, value in cells.items():
            width = min(cell_width(value), self.caps.get(column, 10_000))
            if width > widths.get(column, 0):
                widths[column] = width

    def fit(self, drop_order: Iterable[str], available: int) -> tuple[str, ...]:
        """The columns (in their own order) that fit `available` cells, dropping those of `drop_order` first."""
        shown = list(self.headers)
        for column in drop_order:
            if self.total(shown) <= available:
                break
            if column in shown:
                shown.remove(column)
        return tuple(shown)

    def total(self, columns: Iterable[str]) -> int:
        return sum(self.widths[column] + CELL_PADDING for column in columns)

    def squeezed(self, columns: Iterable[str], column: str, available: int, minimum: int = 12) -> int:
        """How wide `column` may be for `columns` to fit `available` (its own width when they fit already)."""
        columns = tuple(columns)
        over = self.total(columns) - available
        return max(minimum, self.widths[column] - max(0, over))


def table_room(widget: Widget, fallback: int) -> int:
    """The cells a table can show across without scrolling sideways."""
    width = widget.size.width or fallback
    return max(20, width - SCROLLBAR)


def ellipsize(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"
