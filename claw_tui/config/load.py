"""Loading: the TOML document (tomllib) is turned into typed dataclasses (unknown keys, wrong types and missing keys
are refused), then the values are checked (validate.py). Every error becomes a ConfigError that names the file, the
dotted key and the line where that key is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from claw_tui.config.errors import ConfigError, KeyPath, SchemaError, describe_value, format_key_path
from claw_tui.config.locate import find_key_line
from claw_tui.config.paths import config_path_and_source, resolve_config_path
from claw_tui.config.schema import ARRAY_SECTIONS, TABLE_SECTIONS, Config
from claw_tui.config.validate import validate_config

NO_SUCH_FILE = "no such config file"


def load_config_for_cli(cli_path: str | None) -> Config:
    """The configuration the command line asks for: a file named by --config or $CLAW_CONFIG must exist."""
    path, source = config_path_and_source(cli_path)
    try:
        return load_config(path, must_exist=source != "default")
    except ConfigError as exc:
        if exc.message == NO_SUCH_FILE:
            exc.message = f"{NO_SUCH_FILE} (named by {source}; `claw config init` writes one there)"
        raise


def load_config(path: Path | None, *, must_exist: bool = False) -> Config:
    """Load and check a config file. A missing file gives the defaults, or a ConfigError when `must_exist`."""
    if path is None:
        path = resolve_config_path(None)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(NO_SUCH_FILE, path=path) from None
        return Config(path=path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    return parse_config_text(text, path=path)


def parse_config_text(text: str, *, path: Path | None = None) -> Config:
    document = parse_toml(text, path=path)
    try:
        config = config_from_document(document)
        validate_config(config)
    except SchemaError as exc:
        raise ConfigError(
            exc.message, path=path, key=format_key_path(exc.key_path), line=find_key_line(text, exc.key_path)
        ) from None
    config.path = path
    return config


_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def parse_toml(text: str, *, path: Path | None = None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = column = None
        position = _TOML_POSITION.search(message)
        if position:
            message = message[: position.start()]
            if position.group(1):
                line, column = int(position.group(1)), int(position.group(2))
            else:
                line = text.count("\n") + 1
        detail = f"invalid TOML: {message[:1].lower()}{message[1:]}"
        if column is not None:
            detail += f" (column {column})"
        raise ConfigError(detail, path=path, line=line, column=column) from None


def config_from_document(document: dict[str, Any]) -> Config:
    sections: dict[str, Any] = {}
    for name, value in document.items():
        if name in TABLE_SECTIONS:
            if not isinstance(value, dict):
                raise SchemaError((name,), f"expected a table ([{name}]), got {describe_value(value)}")
            sections[name] = build_dataclass(TABLE_SECTIONS[name], value, (name,))
        elif name in ARRAY_SECTIONS:
            if isinstance(value, dict):
                raise SchemaError((name,), f"expected an array of tables ([[{name}]]), got a table ([{name}])")
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise SchemaError((name,), f"expected an array of tables ([[{name}]]), got {describe_value(value)}")
            cls = ARRAY_SECTIONS[name]
            sections[name] = [build_dataclass(cls, item, (name, index)) for index, item in enumerate(value)]
        else:
            raise SchemaError((name,), unknown_key_message(name, [*TABLE_SECTIONS, *ARRAY_SECTIONS]))
    return Config(**sections)


def build_dataclass(cls: type, table: dict[str, Any], key_path: KeyPath) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise SchemaError((*key_path, key), unknown_key_message(key, list(fields)))
        values[key] = check_type(value, hints[key], (*key_path, key))
    for name, f in fields.items():
        required = f.default is MISSING and f.default_factory is MISSING
        if required and name not in values:
            raise SchemaError((*key_path, name), f"missing required key '{name}'")
    return cls(**values)


def unknown_key_message(key: str, known: list[str]) -> str:
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def check_type(value: Any, hint: Any, key_path: KeyPath) -> Any:
    """Return the value as the field's type (an integer becomes a float), or raise a SchemaError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # Only "X | None" is used: None cannot be written in TOML, so a present value must be an X.
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return check_type(value, inner, key_path)
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(key_path, f"expected an array of strings, got {describe_value(value)}")
        (item_hint,) = typing.get_args(hint)
        return [check_type(item, item_hint, (*key_path, index)) for index, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SchemaError(key_path, f"expected a table, got {describe_value(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SchemaError(key_path, f"expected true or false, got {describe_value(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(key_path, f"expected an integer, got {describe_value(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(key_path, f"expected a number, got {describe_value(value)}")
        if not math.isfinite(value):
            raise SchemaError(key_path, f"expected a finite number, got {describe_value(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SchemaError(key_path, f"expected a string, got {describe_value(value)}")
        return value
    raise TypeError(f"no type check for {hint!r}")
