"""A TextArea for Modelfiles: instructions and comments coloured, lines with problems underlined."""

from __future__ import annotations

import re
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widgets import TextArea

from claw_tui.ollama.modelfile import INSTRUCTIONS, Diagnostic

_INSTRUCTION = re.compile(r"^([A-Za-z]+)([ \t]+)(\S*)")


class ModelfileEditor(TextArea):
    """`set_diagnostics` marks each line a diagnostic points at (errors red, warnings yellow)."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(text, show_line_numbers=True, soft_wrap=False, tab_behavior="focus", **kwargs)
        self._marks: dict[int, str] = {}  # 0-based line → "error" | "warning"

    @property
    def marked_lines(self) -> dict[int, str]:
        """1-based line numbers with the severity marked on them."""
        return {line + 1: severity for line, severity in self._marks.items()}

    def set_diagnostics(self, diagnostics: list[Diagnostic]) -> None:
        marks: dict[int, str] = {}
        for diagnostic in diagnostics:
            if diagnostic.line <= 0:
                continue
            line = diagnostic.line - 1
            if marks.get(line) != "error":
                marks[line] = diagnostic.severity
        if marks != self._marks:
            self._marks = marks
            self.notify_style_update()  # drops the rendered-line cache
            self.refresh()

    def _colours(self) -> tuple[str, str, str, str]:
        theme = self.app.current_theme
        return (theme.primary, theme.accent or theme.primary, theme.error or "red", theme.warning or "yellow")

    def get_line(self, line_index: int) -> Text:
        text = super().get_line(line_index)
        plain = text.plain
        primary, accent, error, warning = self._colours()
        if plain.lstrip().startswith("#"):
            text.stylize(Style(dim=True, italic=True))
        else:
            match = _INSTRUCTION.match(plain)
            if match and match.group(1).lower() in INSTRUCTIONS:
                text.stylize(Style(color=primary, bold=True), 0, match.end(1))
                if match.group(1).lower() == "parameter":
                    start = match.end(2)
                    text.stylize(Style(color=accent), start, start + len(match.group(3)))
        severity = self._marks.get(line_index)
        if severity is not None:
            colour = error if severity == "error" else warning
            text.stylize(Style(underline=True, color=colour))
        return text
