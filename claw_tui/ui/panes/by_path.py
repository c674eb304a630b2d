"""Panes by dotted path: a pane's module (Markdown, the Modelfile parser, forms …) is imported only when the pane is
composed, so that `claw --help` and the other faces never load the console's code."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claw_tui.ui.panes.base import Pane


def pane_class(path: str) -> type[Pane]:
    """`package.module:ClassName` → the class."""
    module, _, name = path.partition(":")
    cls: type[Pane] = getattr(importlib.import_module(module), name)
    return cls
