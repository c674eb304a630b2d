"""`claw config init|show|path`: write a commented default config, print the effective one, say where it lives."""

from __future__ import annotations

import argparse
import json
import sys

from claw_tui.config import (
    ConfigError,
    config_path_and_source,
    config_to_dict,
    config_to_toml,
    default_config_text,
    load_config_for_cli,
    redact_secrets,
    write_text_atomically,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="write a default config, print the effective one, or say where it is",
        description="The config file is --config PATH, else $CLAW_CONFIG, else claw/config.toml in the user "
        "config folder.",
    )
    parser.set_defaults(run=lambda args: print_help(parser))
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION")

    init = actions.add_parser("init", help="write a commented default config file")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=run_init)

    show = actions.add_parser("show", help="print the effective config (file + defaults) as TOML")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.add_argument("--show-secrets", action="store_true", help="print tokens and API keys instead of hiding them")
    show.set_defaults(run=run_show)

    path = actions.add_parser(
        "path",
        help="print the config file's path and whether it exists",
        description="A file named by --config or $CLAW_CONFIG must exist: without it every command except "
        "'config init' and 'config path' stops with a config error. Only the default file may be missing "
        "(then the built-in defaults apply).",
    )
    path.set_defaults(run=run_path)


def print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_CONFIG


def run_init(args: argparse.Namespace) -> int:
    path, _ = config_path_and_source(args.config)
    if path.exists() and not args.force:
        print(f"claw: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_REFUSED
    try:
        write_text_atomically(path, default_config_text())
    except OSError as exc:
        print(f"claw: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(path)
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    try:
        config = load_config_for_cli(args.config)
    except ConfigError as exc:
        print(f"claw: config error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if not args.show_secrets:
        config = redact_secrets(config)
    if args.json:
        print(json.dumps(config_to_dict(config), indent=2))
        return EXIT_OK
    exists = config.path is not None and config.path.exists()
    origin = f"{config.path}" if exists else f"built-in defaults ({config.path} does not exist)"
    print(f"# Effective claw configuration, from {origin}")
    if not config.store.path:
        print(f"# store.path is empty: the session store is {config.store.resolved_path()}")
    print(config_to_toml(config), end="")
    return EXIT_OK


def run_path(args: argparse.Namespace) -> int:
    path, source = config_path_and_source(args.config)
    print(path)
    if path.exists():
        state = "exists"
    elif source == "default":
        state = "does not exist (built-in defaults apply)"
    else:
        # A file named on purpose must be there: every other command stops with a config error until it is.
        state = "does not exist: claw refuses to start until it does (claw config init writes it)"
    print(f"{state}; chosen by {source}")
    return EXIT_OK
