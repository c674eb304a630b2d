"""Theme files (TOML) from the top-level themes/ folder, turned into Textual themes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.theme import Theme

from claw_tui.theme_files import COLOR_KEYS, read_theme_file, read_theme_files, themes_dir

__all__ = ["COLOR_KEYS", "load_theme_file", "load_themes", "themes_dir"]


def textual_theme(data: dict[str, Any]) -> Theme:
    colors = {key: data[key] for key in COLOR_KEYS if key in data}
    return Theme(name=data["name"], dark=bool(data.get("dark", True)), variables=data.get("variables", {}), **colors)


def load_theme_file(path: Path) -> Theme:
    return textual_theme(read_theme_file(path))


def load_themes(folder: Path | None = None) -> list[Theme]:
    return [textual_theme(data) for data in read_theme_files(folder)]
