"""Output formats of the efficiency summary (JSON, Markdown, CSV of requests) and the before/after comparison."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claw_tui.ledger import RequestRecord
from claw_tui.summary_types import SCHEMA, Energy, GroupMetrics, ModelRow, Percentiles, Summary

FORMATS = ("json", "md", "csv")

CSV_COLUMNS = (
    "id",
    "status",
    "http_status",
    "model",
    "agent",
    "backend",
    "endpoint",
    "surface",
    "stream",
    "arrival",
    "ttft_ms",
    "duration_ms",
    "prompt_tokens",
    "completion_tokens",
    "decode_tokens_per_s",
    "energy_j",
    "prefill_j",
    "decode_j",
    "load_j",
    "attribution",
    "tokens_per_joule",
    "joules_per_token",
    "wake_ms",
    "energy_final",
    "server_load_ms",
    "server_prompt_eval_ms",
    "server_eval_ms",
    "error",
)


class SummaryFormatError(ValueError):
    """A file that is not a claw summary."""


def to_json(summary: Summary) -> str:
    return json.dumps(summary.to_json(), indent=2, sort_keys=False) + "\n"


def records_to_csv(records: Sequence[RequestRecord]) -> str:
    """One row per request, in arrival order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted((r for r in records if r.is_request), key=lambda r: r.t_arrival):
        writer.writerow(
            [
                r.id,
                r.status,
                _cell(r.http_status),
                r.model,
                r.agent or "",
                r.backend or "",
                r.endpoint,
                r.surface,
                int(r.stream),
                _iso(r.t_arrival),
                _cell(r.ttft_ms),
                _cell(r.duration_ms),
                r.prompt_tokens,
                r.completion_tokens,
                _cell(r.decode_tokens_per_s),
                _cell(r.energy_j, 6),
                _cell(r.prefill_j, 6),
                _cell(r.decode_j, 6),
                _cell(r.load_j, 6),
                r.attribution or "",
                _cell(r.tokens_per_joule, 4),
                _cell(r.joules_per_token, 4),
                _cell(r.wake_ms),
                int(r.energy_final),
                _cell(r.server_load_ms),
                _cell(r.server_prompt_eval_ms),
                _cell(r.server_eval_ms),
                r.error or "",
            ]
        )
    return out.getvalue()


