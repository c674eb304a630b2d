"""Write docs/claw-demo.svg: the console in demo mode after one chat answer, for the README."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from claw_tui.config import load_config
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.ui.app import ClawApp

OUT = Path(__file__).resolve().parents[1] / "docs" / "claw-demo.svg"


async def capture(session: Session, pane: str) -> None:
    app = ClawApp(session, gateway_label="127.0.0.1:18789")
    async with app.run_test(size=(132, 40)) as pilot:
        await pilot.press("f2")
        await pilot.pause(1.0)
        await pilot.press(*"How much power does an idle H200 draw?")
        await pilot.press("enter")
        for _ in range(300):
            await pilot.pause(0.1)
            if any("TTFT" in str(s.render()) for s in app.query(".chat-stats")):
                break
        await pilot.press(pane)
        await pilot.pause(1.5)
        app.save_screenshot(str(OUT))


def main() -> int:
    config = load_config(None)
    with tempfile.TemporaryDirectory() as tmp:
        options = SessionOptions(demo=True, listen=("127.0.0.1", 0), store_path=Path(tmp) / "s.db", sim_speed=2.0)
        runner = SessionThread(Session(config, options))
        runner.start()
        try:
            asyncio.run(capture(runner.session, sys.argv[1] if len(sys.argv) > 1 else "f2"))
        finally:
            runner.stop()
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
