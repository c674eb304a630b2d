"""Helpers shared by the subcommands: global options repeated after the subcommand, config loading."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from claw_tui.config import Config, ConfigError, check_telemetry_source, config_path_and_source, load_config_for_cli

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # what argparse uses for a bad command line; also a missing or broken input file


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Let `claw serve --demo` work as well as `claw --demo serve` (SUPPRESS keeps the top-level value)."""
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file")
    parser.add_argument(
        "--demo",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the built-in simulator (simulated GPU + Ollama)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging")


def load_config_or_exit(args: argparse.Namespace, *, runs_session: bool = False) -> Config:
    """The effective config, or one clear line on stderr and exit status 2. `runs_session`: the command starts a
    Session (the console, serve), so the telemetry source must suit --demo / --replay as given."""
    path, source = config_path_and_source(getattr(args, "config", None))
    log.debug("config: %s (%s%s)", path, source, "" if path.exists() else "; no file there, so the defaults")
    try:
        config = load_config_for_cli(getattr(args, "config", None))
        if runs_session:
            demo = bool(getattr(args, "demo", False))
            check_telemetry_source(config, demo=demo, replay=bool(getattr(args, "replay", None)))
        return config
    except ConfigError as exc:
        print(f"claw: config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def check_replay(path: str) -> int:
    """Read a trace named by --replay before anything starts: a missing or broken file is one line on stderr and
    exit status 2 (a usage error), rather than a console that starts without telemetry and blames NVML."""
    from claw_tui.telemetry.replay import load_trace
    from claw_tui.telemetry.types import TelemetryError

    try:
        load_trace(path)
    except TelemetryError as exc:
        print(f"claw: --replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that left goes nowhere, without an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def reader_gone() -> int:
    """The exit status after the reader of stdout went away (`| head`): 0, as the output was all it asked for."""
    silence_stdout()
    return 0
