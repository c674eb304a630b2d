"""A DataTable whose header follows its columns.

DataTable widens its columns on idle, after rows arrived, without invalidating the lines it drew before: a header
drawn between the rows' arrival and that idle kept its old widths until the table next changed (for a list that
rarely changes, such as the installed models, that could be minutes).
"""

from __future__ import annotations

from typing import Any

from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widgets import DataTable


class SteadyTable(DataTable[Any]):
    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if old.width != new.width and self.row_count and self.columns:
            # Writing a cell back as it is makes every line be drawn again, at the new widths.
            origin = Coordinate(0, 0)
            self.update_cell_at(origin, self.get_cell_at(origin))
