"""The errors of a configuration: where they are (file, line, dotted key) and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration problem, located: `str()` is "{path}:{line}: {key}: {message}".

    `line` is None when the problem has no place in a file (a missing file, a value built in code); `key` is ""
    for problems of the file as a whole (a TOML syntax error); either part is then left out of `str()`.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        key: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SchemaError(Exception):
    """A problem at a key path, before it is given a file and a line."""

    def __init__(self, key_path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key_path = key_path
        self.message = message


def format_key_path(key_path: KeyPath) -> str:
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown, ensure_ascii=False)})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a date/time ({value})"
