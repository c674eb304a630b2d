"""The efficiency summary (export schema `claw.summary/1`) built from request records and energy totals."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from claw_tui.ledger import RequestRecord

SCHEMA = "claw.summary/1"


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (the same rule as numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(values: Sequence[float]) -> dict:
    return {f"p{p}": _round(percentile(values, p)) for p in (50, 95, 99)}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 and numerator > 0 else None


def group_metrics(records: Iterable[RequestRecord]) -> dict:
    """The per-group metrics used for the whole session, by_model and by_agent rows."""
    records = [r for r in records if r.status != "active"]
    statuses = Counter(r.status for r in records)
    ok = [r for r in records if r.status == "ok"]
    energy = sum(r.energy_j for r in records)
    completion = sum(r.completion_tokens for r in records)
    prompt = sum(r.prompt_tokens for r in records)
    latencies = [r.duration_ms for r in ok if r.duration_ms is not None]
    ttfts = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    return {
        "requests": {
            "total": len(records),
            "ok": statuses.get("ok", 0),
            "errors": statuses.get("error", 0),
            "by_status": dict(sorted(statuses.items())),
        },
        "tokens": {"prompt": prompt, "completion": completion},
        "energy_j": _round(energy),
        "prefill_j": _round(sum(r.prefill_j for r in records)),
        "decode_j": _round(sum(r.decode_j for r in records)),
        "efficiency": {
            "tokens_per_joule": _round(_ratio(completion, energy), 4),
            "joules_per_token": _round(_ratio(energy, completion), 4),
        },
        "latency_ms": percentiles(latencies),
        "ttft_ms": percentiles(ttfts),
    }


def grouped(records: Sequence[RequestRecord], key: str) -> list[dict]:
    groups: dict[str, list[RequestRecord]] = {}
    for record in records:
        name = getattr(record, key)
        if name:
            groups.setdefault(name, []).append(record)
    return [{key: name, **group_metrics(items)} for name, items in sorted(groups.items())]


def build_summary(
    *,
    session: dict,
    gpus: list[dict],
    records: Sequence[RequestRecord],
    energy: dict,
    counter_j: float | None,
    power_stddev_w: float | None,
    governor: dict,
    alerts: dict,
) -> dict:
    """`energy` holds the ledger totals (total_j, idle_j, active_j, idle_s, active_s)."""
    finished = [r for r in records if r.status != "active"]
    metrics = group_metrics(finished)
    duration_s = session.get("duration_s") or 0.0
    total_j = energy["total_j"]
    completion = metrics["tokens"]["completion"]
    return {
        "schema": SCHEMA,
        "session": session,
        "gpus": gpus,
        "energy": {
            "total_j": _round(total_j),
            "idle_j": _round(energy["idle_j"]),
            "active_j": _round(energy["active_j"]),
            "counter_j": _round(counter_j),
            "integral_j": _round(total_j),
            "counter_vs_integral_pct": _round(100 * (total_j - counter_j) / counter_j) if counter_j else None,
            "avg_power_w": _round(_ratio(total_j, energy["idle_s"] + energy["active_s"])),
            "idle_power_w": _round(_ratio(energy["idle_j"], energy["idle_s"])),
            "active_power_w": _round(_ratio(energy["active_j"], energy["active_s"])),
            "power_stddev_w": _round(power_stddev_w),
        },
        "tokens": metrics["tokens"],
        "efficiency": {
            # Session-wide figures charge idle energy too: that is what an idle-power change moves.
            "tokens_per_joule": _round(_ratio(completion, total_j), 4),
            "joules_per_token": _round(_ratio(total_j, completion), 4),
            "active_tokens_per_joule": metrics["efficiency"]["tokens_per_joule"],
            "active_joules_per_token": metrics["efficiency"]["joules_per_token"],
            "tokens_per_s": _round(_ratio(completion, duration_s)),
        },
        "latency_ms": metrics["latency_ms"],
        "ttft_ms": metrics["ttft_ms"],
        "requests": metrics["requests"],
        "by_model": grouped(finished, "model"),
        "by_agent": grouped(finished, "agent"),
        "governor": governor,
        "alerts": alerts,
    }
