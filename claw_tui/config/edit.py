"""Writing: a whole config, or one section of an existing file rewritten with tomlkit, keeping everything else in it
as it was, comments included."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit import TOMLDocument
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Item, Key, Table, Whitespace

from claw_tui.config.errors import ConfigError, SchemaError, format_key_path
from claw_tui.config.load import config_from_document, parse_toml
from claw_tui.config.schema import AgentConfig, Config, UIConfig
from claw_tui.config.toml_text import dumps_toml, toml_table
from claw_tui.config.validate import validate_config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Every setting as plain TOML-ready data (no None values; `path` is not a setting)."""
    data: dict[str, Any] = {}
    for name in ("gateway", "backends", "telemetry", "governor", "agents", "ui", "store", "doctor", "batch"):
        value = getattr(config, name)
        data[name] = [section_to_dict(item) for item in value] if isinstance(value, list) else section_to_dict(value)
    return data


def section_to_dict(section: Any, *, skip_defaults: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            continue
        if skip_defaults and value == field_default(f):
            continue
        data[f.name] = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
    return data


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def config_to_toml(config: Config) -> str:
    return dumps_toml({name: value for name, value in config_to_dict(config).items() if value != []})


REDACTED = "<redacted>"


def redact_secrets(config: Config) -> Config:
    """A copy with the gateway tokens, backend API keys and the webhook secret replaced, for printing."""
    gateway = dataclasses.replace(
        config.gateway,
        tokens=[REDACTED for _ in config.gateway.tokens],
        admin_tokens=[REDACTED for _ in config.gateway.admin_tokens],
    )
    backends = [
        dataclasses.replace(backend, api_key=REDACTED if backend.api_key else "") for backend in config.backends
    ]
    batch = dataclasses.replace(config.batch, webhook_secret=REDACTED if config.batch.webhook_secret else "")
    return dataclasses.replace(config, gateway=gateway, backends=backends, batch=batch)


def save_config(config: Config, path: Path) -> None:
    """Write every setting of a (checked) config to `path`, atomically."""
    data = config_to_dict(config)
    check_document(data, path)
    write_text_atomically(path, dumps_toml(data))


def check_document(document: dict[str, Any], path: Path | None) -> None:
    try:
        validate_config(config_from_document(document))
    except SchemaError as exc:
        raise ConfigError(exc.message, path=path, key=format_key_path(exc.key_path)) from None


def update_agents(path: Path, agents: list[AgentConfig]) -> None:
    """Rewrite only the [[agents]] tables of the config file: every other line stays, and so do the comments of
    agents that are kept (a changed value is rewritten, an unchanged one is left as it was)."""
    rewrite_section(path, "agents", [section_to_dict(agent, skip_defaults=True) for agent in agents])


def update_ui(path: Path, ui: UIConfig) -> None:
    """Rewrite only the [ui] table of the config file (e.g. to persist the theme), keeping the rest of it."""
    rewrite_section(path, "ui", section_to_dict(ui))


def rewrite_section(path: Path, key: str, value: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Replace one top-level table or array of tables of a config file (a missing file is created), with tomlkit:
    the rest of the file stays as it was, comments included. Writes atomically."""
    check_document({key: value}, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    expected = {name: item for name, item in parse_toml(text, path=path).items() if name != key}
    if value:
        expected[key] = value
    new_text = _edited(text, key, value)
    if new_text is None or tomllib.loads(new_text) != expected:
        new_text = dumps_toml(expected)  # a layout tomlkit could not edit in place: every value kept, comments lost
    write_text_atomically(path, new_text)


def _edited(text: str, key: str, value: dict[str, Any] | list[dict[str, Any]]) -> str | None:
    """The text with the section replaced in tomlkit's document; None when tomlkit could not make a valid one."""
    try:
        document = tomlkit.parse(text)
        if isinstance(value, dict):
            _rewrite_table(document, key, value)
        else:
            _rewrite_array_of_tables(document, key, value)
        new_text = document.as_string()
        tomllib.loads(new_text)
    except (TOMLKitError, tomllib.TOMLDecodeError, ValueError, TypeError, KeyError):
        return None
    return new_text


def _rewrite_table(document: TOMLDocument, key: str, data: dict[str, Any]) -> None:
    table = document.get(key)
    if isinstance(table, Table) and not table.is_super_table():
        _update_table(table, data)
    else:
        document[key] = toml_table(data)


def _rewrite_array_of_tables(document: TOMLDocument, key: str, wanted: list[dict[str, Any]]) -> None:
    """The tables are matched with the old ones by name: a kept table keeps its comments and unchanged lines."""
    old = document.get(key)
    kept: dict[Any, Table] = {}
    trailing: list[tuple[Key | None, Item]] = []
    if isinstance(old, AoT) and old.body:
        kept = {table.get("name"): table for table in old.body}
        trailing = _trailing_trivia(old.body[-1])  # the comments that introduce whatever follows the tables
    if not wanted:
        if old is not None:
            _remove_keeping_trivia(document, key, trailing)
        return
    tables = tomlkit.aot()
    for data in wanted:
        table = kept.get(data["name"])
        if table is None:
            table = tomlkit.table()
        _update_table(table, data)
        tables.append(table)
    tables.body[-1].value.body.extend(trailing)
    document[key] = tables


def _update_table(table: Table, data: dict[str, Any]) -> None:
    """Only what changed is rewritten: an unchanged value keeps its line, and the comment on it."""
    for name in [name for name in table if name not in data]:
        del table[name]
    for name, value in data.items():
        if table.get(name) != value:
            table[name] = value


def _trailing_trivia(table: Table) -> list[tuple[Key | None, Item]]:
    """Take the comments and blank lines after a table's last key out of it (tomlkit keeps them in the table)."""
    body = table.value.body
    cut = len(body)
    while cut and body[cut - 1][0] is None:
        cut -= 1
    trailing = body[cut:]
    del body[cut:]
    return trailing


def _remove_keeping_trivia(document: TOMLDocument, key: str, trailing: list[tuple[Key | None, Item]]) -> None:
    """Remove a top-level key; the comments that followed it (less one blank line, so that no gap is left) go to
    the table before it, or else before the table after it, or else to the end of the file."""
    body = document.body
    index = next(i for i, (name, _) in enumerate(body) if name is not None and name.key == key)
    before = body[index - 1][1] if index else None
    after = next((item for name, item in body[index + 1 :] if name is not None), None)
    document.remove(key)
    trailing = _less_one_blank_line(trailing)
    if not trailing:
        return
    if isinstance(before, AoT):
        before = before.body[-1]
    if isinstance(before, Table):
        before.value.body.extend(trailing)
        return
    if isinstance(after, AoT):
        after = after.body[0]
    if isinstance(after, Table) and not after.is_super_table():
        after.trivia.indent = "".join(item.as_string() for _, item in trailing) + after.trivia.indent
        return
    for _, item in trailing:
        document.add(item)


def _less_one_blank_line(trivia: list[tuple[Key | None, Item]]) -> list[tuple[Key | None, Item]]:
    if trivia and isinstance(trivia[0][1], Whitespace) and trivia[0][1].as_string().startswith("\n"):
        rest = trivia[0][1].as_string()[1:]
        return ([(None, tomlkit.ws(rest))] if rest else []) + trivia[1:]
    return trivia


def write_text_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, keeping the mode of the file replaced (new files: 0600)."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600  # tokens and API keys live in this file
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
