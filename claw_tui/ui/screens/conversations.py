"""The saved chat conversations (the session store's, through the console source): Enter reopens one, d deletes it."""

from __future__ import annotations

import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from claw_tui.console.source import SourceError
from claw_tui.ui.errors import ReportsWorkerErrors
from claw_tui.ui.screens.confirm import ConfirmScreen

HINT = "Enter opens · d deletes · Esc closes"


def when(ts: float | None) -> str:
    if not ts:
        return "—"
    today = time.strftime("%Y-%m-%d")
    day = time.strftime("%Y-%m-%d", time.localtime(ts))
    return time.strftime("%H:%M" if day == today else "%Y-%m-%d %H:%M", time.localtime(ts))


class ConversationsScreen(ReportsWorkerErrors, ModalScreen[str | None]):
    """Dismisses with the id of the conversation to open, or None."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="conversations-dialog", classes="dialog"):
            yield Static("Saved conversations", classes="dialog-title")
            table: DataTable[Any] = DataTable(id="conversations-table", cursor_type="row", zebra_stripes=True)
            table.add_column("title", key="title")
            table.add_column("model", key="model", width=16)
            table.add_column("turns", key="turns", width=5)
            table.add_column("updated", key="updated", width=16)
            yield table
            yield Static("loading…", id="conversations-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.load()

    @work(exclusive=True, group="conversations", exit_on_error=False)
    async def load(self) -> None:
        hint = self.query_one("#conversations-hint", Static)
        try:
            source = self.app.source
            assert source is not None  # the console opens this dialog once the source runs
            rows = await source.list_conversations()
        except SourceError as exc:
            hint.update(f"[red]cannot list the conversations: {exc}[/]")
            return
        table = self.query_one(DataTable)
        table.clear()
        self.rows = {row["id"]: row for row in rows}
        for row in rows:
            cells = (
                row.get("title") or "",
                row.get("model") or "",
                str(row.get("turns", 0)),
                when(row.get("updated_at")),
            )
            table.add_row(*cells, key=row["id"])
        hint.update(HINT if rows else "No saved conversation yet: each chat turn saves its conversation.")

    @property
    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        self.dismiss(event.row_key.value)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_delete(self) -> None:
        conversation_id = self.selected
        if conversation_id is None:
            return
        title = self.rows.get(conversation_id, {}).get("title") or conversation_id

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(conversation_id)

        self.app.push_screen(ConfirmScreen(f"Delete the conversation “{title}”?", yes="Delete"), answered)

    @work(group="conversations-delete", exit_on_error=False)
    async def delete(self, conversation_id: str) -> None:
        try:
            source = self.app.source
            assert source is not None  # the console opens this dialog once the source runs
            await source.delete_conversation(conversation_id)
        except SourceError as exc:
            self.notify(f"not deleted: {exc}", severity="error")
            return
        self.notify("conversation deleted", timeout=3)
        self.load()
