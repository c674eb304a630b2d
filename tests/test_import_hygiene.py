"""The core never imports Textual: `claw serve` and the library stay light and UI-free."""

import subprocess
import sys

CORE_MODULES = [
    "claw_tui.session",
    "claw_tui.gateway.app",
    "claw_tui.ledger",
    "claw_tui.store",
    "claw_tui.summary",
    "claw_tui.telemetry.sampler",
    "claw_tui.config",
    "claw_tui.commands.serve",
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
