"""`claw compare A.json B.json`: a before/after table of two efficiency summaries, with a better/worse word."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from claw_tui.commands.common import add_common_options
from claw_tui.export import SummaryFormatError, compare, load_summary, render_compare

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="before/after table of two summaries (claw export / claw bench -o)",
        description="Deltas are B minus A; each metric says whether B is better or worse (within 1%: same).",
    )
    add_common_options(parser)
    parser.add_argument("before", metavar="A.json", help="the summary before the change")
    parser.add_argument("after", metavar="B.json", help="the summary after the change")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(run=run_compare)


def describe(summary: dict[str, Any], path: str) -> str:
    session = summary.get("session") or {}
    bench = summary.get("bench") or {}
    what = f"bench {bench.get('model')}" if bench else f"session {session.get('id')}"
    return f"{Path(path).name} ({what}, {session.get('duration_s', 0):.0f} s)"


def run_compare(args: argparse.Namespace) -> int:
    try:
        before = load_summary(args.before)
        after = load_summary(args.after)
    except SummaryFormatError as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = compare(before, after)
    if args.json:
        print(json.dumps({"before": args.before, "after": args.after, "rows": [r.to_json() for r in rows]}, indent=2))
        return EXIT_OK
    # The files are named above the table; the columns are A and B, so long file names do not widen it.
    print(f"A: {describe(before, args.before)}")
    print(f"B: {describe(after, args.after)}")
    print()
    sys.stdout.write(render_compare(rows))
    better = sum(r.verdict == "better" for r in rows)
    worse = sum(r.verdict == "worse" for r in rows)
    print(f"\nB is better on {better} and worse on {worse} of {len(rows)} metrics.")
    return EXIT_OK
