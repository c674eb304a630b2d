"""The habits CI enforces: ruff's lint rules and formatting over the whole repository, the import contracts (the
core never imports Textual) checked by import-linter, and the types of all of claw_tui checked by mypy (strict)."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import claw_tui

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    beside = Path(sys.executable).with_name(name)
    return [str(beside)] if beside.exists() else [shutil.which(name) or name]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_lint_is_clean():
    result = _run([*_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _run([*_tool("ruff"), "format", "--no-cache", "--check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept():
    result = _run([*_tool("lint-imports"), "--no-cache"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_mypy_finds_no_error_in_the_core(tmp_path):
    """`[tool.mypy]` in pyproject.toml: strict on every module of claw_tui, the console (claw_tui.ui) included."""
    result = _run([*_tool("mypy"), "--cache-dir", str(tmp_path / "mypy-cache")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout


def test_the_core_contract_covers_every_module_outside_the_console():
    """A new top-level module of claw_tui is core unless it is the console: it must be named in the contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["name"] == "The core never imports Textual or rich")
    top_level = {f"claw_tui.{info.name}" for info in pkgutil.iter_modules(claw_tui.__path__)}
    assert set(contract["source_modules"]) == top_level - {"claw_tui.ui"}


def test_a_pane_importing_the_ledger_breaks_the_seam_contract(tmp_path):
    """The panes' contract is live: a copy of the package whose Requests pane imports the ledger fails it."""
    shutil.copytree(ROOT / "claw_tui", tmp_path / "claw_tui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    pane = tmp_path / "claw_tui" / "ui" / "panes" / "requests.py"
    pane.write_text("import claw_tui.ledger  # noqa: F401\n" + pane.read_text())
    result = subprocess.run(
        [*_tool("lint-imports"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode != 0
    assert "claw_tui.ui.panes is not allowed to import claw_tui.ledger" in result.stdout
