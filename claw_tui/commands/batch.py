"""`claw batch`: batch jobs on the running claw service (the same jobs as the OpenAI Batch API at /v1/batches).

    claw batch submit FILE.jsonl --model M     one prompt a line, or Ollama /api/chat or /api/generate bodies
    claw batch submit FILE.jsonl                OpenAI batch lines ({"custom_id", "method", "url", "body"}) as they are
    claw batch list | show ID | cancel ID | results ID [-o FILE] [--errors]

The service is found as the console finds it: --connect URL, else the configured gateway address; its token is
--token, else $CLAW_TOKEN, else the config's first admin or client token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from claw_tui.commands.common import EXIT_USAGE, add_common_options, load_config_or_exit

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
COLUMNS = ("id", "status", "done", "failed", "energy", "J/token", "ETA", "model", "created")


class CommandError(Exception):
    """One sentence for stderr, and the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("batch", help="submit and follow batch jobs on the running claw service")
    add_common_options(parser)
    parser.add_argument("--connect", metavar="URL", default=argparse.SUPPRESS, help="the claw service's address")
    parser.add_argument("--token", metavar="T", default=argparse.SUPPRESS, help="the service's token")
    actions = parser.add_subparsers(dest="batch_action", metavar="ACTION", required=True)

    submit = actions.add_parser("submit", help="submit a JSONL file as a batch job")
    submit.add_argument("file", type=Path, help="prompts or Ollama bodies one a line, or OpenAI batch lines")
    submit.add_argument("--model", "-m", help="the model that answers the lines that name none")
    submit.add_argument("--window", default="24h", help="completion window, e.g. 24h, 90m (default 24h)")
    submit.add_argument("--webhook", metavar="URL", help="POST here when the job ends")
    submit.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata (repeatable)")
    submit.set_defaults(run=run_submit)

    listing = actions.add_parser("list", help="the newest jobs")
    listing.add_argument("--limit", type=int, default=20, help="how many (at most 100)")
    listing.add_argument("--json", action="store_true", help="the batch objects as JSON")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one job: progress, energy, files")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the batch object as JSON")
    show.set_defaults(run=run_show)

    cancel = actions.add_parser("cancel", help="cancel a job (answered lines keep their results)")
    cancel.add_argument("id")
    cancel.set_defaults(run=run_cancel)

    results = actions.add_parser("results", help="a job's output file (JSONL, in input order)")
    results.add_argument("id")
    results.add_argument("-o", "--output", type=Path, help="write it here instead of stdout")
    results.add_argument("--errors", action="store_true", help="the error file instead")
    results.set_defaults(run=run_results)


# ---- talking to the service ------------------------------------------------------------------------------------
class Service:
    def __init__(self, url: str, token: str | None) -> None:
        from claw_tui.console.remote import auth_headers

        self.url = url
        self.client = httpx.Client(base_url=url, headers=auth_headers(token), timeout=TIMEOUT)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        from claw_tui.console.remote import error_text

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CommandError(f"the claw service at {self.url} cannot be reached: {exc}") from None
        if response.status_code >= 400:
            raise CommandError(f"{error_text(response)} (HTTP {response.status_code})")
        return response


def connect(args: argparse.Namespace) -> Service:
    from claw_tui.commands.tui import console_token, service_url
    from claw_tui.console.remote import NeedsToken, probe

    config = load_config_or_exit(args)
    given = getattr(args, "connect", None)
    url = (given if "://" in given else f"http://{given}") if given else service_url(config)
    token = console_token(args, config)
    try:
        status = probe(url, token, timeout=5.0)
    except NeedsToken as exc:
        raise CommandError(f"{exc} (pass --token or set CLAW_TOKEN)") from None
    if status is None:
        raise CommandError(
            f"no claw service answers at {url}: start one with 'claw serve' (or 'claw serve --demo' to try it), "
            "or point at one with --connect URL"
        )
    return Service(url, token)


def run_command(args: argparse.Namespace, action: Callable[[argparse.Namespace], int]) -> int:
    try:
        return action(args)
    except CommandError as exc:
        print(f"claw batch: {exc}", file=sys.stderr)
        return exc.code


# ---- the actions ------------------------------------------------------------------------------------------------
def run_submit(args: argparse.Namespace) -> int:
    return run_command(args, _submit)


def _submit(args: argparse.Namespace) -> int:
    from claw_tui.batch.lines import InputError, native_lines

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE) from None
    metadata = _metadata(args)
    if _openai_lines(text):
        content = text.encode()
        endpoint = json.loads(next(line for line in text.splitlines() if line.strip()))["url"]
    else:
        try:
            lines = native_lines(text, args.model)
        except InputError as exc:
            raise CommandError(f"{args.file}: {exc}", EXIT_USAGE) from None
        urls = {line["url"] for line in lines}
        if len(urls) > 1:
            raise CommandError(
                f"{args.file}: one job has one endpoint, but these lines mix {' and '.join(sorted(urls))} "
                "(put chat lines and generate lines in separate files)",
                EXIT_USAGE,
            )
        content = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        endpoint = urls.pop()
    service = connect(args)
    file = service.call("POST", "/v1/files", files={"file": (args.file.name, content)}, data={"purpose": "batch"})
    body = {
        "input_file_id": file.json()["id"],
        "endpoint": endpoint,
        "completion_window": args.window,
        "metadata": metadata or None,
    }
    batch = service.call("POST", "/v1/batches", json=body).json()
    counts = batch["request_counts"]
    print(f"{batch['id']}  {batch['status']}  {counts['total']} requests  ({endpoint}, window {args.window})")
    print(f"follow it with: claw batch show {batch['id']}")
    return 0


