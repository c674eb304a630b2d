"""Number formatting for the panes: fixed widths, N/A for missing values."""

from __future__ import annotations

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