def _cell(value: object, digits: int = 3) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _iso(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


# ---- Markdown ------------------------------------------------------------------------------------------------------
def _fmt(value: object, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _energy_rows(e: Energy) -> list[tuple[str, ...]]:
    def row(label: str, joules: float | None, seconds: float | None, power: float | None) -> tuple[str, ...]:
        return label, _fmt(joules), _fmt(seconds), _fmt(power, 1, " W")

    def mean(joules: float | None, seconds: float | None) -> float | None:
        return joules / seconds if joules is not None and seconds else None

    measured = sum(s or 0 for s in (e.idle_s, e.active_s, e.load_s, e.unmetered_s))
    rows = [
        ("total", _fmt(e.total_j), _fmt(measured), _fmt(e.avg_power_w, 1, " W")),
        row("requests", e.active_j, e.active_s, e.active_power_w),
        row("model loads", e.load_j, e.load_s, mean(e.load_j, e.load_s)),
        row(
            "unmetered (GPU work not through the gateway)",
            e.unmetered_j,
            e.unmetered_s,
            mean(e.unmetered_j, e.unmetered_s),
        ),
        row("idle", e.idle_j, e.idle_s, e.idle_power_w),
    ]
    if e.pending_j:
        rows.append(("pending (requests still in flight)", _fmt(e.pending_j), "", ""))
    return rows


def _model_events_lines(events: dict[str, Any]) -> list[str]:
    if not events or not events.get("total"):
        return []
    kinds = ", ".join(f"{kind} {n}" for kind, n in (events.get("by_kind") or {}).items())
    lines = ["", "## Model events", "", f"{events['total']} ({kinds}), {_fmt(events.get('energy_j'))} J in all.", ""]
    return lines + _table(
        ("kind", "model", "status", "duration ms", "energy J"),
        [
            (e["kind"], f"`{e['model']}`", e["status"], _fmt(e.get("duration_ms"), 0), _fmt(e.get("energy_j")))
            for e in events.get("recent") or []
        ],
    )


def _unload_advice(rows: Sequence[ModelRow]) -> list[str]:
    lines = []
    for row in rows:
        for option in row.unload_after:
            if option.net_j and option.net_j > 0:
                lines.append(
                    f"- `{row.model}`: unloading after {option.minutes} min unused would have saved "
                    f"{_fmt(option.saved_j)} J of parking, less {option.reloads} reloads "
                    f"({_fmt(option.reload_j)} J): {_fmt(option.net_j)} J net."
                )
                break
    return ["", "Unloading idle models sooner:", "", *lines] if lines else []


def _percentile_cells(values: Percentiles) -> tuple[str, ...]:
    return tuple(_fmt(p, 0) for p in (values.p50, values.p95, values.p99))


def _group_cells(metrics: GroupMetrics) -> tuple[str, ...]:
    return (
        _fmt(metrics.requests.total),
        _fmt(metrics.requests.errors),
        _fmt(metrics.tokens.completion),
        _fmt(metrics.energy_j),
        _fmt(metrics.efficiency.tokens_per_joule, 3),
        _fmt(metrics.efficiency.joules_per_token, 3),
        _fmt(metrics.latency_ms.p95, 0),
        _fmt(metrics.ttft_ms.p95, 0),
    )


GROUP_HEADER = (
    "requests",
    "errors",
    "tokens",
    "energy J",
    "tok/J requests",
    "J/token",
    "P95 latency ms",
    "P95 TTFT ms",
)


def _group_lines(summary: Summary) -> list[str]:
    lines: list[str] = []
    if summary.by_model:
        lines += ["", "## By model", ""]
        lines += _table(
            ("model", *GROUP_HEADER, "loads", "load J", "parking J"),
            [
                (
                    f"`{row.model}`",
                    *_group_cells(row.metrics),
                    _fmt(row.load_count),
                    _fmt(row.load_j),
                    _fmt(row.parking_j),
                )
                for row in summary.by_model
            ],
        )
        lines += _unload_advice(summary.by_model)
    if summary.by_agent:
        lines += ["", "## By agent", ""]
        lines += _table(
            ("agent", *GROUP_HEADER), [(f"`{row.agent}`", *_group_cells(row.metrics)) for row in summary.by_agent]
        )
    return lines


def to_markdown(summary: Summary | dict[str, Any]) -> str:
    """The summary for people; given its JSON document (`Summary.to_json()`), reads it back first."""
    if isinstance(summary, dict):
        summary = Summary.from_json(summary)
    s, e, eff = summary.session, summary.energy, summary.efficiency
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.get("started_at") or 0))
    demo = " (demo: simulated GPU)" if s.get("demo") else ""
    lines = [
        f"# claw efficiency summary — session {s.get('id')}",
        "",
        f"Host `{s.get('host', '')}`{demo}, started {started}, {_fmt(s.get('duration_s'), 1, ' s')}.",
    ]
    if s.get("state") == "crashed":
        lines.append("The session ended without a clean stop; figures are those saved last (at most a second old).")
    if s.get("approximate"):
        lines.append("Energy was rebuilt from 1 Hz telemetry (the session saved no totals): treat it as approximate.")
    if summary.bench:
        b = summary.bench
        lines.append(
            f"Bench run: model `{b.get('model')}`, workload {b.get('workload')}, "
            f"concurrency {b.get('concurrency')}, {b.get('requests_sent')} requests."
        )
    gpus = ", ".join(
        f"GPU {g.get('index')} {g.get('name')} (limit {_fmt(g.get('power_limit_w'), 0, ' W')})"
        for g in summary.gpus or []
    )
    lines += ["", f"GPUs: {gpus or 'none measured'}.", "", "## Headline", ""]
    lines += _table(
        ("metric", "value"),
        [
            ("tok/J all-in (all energy, idle included)", _fmt(eff.tokens_per_joule, 3)),
            ("J/token all-in", _fmt(eff.joules_per_token, 3)),
            ("tok/J requests (request energy only)", _fmt(eff.active_tokens_per_joule, 3)),
            ("J/token requests", _fmt(eff.active_joules_per_token, 3)),
            ("tokens per second", _fmt(eff.tokens_per_s, 2)),
            ("average power", _fmt(e.avg_power_w, 1, " W")),
            ("idle power", _fmt(e.idle_power_w, 1, " W")),
            ("P95 latency", _fmt(summary.latency_ms.p95, 0, " ms")),
            ("P95 TTFT", _fmt(summary.ttft_ms.p95, 0, " ms")),
        ],
    )
    lines += ["", "## Energy", "", "Every joule in one bucket: requests + model loads + unmetered + idle = total.", ""]
    lines += _table(("", "joules", "seconds", "mean power"), _energy_rows(e))
    if e.parking_j is not None or e.idle_baseline_w is not None:
        lines += [
            "",
            f"Parking (resident models with no request, above the {_fmt(e.idle_baseline_w, 1, ' W')} idle "
            f"baseline measured with nothing resident): {_fmt(e.parking_j, 1, ' J')}, part of idle.",
        ]
    check = "not available (no energy counter)"
    if e.counter_j is not None:
        check = (
            f"energy counter {_fmt(e.counter_j)} J vs integral of the power samples {_fmt(e.integral_j)} J "
            f"(difference {_fmt(e.counter_minus_integral_j)} J, "
            f"{_fmt(e.counter_vs_integral_pct, 2, '%')})"
        )
    lines += ["", f"Cross-check: {check}. Power standard deviation {_fmt(e.power_stddev_w, 1, ' W')}."]
    r, t = summary.requests, summary.tokens
    by_status = ", ".join(f"{k} {v}" for k, v in r.by_status.items()) or "none"
    lines += [
        "",
        "## Requests and latency",
        "",
        f"{r.total} requests ({by_status}); {_fmt(t.prompt)} prompt and {_fmt(t.completion)} completion tokens.",
        "",
    ]
    lines += _table(
        ("", "p50", "p95", "p99"),
        [("latency (ms)", *_percentile_cells(summary.latency_ms)), ("TTFT (ms)", *_percentile_cells(summary.ttft_ms))],
    )
    lines += _group_lines(summary)
    lines += _model_events_lines(summary.model_events or {})
    g = summary.governor
    lines += ["", "## Idle downclock governor", ""]
    if g.mode == "dry-run":
        lines += [
            'Dry run: no clock was changed. "Downclocked" is the time the governor would have held the '
            "clocks low, and its idle power is what the GPU drew meanwhile at normal clocks.",
            "",
        ]
    lines += _table(
        ("", "value"),
        [
            ("enabled at export", "yes" if g.enabled else "no"),
            ("mode", str(g.mode or "n/a")),
            ("time downclocked", _fmt(g.downclocked_s, 1, " s")),
            ("wakes", _fmt(g.wakes)),
            ("wake latency P95", _fmt(g.wake_latency_ms_p95, 2, " ms")),
            ("idle power, downclocked", _fmt(g.idle_power_w_downclocked, 1, " W")),
            ("idle power, normal clocks", _fmt(g.idle_power_w_normal, 1, " W")),
            ("models unloaded", _fmt(g.models_unloaded)),
        ],
    )
    alerts = summary.alerts or {}
    fired = [(k, v) for k, v in alerts.items() if isinstance(v, dict) and v.get("episodes")]
    lines += ["", "## Alerts", ""]
    if not fired:
        lines.append("None.")
    for kind, alert in fired:
        lines.append(
            f"- **{kind}**: {alert['episodes']} times, {_fmt(alert['seconds'], 0, ' s')} in all — {alert['hint']}"
        )
    return "\n".join(lines) + "\n"


