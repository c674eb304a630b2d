"""Writing: a whole config, or one section of an existing file, keeping everything else in it as it was."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import tomli_w

from claw_tui.config.errors import ConfigError, SchemaError, format_key_path
from claw_tui.config.load import config_from_document, parse_toml
from claw_tui.config.locate import TomlStatement, scan_toml_statements
from claw_tui.config.schema import AgentConfig, Config, UIConfig
from claw_tui.config.validate import validate_config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Every setting as plain TOML-ready data (no None values; `path` is not a setting)."""
    data: dict[str, Any] = {}
    for name in ("gateway", "backends", "telemetry", "governor", "agents", "ui", "store", "doctor"):
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


def field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def config_to_toml(config: Config) -> str:
    return dumps_toml({name: value for name, value in config_to_dict(config).items() if value != []})


def dumps_toml(document: dict[str, Any]) -> str:
    """TOML text of a document, like tomli_w, except that arrays of tables are always [[tables]].

    (tomli_w writes short ones as inline arrays, which is valid but not what people write or expect.)
    """
    literals = {key: value for key, value in document.items() if not is_table_or_array_of_tables(value)}
    chunks = [readable_toml(literals)] if literals else []
    for key, value in document.items():
        if isinstance(value, dict):
            chunks.append(readable_toml({key: value}))
        elif is_table_or_array_of_tables(value):
            chunks.extend(array_table_text(key, item) for item in value)
    return "\n".join(chunks)


def is_table_or_array_of_tables(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
    )


def array_table_text(key: str, table: dict[str, Any]) -> str:
    scalars = {name: value for name, value in table.items() if not isinstance(value, dict)}
    text = f"[[{key}]]\n" + readable_toml(scalars)
    for name, value in table.items():
        if isinstance(value, dict) and value:
            # Written under the parent's name, a sub-table belongs to the array's latest element.
            text += "\n" + readable_toml({key: {name: value}})
    return text


def readable_toml(document: dict[str, Any]) -> str:
    """Multi-line strings where they help reading, unless a carriage return would be normalised away by parsers."""
    return tomli_w.dumps(document, multiline_strings=not has_carriage_return(document))


def has_carriage_return(value: Any) -> bool:
    if isinstance(value, str):
        return "\r" in value
    if isinstance(value, dict):
        return any(has_carriage_return(v) for v in value.values())
    if isinstance(value, list):
        return any(has_carriage_return(v) for v in value)
    return False


REDACTED = "<redacted>"


def redact_secrets(config: Config) -> Config:
    """A copy with the gateway tokens and backend API keys replaced, for printing."""
    gateway = dataclasses.replace(
        config.gateway,
        tokens=[REDACTED for _ in config.gateway.tokens],
        admin_tokens=[REDACTED for _ in config.gateway.admin_tokens],
    )
    backends = [
        dataclasses.replace(backend, api_key=REDACTED if backend.api_key else "") for backend in config.backends
    ]
    return dataclasses.replace(config, gateway=gateway, backends=backends)


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
    """Rewrite only the [[agents]] tables of the config file with tomlkit: every other line stays, and so do the
    comments of agents that are kept (a changed value is rewritten, an unchanged one is left as it was)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    wanted = [section_to_dict(agent, skip_defaults=True) for agent in agents]
    if not wanted:  # nothing to edit in place: the splice drops the tables and keeps what followed them
        replace_top_level_key(path, "agents", wanted)
        return
    check_document({"agents": wanted}, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    expected = {name: item for name, item in parse_toml(text, path=path).items() if name != "agents"}
    try:
        document = tomlkit.parse(text)
        kept = {}
        old = document.get("agents")
        trailing = []
        if isinstance(old, list) and old:
            kept = {table.get("name"): table for table in old if hasattr(table, "get")}
            trailing = _trailing_trivia(old[-1])  # the comments that introduce whatever follows the agents
        tables = tomlkit.aot()
        for data in wanted:
            table = kept.get(data["name"])
            if table is None:
                table = tomlkit.table()
            for key in [k for k in table if k not in data]:
                del table[key]
            for key, value in data.items():
                if table.get(key) != value:
                    table[key] = value
            tables.append(table)
        if trailing:
            tables[-1].value.body.extend(trailing)
        document["agents"] = tables
        new_text = tomlkit.dumps(document)
    except (TOMLKitError, ValueError, TypeError):
        new_text = None
    expected["agents"] = wanted
    if new_text is None or tomllib.loads(new_text) != expected:
        replace_top_level_key(path, "agents", wanted)  # a layout tomlkit could not edit: the plain splice
        return
    write_text_atomically(path, new_text)


def _trailing_trivia(table) -> list:
    """Take the comments and blank lines after a table's last key out of it (tomlkit keeps them in the table)."""
    body = table.value.body
    cut = len(body)
    while cut and body[cut - 1][0] is None:
        cut -= 1
    trailing = body[cut:]
    del body[cut:]
    return trailing


