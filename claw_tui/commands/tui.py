"""The default face: `claw` / `claw --demo` opens the console over a Session running in its own thread.

The console's first frame comes first; the Session (gateway, simulator, telemetry, store) starts on a thread
meanwhile and the panes fill in once it runs.
"""

from __future__ import annotations

import sys

from claw_tui.commands.common import load_config_or_exit


def run_tui(args) -> int:
    config = load_config_or_exit(args)
    from claw_tui.runtime import freeze_startup_heap
    from claw_tui.ui.app import ClawApp
    from claw_tui.ui.startup import SessionStarter

    starter = SessionStarter(
        config,
        demo=args.demo,
        replay_path=getattr(args, "replay", None),
        demo_traffic=args.demo,
        on_started=freeze_startup_heap,
    )
    try:
        ClawApp(starter=starter).run()
    finally:
        starter.stop()
    if starter.error:
        print(f"claw: {starter.error}", file=sys.stderr)
        return 1
    return 0
