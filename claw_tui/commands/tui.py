"""The default face: `claw` opens the console.

- `claw --connect URL [--token T]`: attached to the `claw serve` at URL.
- `claw`: attached to the `claw serve` that answers at the configured gateway address, if one does; otherwise the
  core runs in this process (its first frame comes first; the Session starts on a thread meanwhile).
- `claw --demo` / `--replay FILE`: always in-process (the simulator, or a recorded trace). The demo keeps its
  agents, theme and sessions in a throwaway folder: the operator's config file is never written.

In-process, SIGHUP (the SSH session dropped), SIGTERM and SIGINT end the console cleanly: the terminal is restored,
clocks are reset, the session is stored as ended, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from claw_tui.commands.common import load_config_or_exit
from claw_tui.config import Config

log = logging.getLogger(__name__)

ENDING_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def service_url(config: Config) -> str:
    """Where a local `claw serve` would answer: the configured listen address (a wildcard means this box)."""
    host, port = config.gateway.host_port()
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def console_token(args: argparse.Namespace, config: Config) -> str | None:
    """The token an attached console sends: --token, else $CLAW_TOKEN, else the config's first admin or client
    token (on the service's own box, the console reads the same config)."""
    token = getattr(args, "token", None) or os.environ.get("CLAW_TOKEN")
    if token:
        return token
    tokens = [*config.gateway.admin_tokens, *config.gateway.tokens]
    return tokens[0] if tokens else None


def say(text: str) -> None:
    try:
        print(f"claw: {text}", file=sys.stderr)
    except OSError:  # the terminal is gone (a hang-up): nothing to tell
        pass


def run_tui(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args, runs_session=not getattr(args, "connect", None))
    from claw_tui.console.remote import NeedsToken, probe

    connect = getattr(args, "connect", None)
    token = console_token(args, config)
    if connect:
        url = connect if "://" in connect else f"http://{connect}"
        try:
            status = probe(url, token, timeout=5.0)
        except NeedsToken as exc:
            say(f"{exc} (pass --token or set CLAW_TOKEN)")
            return 1
        if status is None:
            say(f"no claw service answers at {url}")
            return 1
        return run_attached(url, token, status, config)
    if not args.demo and not getattr(args, "replay", None):
        url = service_url(config)
        try:
            status = probe(url, token)
        except NeedsToken as exc:
            say(f"{exc} (pass --token or set CLAW_TOKEN)")
            return 1
        if status is not None:
            return run_attached(url, token, status, config)
    return run_in_process(args, config)


def run_attached(url: str, token: str | None, status: dict[str, Any], config: Config) -> int:
    """The console over a running service: quitting it leaves the service as it is."""
    from claw_tui.console.remote import RemoteSource
    from claw_tui.ui.app import ClawApp

    app = ClawApp(source=RemoteSource(url, token, status), config=config, exit_on_signals=True)
    app.run()
    return app.return_code or 0


def run_in_process(args: argparse.Namespace, config: Config) -> int:
    from claw_tui.runtime import freeze_startup_heap
    from claw_tui.ui.app import ClawApp
    from claw_tui.ui.startup import SessionStarter

    store_path = None
    if args.demo:
        from claw_tui.config import new_demo_state_dir

        state = new_demo_state_dir()
        config.path = state / "config.toml"  # the demo's theme and agents are saved here, never in the user's file
        store_path = state / "sessions.db"
    starter = SessionStarter(
        config,
        demo=args.demo,
        replay_path=getattr(args, "replay", None),
        demo_traffic=args.demo,
        on_started=freeze_startup_heap,
        store_path=store_path,
    )
    app = ClawApp(starter=starter, exit_on_signals=True)
    try:
        app.run()
    finally:
        starter.stop()
    if starter.error:
        say(starter.error)
        return 1
    return 0
