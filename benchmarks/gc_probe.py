"""Run a `claw` command with the cyclic garbage collector's pauses recorded; at exit they are written as JSON to
the file named by $CLAW_GC_STATS (count and longest pause per generation, total time). For benchmarks only."""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_started: list[float] = []
_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        _pauses[info["generation"]].append((time.perf_counter() - _started.pop()) * 1000)


def _dump() -> None:
    target = os.environ.get("CLAW_GC_STATS")
    if not target:
        return
    stats = {
        f"gen{gen}": {"count": len(ms), "max_ms": round(max(ms, default=0.0), 2), "total_ms": round(sum(ms), 1)}
        for gen, ms in _pauses.items()
    }
    Path(target).write_text(json.dumps(stats))


gc.callbacks.append(_on_gc)
atexit.register(_dump)

if __name__ == "__main__":
    from claw_tui.cli import main

    raise SystemExit(main(sys.argv[1:]))
