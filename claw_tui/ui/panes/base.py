"""What every pane shares: the app refreshes the visible pane through `refresh_data` once it is mounted."""

from __future__ import annotations

from textual.containers import Vertical


class Pane(Vertical):
    def on_mount(self) -> None:
        self.refresh_data()

    @property
    def ready(self) -> bool:
        return self.is_mounted and self.is_attached and bool(self.children)

    def refresh_data(self) -> None:
        """Pull fresh state from the session; called only while the pane is visible."""
