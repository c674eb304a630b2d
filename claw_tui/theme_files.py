"""Theme files (TOML) in the themes folder: where they are, what a valid one holds, and every theme name the
console accepts. No Textual here: the config check lists the names, and the console builds its themes from them."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)

# The themes Textual registers by itself (textual.theme.BUILTIN_THEMES); the console offers them beside claw's own
# (ctrl+p), so a config may name them. tests/test_config_checks.py keeps this list in step with Textual's.
TEXTUAL_THEMES = (
    "ansi-dark",
    "ansi-light",
    "atom-one-dark",
    "atom-one-light",
    "catppuccin-frappe",
    "catppuccin-latte",
    "catppuccin-macchiato",
    "catppuccin-mocha",
    "dracula",
    "flexoki",
    "gruvbox",
    "monokai",
    "nord",
    "rose-pine",
    "rose-pine-dawn",
    "rose-pine-moon",
    "solarized-dark",
    "solarized-light",
    "textual-dark",
    "textual-light",
    "tokyo-night",
)


def themes_dir() -> Path:
    """Installed wheels carry the folder as claw_tui/_themes; a source checkout has it at the top level."""
    packaged = Path(__file__).resolve().parent / "_themes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "themes"


def read_theme_file(path: Path) -> dict[str, Any]:
    """A theme file's settings, checked: a name, a primary colour, no unknown keys. Raises ValueError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: theme needs a 'name'")
    if "primary" not in data:
        raise ValueError(f"{path}: theme needs a 'primary' colour")
    unknown = set(data) - set(COLOR_KEYS) - {"name", "dark", "variables"}
    if unknown:
        raise ValueError(f"{path}: unknown theme keys {sorted(unknown)}")
    return data


def read_theme_files(folder: Path | None = None) -> list[dict[str, Any]]:
    """Every valid theme file of the folder, by file name; a broken one is skipped with a warning in the log."""
    themes = []
    for path in sorted((folder or themes_dir()).glob("*.toml")):
        try:
            themes.append(read_theme_file(path))
        except ValueError as exc:
            log.warning("skipping theme %s: %s", path.name, exc)
    return themes


def claw_theme_names(folder: Path | None = None) -> list[str]:
    return [theme["name"] for theme in read_theme_files(folder)]