def update_ui(path: Path, ui: UIConfig) -> None:
    """Rewrite only the [ui] table of the config file (e.g. to persist the theme), keeping the rest of it."""
    replace_top_level_key(path, "ui", section_to_dict(ui))


def replace_top_level_key(path: Path, key: str, value: Any) -> None:
    """Replace one top-level key of a config file (a missing file is created), writing atomically."""
    check_document({key: value}, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    document = parse_toml(text, path=path)
    expected = {name: item for name, item in document.items() if name != key}
    if value:
        expected[key] = value

    block = dumps_toml({key: value}) if value else ""
    new_text = splice_top_level_key(text, key, block)
    if tomllib.loads(new_text) != expected:
        # The text edit met a layout it does not handle: keep every value, lose the comments.
        new_text = dumps_toml(expected)
    write_text_atomically(path, new_text)


def splice_top_level_key(text: str, key: str, block: str) -> str:
    """Remove the tables and root pairs under top-level `key` from the text; put `block` where the first table was."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    removed, first_header_line = lines_under_top_level_key(scan_toml_statements(text), key)
    insert_at = first_header_line - 1 if first_header_line is not None else len(lines)
    removed |= blank_lines_between(lines, removed)

    kept_before = [line for number, line in enumerate(lines[:insert_at], 1) if number not in removed]
    kept_after = [line for number, line in enumerate(lines[insert_at:], insert_at + 1) if number not in removed]
    if block:
        # A comment right above the first table stays attached to the new tables.
        if kept_before and kept_before[-1].strip() and not kept_before[-1].lstrip().startswith("#"):
            block = "\n" + block
        if kept_after and kept_after[0].strip():
            block += "\n"
    return "".join(kept_before) + block + "".join(kept_after)


def lines_under_top_level_key(statements: list[TomlStatement], key: str) -> tuple[set[int], int | None]:
    """The lines of the tables under `key` (headers and pairs) and of root pairs `key = ...`, and the first
    such table's header line."""
    removed: set[int] = set()
    first_header_line = None
    inside = False
    for statement in statements:
        if statement.kind != "key_value":
            inside = statement.keys[0] == key
            if inside and first_header_line is None:
                first_header_line = statement.first_line
        is_root_pair = statement.kind == "key_value" and statement.path == statement.keys and statement.keys[0] == key
        if inside or is_root_pair:
            removed.update(range(statement.first_line, statement.last_line + 1))
    return removed, first_header_line


def blank_lines_between(lines: list[str], removed: set[int]) -> set[int]:
    """Blank lines between two removed lines, and one right after the last, so that no gap is left behind."""
    blank: set[int] = set()
    if not removed:
        return blank
    last_removed = max(removed)
    gap: list[int] = []
    for number in range(min(removed), last_removed + 1):
        if number in removed:
            blank.update(gap)
            gap = []
        elif not lines[number - 1].strip():
            gap.append(number)
        else:
            gap = []
    if last_removed < len(lines) and not lines[last_removed].strip():
        blank.add(last_removed + 1)
    return blank


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
