"""The claw console: five panes over one running Session."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, TabbedContent, TabPane

from claw_tui.session import Session
from claw_tui.ui.panes.agents import AgentsPane
from claw_tui.ui.panes.chat import ChatPane
from claw_tui.ui.panes.models import ModelsPane
from claw_tui.ui.panes.power import PowerPane
from claw_tui.ui.panes.requests import RequestsPane
from claw_tui.ui.themes import load_themes

PANES = (
    ("power", "Power", PowerPane),
    ("chat", "Chat", ChatPane),
    ("models", "Models", ModelsPane),
    ("agents", "Agents", AgentsPane),
    ("requests", "Requests", RequestsPane),
)

PREFERRED_CHAT_MODELS = ("qwen3:8b", "llama3.2:3b")


class ClawApp(App):
    CSS_PATH = "claw.tcss"
    TITLE = "claw"
    BINDINGS = [
        *(Binding(f"f{i}", f"show_pane('{pane_id}')", title, show=True, priority=True) for i, (pane_id, title, _) in
          enumerate(PANES, start=1)),
        *(Binding(str(i), f"show_pane('{pane_id}')", title, show=False) for i, (pane_id, title, _) in
          enumerate(PANES, start=1)),
        Binding("f6", "toggle_governor", "Governor", show=True, priority=True),
        Binding("f7", "export_summary", "Export", show=True, priority=True),
        Binding("ctrl+q", "quit", "Quit", show=True, priority=True),
    ]

    def __init__(self, session: Session, *, refresh_hz: float | None = None,
                 clock: Callable[[], float] | None = None, gateway_label: str | None = None) -> None:
        super().__init__()
        self.session = session
        self.clock = clock or session.clock
        self.gateway_label = gateway_label
        self.refresh_hz = refresh_hz if refresh_hz is not None else session.config.ui.refresh_hz
        self._refresh_timer = None

    @property
    def gateway_url(self) -> str:
        return self.session.gateway_url

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with TabbedContent(id="panes", initial="power"):
            for pane_id, title, pane_class in PANES:
                with TabPane(title, id=pane_id):
                    yield pane_class(id=f"{pane_id}-pane")
        yield Footer()

    def on_mount(self) -> None:
        for theme in load_themes():
            self.register_theme(theme)
        configured = self.session.config.ui.theme
        if configured in self.available_themes:
            self.theme = configured
        self.update_header()
        for notice in self.session.notices:
            self.notify(notice, severity="warning", timeout=10)
        if self.refresh_hz > 0:
            self._refresh_timer = self.set_interval(1 / self.refresh_hz, self.refresh_active_pane)

    def update_header(self) -> None:
        demo = "DEMO · " if self.session.demo else ""
        status = self.session.governor_json()
        dry = status.get("enabled") and status.get("mode") == "dry-run"
        governor = status.get("state", "off") + (" (dry run)" if dry else "")
        address = self.gateway_label or self.gateway_url.removeprefix("http://")
        self.sub_title = f"{demo}gateway {address} · governor {governor}"

    def active_pane(self):
        active = self.query_one("#panes", TabbedContent).active
        return self.query_one(f"#{active}-pane")

    def refresh_active_pane(self) -> None:
        pane = self.active_pane()
        if not pane.ready:
            return
        with self.batch_update():
            self.update_header()
            pane.refresh_data()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_active_pane()

    def action_show_pane(self, pane_id: str) -> None:
        # Drop focus first: a focused widget left in the old pane would pull its tab back to the front.
        self.set_focus(None)
        self.query_one("#panes", TabbedContent).active = pane_id
        if pane_id == "chat":
            self.query_one("#chat-input").focus()

    def default_chat_model(self, names: list[str]) -> str:
        for preferred in PREFERRED_CHAT_MODELS:
            if preferred in names:
                return preferred
        return names[0]

    # ---- F6 / F7: the session's governor and summary export run off the UI thread --------------------------------
    def action_toggle_governor(self) -> None:
        self.run_worker(self._toggle_governor, thread=True, exclusive=True, group="governor")

    def _toggle_governor(self) -> None:
        try:
            status = self.session.toggle_governor()
        except Exception as exc:  # noqa: BLE001 - say it, never crash the console
            self.call_from_thread(self.notify, f"governor: {exc}", severity="error")
            return
        self.call_from_thread(self._governor_toggled, status)

    def _governor_toggled(self, status: dict) -> None:
        self.update_header()
        if not status.get("enabled"):
            self.notify("idle downclock off (clocks at their defaults)", title="governor")
            return
        text = f"idle downclock on: downclocks after {status.get('idle_after_s', 0):g} s without requests"
        if status.get("mode") == "dry-run":
            self.notify(f"{text} — dry run only: {status.get('reason')}", title="governor", severity="warning",
                        timeout=8)
        else:
            self.notify(text, title="governor")

    def action_export_summary(self) -> None:
        self.run_worker(self._export_summary, thread=True, exclusive=True, group="export")

    def _export_summary(self) -> None:
        try:
            path = self.session.export_summary()
        except Exception as exc:  # noqa: BLE001 - a full disk must not take the console down
            self.call_from_thread(self.notify, f"export failed: {exc}", severity="error", timeout=10)
            return
        self.call_from_thread(self.notify, f"{path}\n(.md and .csv beside it)", title="summary written",
                              timeout=10)
