"""Failures of background work become notifications: the console never shows a traceback."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from textual.worker import Worker, WorkerState

if TYPE_CHECKING:  # the mixin is only ever mixed into panes, screens and the app itself: message pumps
    from textual import getters
    from textual.message_pump import MessagePump as _MixedInto

    from claw_tui.ui.app import ClawApp
else:
    _MixedInto = object

log = logging.getLogger("claw_tui.ui")


class ReportsWorkerErrors(_MixedInto):
    """Mixed into panes and screens: a worker that raised is logged and shown as an error notification.

    (Worker state messages do not bubble, so each node that starts workers handles its own.)
    """

    if TYPE_CHECKING:  # panes and screens live in the claw console
        app = getters.app(lambda: ClawApp)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        log.error("%s failed: %r", event.worker.name or "a task", error)
        self.app.notify(f"{event.worker.name or 'a task'} failed: {error}", severity="error", timeout=10)
