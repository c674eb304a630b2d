"""Helpers shared by the subcommands: global options repeated after the subcommand, config loading."""

from __future__ import annotations

import argparse
import logging
import sys

from claw_tui.config import Config, ConfigError, config_path_and_source, load_config_for_cli

log = logging.getLogger(__name__)


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


def load_config_or_exit(args: argparse.Namespace) -> Config:
    """The effective config, or one clear line on stderr and exit status 2."""
    path, source = config_path_and_source(getattr(args, "config", None))
    log.info("config: %s (%s%s)", path, source, "" if path.exists() else "; no file there, so the defaults")
    try:
        return load_config_for_cli(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"claw: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
