"""Number formatting for the panes: fixed widths, N/A for missing values."""

from __future__ import annotations

from typing import Any

from rich.text import Text

NA = "N/A"


def num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return NA
    return f"{value:,.{digits}f}{unit}"


def watts(value: float | None) -> str:
    return num(value, 0, " W")


def joules(value: float | None) -> str:
    if value is None:
        return NA
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f} kJ"
    return f"{value:,.1f} J" if abs(value) >= 10 else f"{value:.2f} J"


def ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def mib(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value / 1024:,.1f} GiB" if value >= 1024 else f"{value:,.0f} MiB"


def ratio(value: float | None, digits: int = 2) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def bytes_size(value: int | float | None) -> str:
    if not value:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


def vram(used_mib: float | None, total_mib: float | None) -> str:
    """`12.3/140 GiB`: compact enough for a narrow stats cell."""
    if used_mib is None or total_mib is None:
        return NA
    return f"{used_mib / 1024:.1f}/{total_mib / 1024:.0f} GiB"


# The governor's states as an operator reads them (`idle_pending` → downclocks soon).
GOVERNOR_STATES = {
    "off": "off",
    "active": "on, requests in flight",
    "idle_pending": "on, idle: downclocks",
    "downclocked": "on, downclocked",
}

STATUS_STYLE = {"ok": "green", "error": "red", "cancelled": "yellow", "rejected": "magenta", "active": "cyan"}


def tokens_per_s(value: float | None) -> str:
    return NA if value is None else f"{value:,.1f} tok/s"


def countdown(seconds: float | None) -> str:
    """Time left until a loaded model expires: `4m12s`, `1h05m`, `forever`, `expiring`."""
    if seconds is None:
        return "—"
    if seconds > 10 * 365 * 86400:
        return "forever"
    if seconds <= 0:
        return "expiring"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def right(value: str, style: str = "") -> Text:
    """A table cell aligned right (numbers read best that way)."""
    return Text(value, style=style, justify="right")


def ms_or_dash(value: float | None) -> str:
    """Milliseconds, or `—` where there is nothing to measure yet (as opposed to N/A: not measurable)."""
    return "—" if value is None else ms(value)


def duration(ms_value: float | None) -> str:
    """A latency that stays short: `350 ms` below a second, `6.50 s` below 100 s, `2m05s` above; `—` if unknown."""
    if ms_value is None:
        return "—"
    if ms_value < 1000:
        return f"{ms_value:.0f} ms" if ms_value >= 10 else f"{ms_value:.1f} ms"
    seconds = ms_value / 1000
    if seconds < 100:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def governor_words(governor: dict[str, Any]) -> str:
    """The governor in a few words: `off`, `idle in 12 s`, `downclocked @ 345 MHz`, `(dry run)`."""
    state = governor.get("state", "off")
    words: str = GOVERNOR_STATES.get(state, state.replace("_", " "))
    if governor.get("locked_sm_clock_mhz"):
        words += f" @ {governor['locked_sm_clock_mhz']} MHz"
    if state == "idle_pending" and governor.get("idle_after_s") is not None:
        left = max(0.0, governor["idle_after_s"] - (governor.get("idle_for_s") or 0.0))
        words += f" in {left:.0f} s"
    if governor.get("mode") == "dry-run" and governor.get("enabled"):
        words += " (dry run)"
    return words


def backend_words(backend: dict[str, Any]) -> str:
    """`ollama down: connection refused` — a backend that is not up, with the reason it gives."""
    words = f"{backend.get('name')} {backend.get('state')}"
    reason = backend.get("state_reason") or backend.get("last_error")
    return f"{words}: {reason}" if reason else words
