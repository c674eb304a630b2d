"""`claw export`: the efficiency summary of a session from the session store, as JSON, Markdown or CSV."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from claw_tui.commands.common import add_common_options, load_config_or_exit
from claw_tui.export import FORMATS, default_export_name, render
from claw_tui.store import StoreError, list_sessions, load_session
from claw_tui.summary import summary_from_stored

EXIT_OK = 0
EXIT_FAILED = 1


def register(subparsers) -> None:
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
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    store = Path(args.store).expanduser() if args.store else config.store.resolved_path()
    try:
        if args.list:
            print_sessions(list_sessions(store))
            return EXIT_OK
        stored = load_session(store, args.session)
    except StoreError as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = summary_from_stored(stored)
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


def print_sessions(rows: list[dict]) -> None:
    if not rows:
        print("no sessions stored yet")
        return
    print(f"{'session':<24} {'started (UTC)':<19} {'duration':>9} {'requests':>8}  state")
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["started_at"]))
        end = row["ended_at"]
        duration = f"{end - row['started_at']:.0f} s" if end else "-"
        demo = " (demo)" if row["demo"] else ""
        print(f"{row['id']:<24} {started:<19} {duration:>9} {row['requests']:>8}  {row['state']}{demo}")
