"""What every pane shares: the app refreshes the visible pane through `refresh_data` once it is mounted."""

from __future__ import annotations

from textual.containers import Vertical

from claw_tui.ui.errors import ReportsWorkerErrors


class Pane(ReportsWorkerErrors, Vertical):
    # The widget an operator uses first on this pane; focusing it shows the pane's keys in the footer.
    main_widget: str | None = None
    # Keys the pane answers that are no bindings of its own (a table's Enter, …), for the help screen.
    HELP_KEYS: tuple[tuple[str, str], ...] = ()
    _set_up = False

    def on_mount(self) -> None:
        # Textual runs the subclass's on_mount first, then this one: the pane is fully set up from here.
        self._set_up = True
        self.refresh_data()

    @property
    def ready(self) -> bool:
        return self._set_up and self.is_attached

    def focus_main(self) -> None:
        if self.main_widget:
            self.query_one(self.main_widget).focus()

    def refresh_data(self) -> None:
        """Pull fresh state from the session; called only while the pane is visible."""
