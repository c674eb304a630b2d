"""`claw modelfile check FILE`: validate a Modelfile with Ollama's rules plus helpful suggestions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from claw_tui.ollama.modelfile import Diagnostic, check_text

# A Modelfile is text; anything this large is a model file passed by mistake.
MAX_MODELFILE_BYTES = 16 * 1024 * 1024

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("modelfile", help="work with Ollama Modelfiles")
    actions = parser.add_subparsers(dest="modelfile_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a Modelfile (exit 1 on errors)",
        description="Validate a Modelfile with Ollama's rules plus suggestions. "
        "Exit status: 0 no errors (warnings allowed), 1 errors, 2 the file cannot be read.",
    )
    check.add_argument("file", metavar="FILE", help="the Modelfile, or - to read standard input")
    check.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    check.set_defaults(run=run_check)


class UnreadableFile(Exception):
    pass


def run_check(args: argparse.Namespace) -> int:
    label = "<stdin>" if args.file == "-" else args.file
    try:
        text = read_modelfile(args.file)
    except UnreadableFile as error:
        print(f"claw modelfile check: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    diagnostics = check_text(text)
    if args.json:
        print(json.dumps(json_report(label, diagnostics), indent=2, ensure_ascii=False))
    else:
        for line in text_report(label, diagnostics):
            print(line)
    return EXIT_ERRORS if any(d.is_error for d in diagnostics) else EXIT_OK


def read_modelfile(path: str) -> str:
    try:
        data = sys.stdin.buffer.read(MAX_MODELFILE_BYTES + 1) if path == "-" else _read_file(path)
    except OSError as error:
        raise UnreadableFile(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_MODELFILE_BYTES:
        raise UnreadableFile(f"{path} is larger than {MAX_MODELFILE_BYTES // (1024 * 1024)} MiB: not a Modelfile")
    # Ollama's reader replaces bytes that are not UTF-8 in the same way.
    return data.decode("utf-8", errors="replace")


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read(MAX_MODELFILE_BYTES + 1)


def text_report(label: str, diagnostics: list[Diagnostic]) -> list[str]:
    lines = []
    for diagnostic in diagnostics:
        lines.append(f"{label}:{diagnostic.line}: {diagnostic.severity}: {diagnostic.message}")
        if diagnostic.suggestion:
            lines.append(f"    hint: {diagnostic.suggestion}")
    lines.append(f"{label}: {summary(diagnostics)}")
    return lines


def summary(diagnostics: list[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if not diagnostics:
        return "ok, no problems found"
    return f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def json_report(label: str, diagnostics: list[Diagnostic]) -> dict[str, Any]:
    errors = sum(d.is_error for d in diagnostics)
    return {
        "file": label,
        "ok": errors == 0,
        "errors": errors,
        "warnings": len(diagnostics) - errors,
        "diagnostics": [d.to_dict() for d in diagnostics],
    }
