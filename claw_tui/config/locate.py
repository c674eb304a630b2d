"""Where keys are written in a config file: tomllib reports no positions for a valid document (and tomlkit keeps
every character but no line numbers, and regroups an array of tables written in pieces).

A key is found by reading ever longer beginnings of the text: a beginning cut at the end of a line is a valid
document of its own when the cut falls between two statements (never inside a multi-line string or array), and a
key, once written, is in every longer one. The first such beginning that holds the key ends with the statement that
writes it; that statement starts at the first line from which it reads as a document of its own.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from claw_tui.config.errors import KeyPath


def find_key_line(text: str, key_path: KeyPath) -> int | None:
    """The line of the key (or, failing that, of its closest enclosing key or table) in a valid TOML text: the line
    of a table's header, or the first line of a key's statement (a key inside a value is located at that value)."""
    try:
        lines = _Lines(text)
        written = _longest_written(tomllib.loads(text), key_path)
        if not written:
            return None
        last = lines.first_holding(written)
        return lines.statement_start(last)
    except tomllib.TOMLDecodeError:  # not a valid document: there is no key to locate
        return None


def _longest_written(document: dict[str, Any], key_path: KeyPath) -> KeyPath:
    for length in range(len(key_path), 0, -1):
        if _holds(document, key_path[:length]):
            return key_path[:length]
    return ()


def _holds(document: Any, key_path: KeyPath) -> bool:
    node = document
    for part in key_path:
        in_array = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        in_table = isinstance(part, str) and isinstance(node, dict) and part in node
        if not (in_array or in_table):
            return False
        node = node[part]
    return True


# A blank line, a comment, a table header, or a line with a key and "=" (a key and its "=" share a line).
_STATEMENT_START = re.compile(r"[ \t]*(?:\r?\n|#|\[|$|[^\n]*=)")


class _Lines:
    """The text's lines (split at line feeds only, as TOML counts them) and its beginnings as documents."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ends = [index + 1 for index, char in enumerate(text) if char == "\n"]
        if not self.ends or self.ends[-1] != len(text):
            self.ends.append(len(text))
        self.count = len(self.ends)
        self._parsed: dict[tuple[int, int], dict[str, Any] | None] = {}

    def document(self, first: int, last: int) -> dict[str, Any] | None:
        """Lines first..last (1-based, inclusive; last < first is empty) as a document, None when they are not one."""
        if (first, last) not in self._parsed:
            start = self.ends[first - 2] if first > 1 else 0
            end = self.ends[last - 1] if last >= 1 else 0
            try:
                self._parsed[first, last] = tomllib.loads(self.text[start:end]) if end > start else {}
            except tomllib.TOMLDecodeError:
                self._parsed[first, last] = None
        return self._parsed[first, last]

    def can_start_statement(self, line: int) -> bool:
        """Whether the line may be where a statement starts (or a blank line, or a comment): a cheap test that spares
        parsing the beginnings that end inside a long multi-line string."""
        start = self.ends[line - 2] if line > 1 else 0
        return _STATEMENT_START.match(self.text, start, self.ends[line - 1]) is not None

    def next_cut(self, line: int, limit: int) -> int | None:
        """The first line from `line` on, before `limit`, after which the beginning of the text is a valid document."""
        for cut in range(line, limit):
            if (cut == 0 or self.can_start_statement(cut + 1)) and self.document(1, cut) is not None:
                return cut
        return None

    def first_holding(self, key_path: KeyPath) -> int:
        """The last line of the statement that writes the key: a binary search over the valid beginnings."""
        low, high = 0, self.count  # the beginning up to line `low` does not hold the key, up to `high` it does
        bound = high  # no valid cut lies from `bound` to `high`
        while bound - low > 1:
            cut = self.next_cut((low + bound) // 2, bound)
            if cut is None:
                bound = (low + bound) // 2
            elif _holds(self.document(1, cut), key_path):
                high = bound = cut
            else:
                low = cut
        return high

    def statement_start(self, last: int) -> int:
        """The first line of the statement that ends at `last`: the last line before which the text is a valid
        beginning and from which, up to `last`, it reads as a document of its own."""
        for first in range(last, 0, -1):
            if not self.can_start_statement(first):
                continue
            if self.document(first, last) is not None and self.document(1, first - 1) is not None:
                return first
        return last
