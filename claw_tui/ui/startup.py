"""Start the Session while the console already shows its first frame.

Importing and starting the core (gateway, simulator, telemetry, store) takes about as long again as the console
itself; done on a thread of its own, the operator sees the console at once and the panes fill in a moment later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claw_tui.config import Config

if TYPE_CHECKING:
    from claw_tui.session import Session, SessionThread


@dataclass
class SessionStarter:
    """Builds and starts a Session (in a SessionThread) on demand; remembers why it could not."""

    config: Config
    demo: bool = False
    replay_path: str | None = None
    demo_traffic: bool = False
    listen: tuple[str, int] | None = None
    store_path: Path | None = None
    on_started: Callable[[], None] | None = None  # e.g. freezing the startup heap of a long-running process
    error: str | None = field(default=None, init=False)
    runner: SessionThread | None = field(default=None, init=False)

    def start(self) -> Session | None:
        """Start the session and return it (blocking: call it off the UI's event loop). None when it failed."""
        from claw_tui.gateway.policies import UnsafeListenError
        from claw_tui.httpserver import PortInUseError
        from claw_tui.session import Session, SessionOptions, SessionThread

        options = SessionOptions(
            demo=self.demo,
            replay_path=self.replay_path,
            demo_traffic=self.demo_traffic,
            listen=self.listen,
            store_path=self.store_path,
            face="console",
        )
        runner = SessionThread(Session(self.config, options))
        try:
            runner.start()
        except PortInUseError as exc:
            self.error = f"{exc} (is another claw running? try --config with another [gateway] listen)"
            return None
        except UnsafeListenError as exc:
            self.error = str(exc)
            return None
        except Exception as exc:  # whatever stops the core from starting is said in one line
            self.error = f"claw could not start: {exc}"
            return None
        self.runner = runner
        if self.on_started is not None:
            self.on_started()
        return runner.session

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
