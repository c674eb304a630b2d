"""Process-wide settings of a long-running face (`claw`, `claw serve`) that serve the gateway's latency.

- The event loop: uvloop when it is installed (the gateway's hot path spends much of its time in the loop's
  transports and callbacks, which uvloop runs in C), else asyncio's own. CLAW_ASYNCIO_LOOP=asyncio forces asyncio.
- The heap: objects built at start live as long as the process; freezing them keeps the cyclic garbage collector
  from walking them again on every full collection (measured: 15-45 ms pauses in the middle of requests).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("CLAW_ASYNCIO_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the loop of new_event_loop()."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def freeze_startup_heap() -> None:
    """Call once, when a long-running face has started its Session (not in tests: frozen cycles are never freed)."""
    gc.collect()
    gc.freeze()
