"""The JSON shapes of the Batch API, as the `openai` SDK reads them (File, Batch, a cursor page), and the lines of
the output and error files. claw's own figures (energy, J/token, ETA) ride along under a `claw` key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from claw_tui.batch.store import TIME_COLUMNS


def seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": int(row["created_at"]),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def request_counts(job: dict[str, Any]) -> dict[str, Any]:
    states = job["line_states"]
    return {
        "total": job["total"],
        "completed": states["done"],
        "failed": states["failed"] + states["expired"],
    }


def claw_extension(job: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
    """Energy by the attribution of every attempt's request record (Σ energy_j; model loads apart in load_j), and
    joules per token of the answers (completion tokens; prompt tokens for embeddings)."""
    tokens = job["completion_tokens"] or job["prompt_tokens"]
    energy = job["energy_j"]
    states = job["line_states"]
    out = {
        "energy_j": round(energy, 3),
        "load_j": round(job["load_j"], 3),
        "joules_per_token": round(energy / tokens, 6) if tokens and energy > 0 else None,
        "prompt_tokens": job["prompt_tokens"],
        "completion_tokens": job["completion_tokens"],
        "attempts": job["attempts"],
        "queued": states["queued"],
        "running": states["running"],
        "expired": states["expired"],
        "deadline_at": seconds(job["created_at"] + job["window_s"]),
        "mean_request_s": None if job["mean_line_s"] is None else round(job["mean_line_s"], 3),
        "in_flight": 0,
        "eta_s": None,
        "energy_final": True,
        "webhook": webhook_status(job.get("webhook")),
    }
    if live:
        out.update(live)
    return out


def webhook_status(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if not state:
        return None
    return {k: state.get(k) for k in ("url", "state", "tries", "last_status", "last_error", "delivered_at")}


def batch_object(job: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
    tokens_in, tokens_out = job["prompt_tokens"], job["completion_tokens"]
    errors = job.get("errors")
    obj = {
        "id": job["id"],
        "object": "batch",
        "endpoint": job["endpoint"],
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": job["input_file_id"],
        "completion_window": job["completion_window"],
        "status": job["status"],
        "output_file_id": job.get("output_file_id"),
        "error_file_id": job.get("error_file_id"),
        "created_at": int(job["created_at"]),
        "expires_at": seconds(job["created_at"] + job["window_s"]),
        **{column: seconds(job.get(column)) for column in TIME_COLUMNS},
        "request_counts": request_counts(job),
        "metadata": job.get("metadata"),
        "model": job.get("model"),
        "usage": {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out,
        },
        "claw": claw_extension(job, live),
    }
    return obj


def page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def request_line_id(batch_id: str, custom_id: str) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}\0{custom_id}".encode()).hexdigest()[:24]


def result_line(batch_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """One line of the output file (an answer) or of the error file (a failure, or a request the job never ran)."""
    response = None
    if row["status_code"] is not None:
        body = json.loads(row["response"]) if row["response"] else None
        response = {"status_code": row["status_code"], "request_id": row["request_id"] or "", "body": body}
    error = json.loads(row["error"]) if row["error"] else None
    if row["state"] == "expired" and error is None:
        error = {"code": "batch_expired", "message": "This request could not be executed before the completion window."}
    return {
        "id": request_line_id(batch_id, row["custom_id"]),
        "custom_id": row["custom_id"],
        "response": response,
        "error": error,
    }


def result_files(batch_id: str, rows: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """(output file, error file) contents, JSONL in input order."""
    output: list[str] = []
    errors: list[str] = []
    for row in rows:
        line = json.dumps(result_line(batch_id, row), separators=(",", ":"), ensure_ascii=False) + "\n"
        (output if row["state"] == "done" else errors).append(line)
    return "".join(output).encode(), "".join(errors).encode()
