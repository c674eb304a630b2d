"""Modal screens of the console: confirmations, help, request details, the agent form, the rebuild dialog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App

SHORT_HEIGHT = 32  # below this many lines dialogs drop their blank lines (App.VERTICAL_BREAKPOINTS says the same)


def dialog_classes(app: App[Any]) -> str:
    """`dialog`, plus `-short` on a short terminal from the dialog's first frame on (a screen's breakpoint classes
    come with its first resize, after that frame: the dialog would first show with its blank lines, then jump)."""
    return "dialog -short" if app.size.height < SHORT_HEIGHT else "dialog"
