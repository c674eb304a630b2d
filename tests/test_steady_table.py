"""The Models pane's tables redraw their header when their columns widen (DataTable alone keeps a header line it
drew before the widths changed)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from claw_tui.ui.widgets.steady_table import SteadyTable

LONG = "nomic-embed-text:latest"


class OneTable(App[None]):
    def __init__(self, table: DataTable) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table


async def header_after_rows_arrive(table: DataTable) -> str:
    table.styles.width, table.styles.height = 60, 6  # a fixed box, as in the pane: no resize redraws it
    async with OneTable(table).run_test(size=(60, 6)) as pilot:
        table.add_column("model", key="model")
        table.add_column("size", key="size")
        await pilot.pause()
        table.add_row(LONG, "274 MB")
        table.render_line(0)  # the header drawn before the idle that widens the columns
        await pilot.pause()
        return table.render_line(0).text


@pytest.mark.parametrize("kind, widened", [(SteadyTable, True), (DataTable, False)])
async def test_the_header_follows_columns_widened_after_it_was_drawn(kind, widened):
    header = await header_after_rows_arrive(kind())
    size_at = header.index("size")
    assert (size_at > len(LONG)) is widened  # DataTable itself: the header stays at its first widths
