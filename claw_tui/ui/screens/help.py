"""`?`: every key of the console, global and per pane, read from the bindings themselves so it never goes stale."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from claw_tui.logs import console_log_file
from claw_tui.ui.screens import dialog_classes

EXTRA_GLOBAL_KEYS = (
    ("1 … 6", "switch panes (not while a text field, form or dialog has the focus)"),
    ("ctrl+p", "command palette: panes, themes, actions"),
    ("tab / shift+tab", "move between fields"),
)


def key_label(key: str) -> str:
    """`f1` → `F1`, `ctrl+r` → `ctrl+r`, `question_mark` → `?`; several keys joined with ` / `."""
    names = {
        "question_mark": "?",
        "escape": "Esc",
        "enter": "Enter",
        "delete": "Del",
        "space": "Space",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
    }
    out = []
    for part in key.split(","):
        part = part.strip()
        if part.startswith("f") and part[1:].isdigit():
            out.append(part.upper())
        else:
            out.append(names.get(part, part))
    return " / ".join(out)


def binding_rows(bindings: Iterable[object]) -> list[tuple[str, str]]:
    rows = []
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        if binding.key.isdigit():  # the 1…5 pane keys are one line of EXTRA_GLOBAL_KEYS
            continue
        rows.append((key_label(binding.key), binding.tooltip or binding.description))
    return rows


def keys_table(sections: list[tuple[str, list[tuple[str, str]]]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=16)
    table.add_column()
    for index, (title, rows) in enumerate(sections):
        if not rows:
            continue
        if index:
            table.add_row("", "")
        table.add_row(Text(title, style="bold underline"), "")
        for key, description in rows:
            table.add_row("  " + key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """Scrolls with the arrows, PgUp/PgDn, Home/End (the list is longer than a small terminal)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", show=False)]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes=dialog_classes(self.app)):
            yield Static("claw — keys", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(keys_table(self.sections), id="help-keys")
            log = console_log_file()
            yield Static("Esc closes · ↑↓ PgUp PgDn scroll" + (f"\nlog: {log}" if log else ""), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body", VerticalScroll).focus()
