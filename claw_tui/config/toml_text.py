"""TOML text of plain data, written with tomlkit the way people write config files: [tables], [[arrays of tables]]
(never inline arrays of tables), one array item a line, multi-line strings where they help reading."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import Item, String, StringType, Table, Trivia


def dumps_toml(document: dict[str, Any]) -> str:
    return toml_document(document).as_string()


def toml_document(data: dict[str, Any]) -> tomlkit.TOMLDocument:
    document = tomlkit.document()
    # Keys that are plain values go first: written after a table they would belong to it.
    for key, value in sorted(data.items(), key=lambda pair: is_table_or_array_of_tables(pair[1])):
        document.add(key, toml_item(value))
    return document


def toml_item(value: Any) -> Item:
    if isinstance(value, dict):
        return toml_table(value)
    if is_table_or_array_of_tables(value):
        tables = tomlkit.aot()
        for item in value:
            tables.append(toml_table(item, in_array=True))
        return tables
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(toml_item(item) for item in value)
        return array.multiline(bool(value))
    if isinstance(value, str):
        return toml_string(value)
    plain: Item = tomlkit.item(value)  # a number, bool or date (the overloads answer Any for an Any argument)
    return plain


def toml_table(data: dict[str, Any], *, in_array: bool = False) -> Table:
    """A table, its plain values first; in an array of tables, an empty sub-table is left out."""
    table = tomlkit.table()
    for key, value in sorted(data.items(), key=lambda pair: isinstance(pair[1], dict)):
        if in_array and value == {}:
            continue
        table.add(key, toml_item(value))
    return table


def toml_string(value: str) -> Item:
    """A multi-line string when the text has line breaks, its text starting on the next line, unless it has a
    carriage return: parsers turn a written CRLF in a multi-line string into LF, so that one is written escaped."""
    if "\n" not in value or "\r" in value:
        return tomlkit.string(value)
    written = tomlkit.string(value, multiline=True)
    text = written.as_string()[3:-3]
    if text.startswith("\n"):
        return written  # the first line break is written twice already, since parsers drop one right after """
    return String(StringType.MLB, value, "\n" + text, Trivia())


def is_table_or_array_of_tables(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
    )


def toml_pair(key: str, value: Any) -> str:
    """One `key = value` line (a table as an inline table)."""
    if isinstance(value, dict):
        inline = ", ".join(toml_pair(item_key, item) for item_key, item in value.items())
        return f"{key} = {{ {inline} }}" if inline else f"{key} = {{}}"
    document = tomlkit.document()
    document.add(key, tomlkit.item(value))
    return document.as_string().strip()
