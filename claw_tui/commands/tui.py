"""The default face: `claw` / `claw --demo` opens the console over a Session running in its own thread."""

from __future__ import annotations

import logging
import sys

from claw_tui.commands.common import load_config_or_exit
from claw_tui.gateway.policies import UnsafeListenError
from claw_tui.httpserver import PortInUseError


def run_tui(args) -> int:
    # Logging goes to a file handler only when asked: stderr would scribble over the screen.
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    config = load_config_or_exit(args)
    from claw_tui.session import Session, SessionOptions, SessionThread
    from claw_tui.ui.app import ClawApp

    session = Session(config, SessionOptions(demo=args.demo, replay_path=getattr(args, "replay", None),
                                             demo_traffic=args.demo))
    runner = SessionThread(session)
    try:
        runner.start()
    except PortInUseError as exc:
        print(f"claw: {exc} (is another claw running? try --config with another [gateway] listen)",
              file=sys.stderr)
        return 1
    except UnsafeListenError as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return 1
    from claw_tui.runtime import freeze_startup_heap

    freeze_startup_heap()
    try:
        ClawApp(session).run()
    finally:
        runner.stop()
    return 0
