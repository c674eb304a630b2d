"""Theme files (TOML) from the top-level themes/ folder, validated and turned into Textual themes."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from textual.theme import Theme

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


def themes_dir() -> Path:
    """Installed wheels carry the folder as claw_tui/_themes; a source checkout has it at the top level."""
    packaged = Path(__file__).resolve().parent.parent / "_themes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "themes"


def load_theme_file(path: Path) -> Theme:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: theme needs a 'name'")
    if "primary" not in data:
        raise ValueError(f"{path}: theme needs a 'primary' colour")
    unknown = set(data) - set(COLOR_KEYS) - {"name", "dark", "variables"}
    if unknown:
        raise ValueError(f"{path}: unknown theme keys {sorted(unknown)}")
    colors = {key: data[key] for key in COLOR_KEYS if key in data}
    return Theme(name=name, dark=bool(data.get("dark", True)), variables=data.get("variables", {}), **colors)


def load_themes(folder: Path | None = None) -> list[Theme]:
    themes = []
    for path in sorted((folder or themes_dir()).glob("*.toml")):
        try:
            themes.append(load_theme_file(path))
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            log.warning("skipping theme %s: %s", path.name, exc)
    return themes
