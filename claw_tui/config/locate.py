"""Where keys are written in a config file (tomllib reports no positions for valid documents)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from claw_tui.config.errors import KeyPath


@dataclass
class TomlStatement:
    """A table header or a key/value pair of a TOML text, with the lines it spans (1-based, inclusive)."""

    kind: str  # "table", "array_table" or "key_value"
    keys: tuple[str, ...]  # as written: the header's keys, or the dotted key of a pair
    path: KeyPath  # full path in the document, with array-of-tables indexes
    first_line: int
    last_line: int


def find_key_line(text: str, key_path: KeyPath) -> int | None:
    """The line of the key (or, failing that, of its closest enclosing key or table) in a valid TOML text."""
    lines: dict[KeyPath, int] = {}
    try:
        statements = scan_toml_statements(text)
    except (IndexError, tomllib.TOMLDecodeError):
        return None  # a layout the scanner misreads must not hide the error being reported
    for statement in statements:
        path = statement.path
        first = 1 if statement.kind != "key_value" else len(path) - len(statement.keys) + 1
        for end in range(first, len(path) + 1):
            lines.setdefault(path[:end], statement.first_line)
    for end in range(len(key_path), 0, -1):
        if key_path[:end] in lines:
            return lines[key_path[:end]]
    return None


def scan_toml_statements(text: str) -> list[TomlStatement]:
    return _TomlScanner(text).scan()


_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _TomlScanner:
    """Walks a TOML text that tomllib has accepted, noting each header and key/value pair with its lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.table: KeyPath = ()
        self.last_array_index: dict[KeyPath, int] = {}

    def scan(self) -> list[TomlStatement]:
        statements: list[TomlStatement] = []
        while True:
            self.skip_blank_lines_and_comments()
            if self.pos >= len(self.text):
                return statements
            first_line = self.line
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                keys = self.read_key()
                self.pos += 2
                self.table = self.open_array_table(keys)
                statements.append(TomlStatement("array_table", keys, self.table, first_line, first_line))
            elif self.text.startswith("[", self.pos):
                self.pos += 1
                keys = self.read_key()
                self.pos += 1
                self.table = self.resolve(keys)
                statements.append(TomlStatement("table", keys, self.table, first_line, first_line))
            else:
                keys = self.read_key()
                self.pos += 1  # "="
                self.skip_value()
                statements.append(TomlStatement("key_value", keys, (*self.table, *keys), first_line, self.line))

    def resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's path, each array of tables in it standing for its latest element."""
        path: list[str | int] = []
        for key in keys:
            path.append(key)
            if tuple(path) in self.last_array_index:
                path.append(self.last_array_index[tuple(path)])
        return tuple(path)

    def open_array_table(self, keys: tuple[str, ...]) -> KeyPath:
        array_path = (*self.resolve(keys[:-1]), keys[-1])
        index = self.last_array_index.get(array_path, -1) + 1
        self.last_array_index[array_path] = index
        return (*array_path, index)

    def skip_blank_lines_and_comments(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\n":
                self.line += 1
                self.pos += 1
            elif char in " \t\r":
                self.pos += 1
            elif char == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def read_key(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            self.skip_spaces()
            char = self.text[self.pos]
            if char in "\"'":
                start = self.pos
                self.skip_string()
                keys.append(tomllib.loads(f"k = {self.text[start : self.pos]}")["k"])
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE_KEY_CHARS:
                    self.pos += 1
                keys.append(self.text[start : self.pos])
            self.skip_spaces()
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(keys)

    def skip_value(self) -> None:
        """Move to the end of a value: the first newline outside strings, arrays and inline tables."""
        depth = 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in "\"'":
                self.skip_string()
                continue
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "#":
                self.skip_comment()
                continue
            elif char == "\n":
                if depth == 0:
                    return
                self.line += 1
            self.pos += 1

    def skip_string(self) -> None:
        quote = self.text[self.pos]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        start = self.pos
        self.pos += len(delimiter)
        while not self.text.startswith(delimiter, self.pos):
            if self.pos >= len(self.text):
                raise IndexError("unterminated string")
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 1
            self.pos += 1
        self.pos += len(delimiter)
        if len(delimiter) == 3:
            # Up to two quotes may sit right before a closing delimiter; they belong to the string.
            extra = 0
            while extra < 2 and self.text.startswith(quote, self.pos):
                self.pos += 1
                extra += 1
        self.line += self.text.count("\n", start, self.pos)
