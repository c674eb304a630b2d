"""The command palette (ctrl+p): claw's main actions, searchable by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from claw_tui.ui.app import ClawApp


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    callback: Callable[[], object]


class ClawCommands(Provider):
    """Asks the app for its commands each time the palette opens, so the list follows the app's state."""

    def _commands(self) -> list[PaletteCommand]:
        app = cast("ClawApp", self.app)  # the palette of the claw console
        return list(app.palette_commands())

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.name),
                    partial(command.callback),
                    text=command.name,
                    help=command.help,
                )
