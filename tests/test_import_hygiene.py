"""The core never imports Textual: `claw serve` and the library stay light and UI-free."""

import ast
import subprocess
import sys
from pathlib import Path

CORE_MODULES = [
    "claw_tui.session",
    "claw_tui.gateway.app",
    "claw_tui.ledger",
    "claw_tui.store",
    "claw_tui.summary",
    "claw_tui.telemetry.sampler",
    "claw_tui.config",
    "claw_tui.commands.serve",
    "claw_tui.console.feed",
    "claw_tui.console.inprocess",
    "claw_tui.console.remote",
    "claw_tui.console.model",
]


def test_core_does_not_import_textual():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core imported Textual modules: {result.stdout.strip()}"


PANE_FOLDERS = ("panes", "screens", "widgets")
CORE_INTERNALS = ("claw_tui.gateway", "claw_tui.ledger", "claw_tui.session", "claw_tui.telemetry.sampler")


def test_panes_never_import_gateway_ledger_or_session_internals():
    """Panes render the console's model: they reach the core only through the console source."""
    ui = Path(__file__).parent.parent / "claw_tui" / "ui"
    offenders = []
    for folder in PANE_FOLDERS:
        for path in sorted((ui / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [f"{path.name}: {n}" for n in names if n.startswith(CORE_INTERNALS)]
    assert offenders == []
