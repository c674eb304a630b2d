"""The Models pane: the backends' installed models and the ones loaded in memory (VRAM, expiry)."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Label

from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane

POLL_S = 2.0


def seconds_until(rfc3339: str | None, now: float) -> float | None:
    if not rfc3339:
        return None
    import re

    try:
        moment = datetime.fromisoformat(re.sub(r"\.\d+", "", rfc3339).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() - now


def countdown(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds > 10 * 365 * 86400:
        return "forever"
    if seconds <= 0:
        return "expiring"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class ModelsPane(Pane):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._last_poll = 0.0
        self.installed: list[dict] = []
        self.loaded: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Label("Installed models", classes="section-title")
        yield DataTable(id="models-installed", cursor_type="row", zebra_stripes=True)
        yield Label("Loaded in memory", classes="section-title")
        yield DataTable(id="models-loaded", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        installed = self.query_one("#models-installed", DataTable)
        installed.add_columns("name", "size", "family", "params", "quant", "kind")
        loaded = self.query_one("#models-loaded", DataTable)
        loaded.add_columns("name", "size", "in VRAM", "context", "expires in")
        self.refresh_data(force=True)

    def refresh_data(self, force: bool = False) -> None:
        now = self.app.clock()
        if force or now - self._last_poll >= POLL_S:
            self._last_poll = now
            self.poll_backend()
        else:
            self._fill_loaded()

    @work(exclusive=True, group="models-poll")
    async def poll_backend(self) -> None:
        try:
            async with httpx.AsyncClient(base_url=self.app.gateway_url, timeout=10) as client:
                tags, ps = await client.get("/api/tags"), await client.get("/api/ps")
                self.installed = tags.json().get("models") or []
                self.loaded = ps.json().get("models") or []
        except (httpx.HTTPError, ValueError) as exc:
            self.notify(f"cannot reach the backend: {exc}", severity="error")
            return
        self._fill_installed()
        self._fill_loaded()

    def _fill_installed(self) -> None:
        table = self.query_one("#models-installed", DataTable)
        table.clear()
        for model in sorted(self.installed, key=lambda m: m.get("name", "")):
            details = model.get("details") or {}
            kind = "agent" if details.get("format") == "agent" else "model"
            table.add_row(
                model.get("name", "?"),
                fmt.bytes_size(model.get("size")),
                details.get("family") or "—",
                details.get("parameter_size") or "—",
                details.get("quantization_level") or "—",
                kind if kind == "model" else f"agent → {details.get('parent_model', '?')}",
                key=model.get("name"),
            )

    def _fill_loaded(self) -> None:
        table = self.query_one("#models-loaded", DataTable)
        table.clear()
        now = time.time()
        for model in self.loaded:
            size = model.get("size") or 0
            share = (model.get("size_vram") or 0) / size * 100 if size else 0
            table.add_row(
                model.get("name", "?"),
                fmt.bytes_size(size),
                f"{share:.0f}%",
                str(model.get("context_length") or "—"),
                countdown(seconds_until(model.get("expires_at"), now)),
                key=model.get("name"),
            )
        if not self.loaded:
            table.add_row("(none loaded)", "", "", "", "")
