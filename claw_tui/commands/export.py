"""`claw export`: the efficiency summary of a session from the session store, as JSON, Markdown or CSV."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from claw_tui.commands.common import add_common_options, load_config_or_exit
from claw_tui.export import FORMATS, default_export_name, render
from claw_tui.store import StoreError, list_sessions, load_session
from claw_tui.summary import summarize_stored

EXIT_OK = 0
EXIT_FAILED = 1
# A session that ended this soon without a request is a start that failed (port taken, bad config) or an
# immediate quit: nothing to export, so --list leaves it out unless --all.
EMPTY_SESSION_S = 2.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="efficiency summary of a session (JSON, Markdown, or CSV of its requests)",
        description="Reads the session store: the newest session unless --session names one (an id or a unique "
        "prefix). Sessions that crashed are exported from what they saved last.",
    )
    add_common_options(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json (schema claw.summary/1), md (for people) or csv (one row per request)",
    )
    parser.add_argument("--session", metavar="ID", help="session id or unique prefix (default: the newest)")
    parser.add_argument("-o", "--output", metavar="PATH", help="file or folder to write (default: stdout)")
    parser.add_argument("--store", metavar="PATH", help="session store file (default: from the config)")
    parser.add_argument("--list", action="store_true", help="list the stored sessions instead")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"with --list: also the sessions that ended within {EMPTY_SESSION_S:g} s without a request "
        "(failed starts)",
    )
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    store = Path(args.store).expanduser() if args.store else config.store.resolved_path()
    try:
        if args.list:
            print_sessions(list_sessions(store), show_empty=args.all)
            return EXIT_OK
        stored = load_session(store, args.session)
    except StoreError as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = summarize_stored(stored)
    text = render(summary, args.format, stored.records)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(args.output).expanduser()
    if path.is_dir():
        path = path / default_export_name(summary, args.format)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        print(f"claw: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"claw: wrote {path} (session {stored.id}, {stored.state()})", file=sys.stderr)
    return EXIT_OK


def is_empty_session(row: dict[str, Any]) -> bool:
    end = row["ended_at"]
    return end is not None and row["requests"] == 0 and end - row["started_at"] < EMPTY_SESSION_S


def print_sessions(rows: list[dict[str, Any]], *, show_empty: bool = False) -> None:
    hidden = 0 if show_empty else sum(is_empty_session(row) for row in rows)
    rows = rows if show_empty else [row for row in rows if not is_empty_session(row)]
    if rows:
        print(f"{'session':<24} {'started (UTC)':<19} {'duration':>9} {'requests':>8}  state")
    elif not hidden:
        print("no sessions stored yet")
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["started_at"]))
        end = row["ended_at"]
        duration = f"{end - row['started_at']:.0f} s" if end else "-"
        demo = " (demo)" if row["demo"] else ""
        print(f"{row['id']:<24} {started:<19} {duration:>9} {row['requests']:>8}  {row['state']}{demo}")
    if hidden:
        print(
            f"({hidden} session{'s' if hidden != 1 else ''} that ended within {EMPTY_SESSION_S:g} s without a "
            "request left out: failed starts; --all lists them)"
        )
