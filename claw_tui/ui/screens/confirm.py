"""A yes/no question before something that cannot be undone (overwrite a model, delete an agent)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from claw_tui.ui.screens import dialog_classes


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on an explicit yes; Esc and "no" answer False."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes", show=False),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "Cancel", danger: bool = True) -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes=dialog_classes(self.app)):
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.no_label, id="confirm-no", compact=True)
                yield Button(
                    self.yes_label, id="confirm-yes", variant="error" if self.danger else "primary", compact=True
                )

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
