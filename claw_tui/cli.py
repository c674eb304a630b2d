"""The `claw` command line: the TUI by default, and one subcommand module per face under claw_tui.commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import sys

from claw_tui import __version__, logs
from claw_tui.commands.common import check_replay, reader_gone, silence_stdout

log = logging.getLogger(__name__)

# Each module defines `register(subparsers)`, which adds its parser with `set_defaults(run=<callable(args)->int>)`.
COMMAND_MODULES = (
    "claw_tui.commands.serve",
    "claw_tui.commands.config_cmd",
    "claw_tui.commands.sim",
    "claw_tui.commands.gpu",
    "claw_tui.commands.modelfile",
    "claw_tui.commands.export",
    "claw_tui.commands.compare",
    "claw_tui.commands.bench",
    "claw_tui.commands.doctor",
    "claw_tui.commands.web",
    "claw_tui.commands.batch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claw",
        description="claw: the operator console for a GPU box that serves LLMs.",
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"claw {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (else $CLAW_CONFIG, else the user config)")
    parser.add_argument("--demo", action="store_true", help="use the built-in simulator (simulated GPU + Ollama)")
    parser.add_argument("--replay", metavar="FILE", help="play a recorded GPU trace as the telemetry source")
    parser.add_argument("--connect", metavar="URL", help="attach the console to the claw service at URL")
    parser.add_argument("--token", metavar="T", help="the service's token for --connect (else $CLAW_TOKEN)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (each -v a level more)")


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that goes away (`claw export --list | head -1`) ends it quietly with status 0."""
    try:
        return run_command(argv)
    except BrokenPipeError:
        return reader_gone()
    finally:
        flush_stdout()


def run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    face = args.command or "console"
    logs.configure(face, args.verbose)
    # The console's file gathers many runs: each starts with this line. On stderr it is noise but for debugging.
    started = logging.INFO if face == "console" else logging.DEBUG
    log.log(started, "claw %s: %s (pid %d, Python %s)", __version__, face, os.getpid(), platform.python_version())
    log.debug("options: %s", {key: value for key, value in vars(args).items() if key != "run"})
    if getattr(args, "replay", None) and (code := check_replay(args.replay)):
        return code
    run = getattr(args, "run", None)
    if run is None:
        from claw_tui.commands.tui import run_tui

        return run_tui(args)
    return int(run(args) or 0)


def flush_stdout() -> None:
    """Flush now, while a closed pipe can still be handled (at exit it would print "Exception ignored")."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
