"""Panes that are not visible at start are imported and mounted right after the first frame.

Like `textual.lazy.Lazy`, and one step further: the pane's module (Markdown, the Modelfile parser, forms …) is
imported only then too, so that the first frame does not wait for code it does not show.
"""

from __future__ import annotations

import importlib

from textual.widget import Widget


def pane_class(path: str) -> type:
    """`package.module:ClassName` → the class."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class DeferredPane(Widget):
    DEFAULT_CSS = "DeferredPane { display: none; }"

    def __init__(self, path: str, pane_id: str) -> None:
        super().__init__()
        self.path = path
        self.pane_id = pane_id

    def on_mount(self) -> None:
        self.call_after_refresh(self._mount_pane)

    async def _mount_pane(self) -> None:
        parent = self.parent
        if parent is None:
            return
        pane = pane_class(self.path)(id=self.pane_id)
        await parent.mount(pane, after=self)
        await self.remove()
