"""Failures of background work become notifications: the console never shows a traceback."""

from __future__ import annotations

import logging

from textual.worker import Worker, WorkerState

log = logging.getLogger("claw_tui.ui")


class ReportsWorkerErrors:
    """Mixed into panes and screens: a worker that raised is logged and shown as an error notification.

    (Worker state messages do not bubble, so each node that starts workers handles its own.)
    """

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        log.error("%s failed: %r", event.worker.name or "a task", error)
        self.app.notify(f"{event.worker.name or 'a task'} failed: {error}", severity="error", timeout=10)
