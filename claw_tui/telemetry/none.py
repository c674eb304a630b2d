"""Host facts for a machine with no GPU telemetry (CPU and RAM from psutil), so claw keeps working."""

from __future__ import annotations

from typing import Any

import psutil


def host_load() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu_pct": psutil.cpu_percent(interval=None),
        "ram_used_mib": (memory.total - memory.available) / 2**20,
        "ram_total_mib": memory.total / 2**20,
    }
