"""The Modelfile as data, the layout kept to write it back, and the constants of Ollama's parser (its messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from claw_tui.ollama.parameters import (
    Diagnostic,
    ParamValue,
)

INSTRUCTIONS = ("from", "license", "template", "system", "adapter", "parameter", "message", "requires")
INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "parameter", "message", "requires"'
)
MESSAGE_ROLES = ("system", "user", "assistant")
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
MISSING_FROM = "no FROM line"
INVALID_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"

BLANKS = " \t"
LINE_BREAKS = "\r\n"
WHITESPACE = BLANKS + LINE_BREAKS
LINE_BREAK = re.compile(r"\r\n|\r|\n")
LETTERS = re.compile(r"[A-Za-z]+")
NAME_CHARS = re.compile(r"[A-Za-z0-9_]+")
SEMVER = re.compile(
    r"v(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


def is_invisible(char: str) -> bool:
    """Characters Ollama's parser silently drops: neither printable (Go's strconv.IsPrint) nor blanks."""
    return not char.isprintable() and char not in WHITESPACE


ParameterValue = ParamValue | list[str]
SlotKey = tuple[Any, ...]


@dataclass(frozen=True)
class LayoutLine:
    """One line (or multi-line instruction) of the source, kept so that writing back changes only what changed.

    kind "slot" stands for an instruction: `key` names the value it holds (("from",), ("parameter", "stop", 0),
    ("message", 2), ...), `text` is its source and `snapshot` the value it had; while the value is unchanged
    the source is written back as it was.
    """

    kind: Literal["comment", "blank", "slot"]
    text: str = ""
    key: SlotKey = ()
    snapshot: Any = None


@dataclass
class Modelfile:
    from_: str = ""
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    requires: str | None = None
    layout: list[LayoutLine] = field(default_factory=list, compare=False, repr=False)


@dataclass
class ParseResult:
    modelfile: Modelfile
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class ModelfileError(ValueError):
    """A Modelfile that cannot become an `/api/create` request; `diagnostics` says why."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics
