"""The Batch pane (F8): jobs submitted through the Batch API show up with their progress, energy and files."""

from __future__ import annotations

import asyncio
import io

from textual.widgets import DataTable, Static, TabbedContent

from claw_tui.ui.app import ClawApp
from tests.test_batch_api import chat_line, client_for, jsonl
from tests.test_tui import demo_runner, wait_for  # noqa: F401 - the fixture is used by name


def submit(session, count: int):
    client = client_for(session)
    upload = client.files.create(
        file=("p.jsonl", io.BytesIO(jsonl([chat_line(i) for i in range(count)]))), purpose="batch"
    )
    return client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")


def cell_texts(table: DataTable, row: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(row)]


async def test_the_batch_pane_follows_a_job_to_its_end(demo_runner):  # noqa: F811
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)
        await pilot.press("f8")
        assert app.query_one("#panes", TabbedContent).active == "batch"
        summary = app.query_one("#batch-summary", Static)
        assert "No batch jobs yet" in str(summary.render())

        batch = await asyncio.to_thread(submit, session, 4)
        table = app.query_one("#batch-table", DataTable)

        def finished_row():
            if table.row_count != 1:
                return None
            cells = cell_texts(table, 0)
            return cells if cells[1] == "completed" and cells[5] != "—" else None

        cells = await wait_for(finished_row, timeout=30)
        assert cells[0] == batch.id and "100%" in cells[2] and cells[3].strip() == "4/4" and cells[8] == "qwen3:8b"
        assert "1 job" in str(summary.render())
        detail = str(app.query_one("#batch-detail", Static).render())
        assert batch.id in detail and "output file-" in detail

        await pilot.press("x")  # a completed job cannot be cancelled: the console says why
        await wait_for(lambda: any("can be cancelled" in n.message for n in app._notifications))
