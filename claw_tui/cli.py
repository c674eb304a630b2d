"""The `claw` command line: the TUI by default, and one subcommand module per face under claw_tui.commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from claw_tui import __version__
from claw_tui.commands.common import check_replay, reader_gone, silence_stdout

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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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