# ---- files -------------------------------------------------------------------------------------------------------
def render(summary: Summary, fmt: str, records: Sequence[RequestRecord] = ()) -> str:
    if fmt == "json":
        return to_json(summary)
    if fmt == "md":
        return to_markdown(summary)
    if fmt == "csv":
        return records_to_csv(records)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def default_export_name(summary: Summary, fmt: str) -> str:
    return f"claw-summary-{summary.session.get('id', 'session')}.{fmt}"


def write_summary_files(summary: Summary, records: Sequence[RequestRecord], directory: Path) -> Path:
    """F7: the JSON summary, with the Markdown and the per-request CSV beside it; returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = f"claw-summary-{summary.session.get('id', 'session')}-{stamp}"
    json_path = directory / f"{stem}.json"
    for fmt in FORMATS:
        path = directory / f"{stem}.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render(summary, fmt, records))
        tmp.replace(path)
    return json_path


def load_summary(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SummaryFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SummaryFormatError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SummaryFormatError(
            f'{path} is not a claw summary (expected "schema": "{SCHEMA}"; '
            "make one with 'claw export' or 'claw bench -o')"
        )
    return data


# ---- compare -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    label: str
    path: tuple[str, ...]
    unit: str
    higher_is_better: bool
    digits: int = 1


COMPARE_METRICS = (
    Metric("avg power", ("energy", "avg_power_w"), "W", False),
    Metric("idle power", ("energy", "idle_power_w"), "W", False),
    Metric("tok/J all-in", ("efficiency", "tokens_per_joule"), "", True, 3),
    Metric("J/token all-in", ("efficiency", "joules_per_token"), "", False, 3),
    Metric("tok/J requests", ("efficiency", "active_tokens_per_joule"), "", True, 3),
    Metric("J/token requests", ("efficiency", "active_joules_per_token"), "", False, 3),
    Metric("load energy", ("energy", "load_j"), "J", False, 0),
    Metric("unmetered energy", ("energy", "unmetered_j"), "J", False, 0),
    Metric("parking energy", ("energy", "parking_j"), "J", False, 0),
    Metric("tokens/s", ("efficiency", "tokens_per_s"), "", True, 2),
    Metric("P95 latency", ("latency_ms", "p95"), "ms", False, 0),
    Metric("P50 TTFT", ("ttft_ms", "p50"), "ms", False, 0),
    Metric("P95 TTFT", ("ttft_ms", "p95"), "ms", False, 0),
    Metric("errors", ("requests", "errors"), "", False, 0),
    Metric("time downclocked", ("governor", "downclocked_s"), "s", True, 1),
    Metric("wake P95", ("governor", "wake_latency_ms_p95"), "ms", False, 2),
)
SAME_WITHIN_PCT = 1.0


@dataclass(frozen=True)
class CompareRow:
    metric: Metric
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def delta_pct(self) -> float | None:
        if self.delta is None or not self.before:
            return None
        return 100 * self.delta / abs(self.before)

    @property
    def verdict(self) -> str:
        """ "better", "worse", "same" (within 1%) or "n/a"."""
        delta = self.delta
        if delta is None:
            return "n/a"
        pct = self.delta_pct
        if delta == 0 or (pct is not None and abs(pct) < SAME_WITHIN_PCT):
            return "same"
        return "better" if (delta > 0) == self.metric.higher_is_better else "worse"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric.label,
            "unit": self.metric.unit,
            "before": self.before,
            "after": self.after,
            "delta": _round(self.delta, 6),
            "delta_pct": _round(self.delta_pct, 2),
            "verdict": self.verdict,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: object = summary
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[CompareRow]:
    return [CompareRow(m, _get(before, m.path), _get(after, m.path)) for m in COMPARE_METRICS]


def render_compare(rows: list[CompareRow], before_name: str = "", after_name: str = "") -> str:
    """A plain-text table: metric, before, after, delta (and %), better/worse. The before and after columns are
    headed "A" and "B", followed by the names when given (keep them short: they set the columns' width)."""

    def num(value: float | None, metric: Metric, signed: bool = False) -> str:
        if value is None:
            return "n/a"
        text = f"{value:+,.{metric.digits}f}" if signed else f"{value:,.{metric.digits}f}"
        return f"{text} {metric.unit}".rstrip()

    header_a = f"A: {before_name}" if before_name else "A"
    header_b = f"B: {after_name}" if after_name else "B"
    table = [("metric", header_a, header_b, "delta (B-A)", "%", "B is")]
    for row in rows:
        pct = f"{row.delta_pct:+.1f}%" if row.delta_pct is not None else ""
        table.append(
            (
                row.metric.label,
                num(row.before, row.metric),
                num(row.after, row.metric),
                num(row.delta, row.metric, signed=True),
                pct,
                row.verdict,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:5], widths[1:5])] + [r[5]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths[:5]) + "  " + "-" * max(widths[5], 6))
    return "\n".join(lines) + "\n"