def _openai_lines(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        item = json.loads(first)
    except ValueError:
        return False
    return isinstance(item, dict) and "url" in item and "body" in item


def _metadata(args: argparse.Namespace) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in args.meta:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--meta takes KEY=VALUE, not {pair!r}", EXIT_USAGE)
        metadata[key] = value
    if args.webhook:
        metadata["webhook_url"] = args.webhook
    return metadata


def run_list(args: argparse.Namespace) -> int:
    return run_command(args, _list)


def _list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100:
        raise CommandError("--limit takes 1 to 100", EXIT_USAGE)
    page = connect(args).call("GET", "/v1/batches", params={"limit": args.limit}).json()
    jobs = page.get("data") or []
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        print("no batch jobs yet (submit one with: claw batch submit FILE.jsonl --model M)")
        return 0
    rows = [COLUMNS] + [_row(job) for job in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _row(job: dict[str, Any]) -> tuple[str, ...]:
    counts, claw = job["request_counts"], job.get("claw") or {}
    return (
        job["id"],
        job["status"],
        f"{counts['completed']}/{counts['total']}",
        str(counts["failed"]),
        energy_text(claw.get("energy_j")),
        "—" if claw.get("joules_per_token") is None else f"{claw['joules_per_token']:.3f}",
        eta_text(claw.get("eta_s")),
        job.get("model") or "—",
        time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created_at"])),
    )


def energy_text(joules: float | None) -> str:
    if joules is None:
        return "—"
    return f"{joules / 1000:.2f} kJ" if joules >= 10_000 else f"{joules:.1f} J"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_show(args: argparse.Namespace) -> int:
    return run_command(args, _show)


def _show(args: argparse.Namespace) -> int:
    job = connect(args).call("GET", f"/v1/batches/{args.id}").json()
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    counts, claw = job["request_counts"], job.get("claw") or {}
    usage = job.get("usage") or {}
    lines = [
        ("id", job["id"]),
        ("status", job["status"]),
        ("endpoint", job["endpoint"]),
        ("model", job.get("model") or "—"),
        ("requests", f"{counts['completed']} done, {counts['failed']} failed, {counts['total']} in all"),
        ("in flight", str(claw.get("in_flight", 0))),
        ("ETA", eta_text(claw.get("eta_s"))),
        ("energy", f"{energy_text(claw.get('energy_j'))} (model loads apart: {energy_text(claw.get('load_j'))})"),
        ("J/token", "—" if claw.get("joules_per_token") is None else f"{claw['joules_per_token']:.4f}"),
        ("tokens", f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"),
        ("energy final", "yes" if claw.get("energy_final") else "not yet (the last power samples are pending)"),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"]))),
        (
            "window",
            f"{job['completion_window']} (until {time.strftime('%H:%M:%S', time.localtime(job['expires_at']))})",
        ),
        ("output file", job.get("output_file_id") or "—"),
        ("error file", job.get("error_file_id") or "—"),
    ]
    hook = claw.get("webhook")
    if hook:
        lines.append(("webhook", f"{hook.get('url')}: {hook.get('state')} after {hook.get('tries')} tries"))
    for error in (job.get("errors") or {}).get("data") or []:
        lines.append(("error", f"line {error.get('line')}: {error.get('message')}"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    return run_command(args, _cancel)


def _cancel(args: argparse.Namespace) -> int:
    job = connect(args).call("POST", f"/v1/batches/{args.id}/cancel").json()
    counts = job["request_counts"]
    print(f"{job['id']}  {job['status']}  ({counts['completed']} of {counts['total']} answered keep their results)")
    return 0


def run_results(args: argparse.Namespace) -> int:
    return run_command(args, _results)


def _results(args: argparse.Namespace) -> int:
    service = connect(args)
    job = service.call("GET", f"/v1/batches/{args.id}").json()
    key = "error_file_id" if args.errors else "output_file_id"
    file_id = job.get(key)
    if not file_id:
        which = "error" if args.errors else "output"
        if job["status"] in ("validating", "in_progress", "finalizing", "cancelling"):
            raise CommandError(f"{args.id} is {job['status']}: its {which} file comes when it ends")
        raise CommandError(f"{args.id} ({job['status']}) has no {which} file")
    content = service.call("GET", f"/v1/files/{file_id}/content").content
    if args.output is None:
        sys.stdout.write(content.decode("utf-8"))
        return 0
    try:
        args.output.write_bytes(content)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE) from None
    lines = content.count(b"\n")
    print(f"{lines} lines written to {args.output}", file=sys.stderr)
    return 0
