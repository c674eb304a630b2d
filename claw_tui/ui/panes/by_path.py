"""Panes by dotted path: a pane's module (Markdown, the Modelfile parser, forms …) is imported only when the pane is
composed, so that `claw --help` and the other faces never load the console's code."""

from __future__ import annotations

import importlib


def pane_class(path: str) -> type:
    """`package.module:ClassName` → the class."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
