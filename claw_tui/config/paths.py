"""Where the config file is (--config, $CLAW_CONFIG, the user config folder) and where a demo run keeps its files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs

from claw_tui.config.schema import APP_NAME, CONFIG_ENV_VAR


def resolve_config_path(cli_path: str | None) -> Path:
    """--config, else $CLAW_CONFIG, else the platform's user config folder / claw / config.toml."""
    return config_path_and_source(cli_path)[0]


def config_path_and_source(cli_path: str | None) -> tuple[Path, str]:
    """The config path and what chose it: "--config", "$CLAW_CONFIG" or "default"."""
    if cli_path:
        return Path(cli_path).expanduser(), "--config"
    env_path = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if env_path:
        return Path(env_path).expanduser(), f"${CONFIG_ENV_VAR}"
    return platformdirs.user_config_path(APP_NAME) / "config.toml", "default"


DEMO_KEEP_S = 24 * 3600


def new_demo_state_dir() -> Path:
    """A fresh folder for one demo run (its config with the theme and agents, its session store, its exports), under
    the user state folder's `demo/`. Folders of earlier runs are removed once they are a day old."""
    import shutil
    import time

    base = platformdirs.user_state_path(APP_NAME) / "demo"
    base.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in base.glob("run-*"):
        try:
            if now - old.stat().st_mtime > DEMO_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))
