"""The claw console: five panes over one running Session."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.theme import Theme
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from claw_tui.config import ConfigError, update_ui
from claw_tui.ui.client import GatewayClient
from claw_tui.ui.commands import ClawCommands, PaletteCommand
from claw_tui.ui.errors import ReportsWorkerErrors
from claw_tui.ui.panes.deferred import DeferredPane, pane_class
from claw_tui.ui.screens.help import EXTRA_GLOBAL_KEYS, HelpScreen, binding_rows
from claw_tui.ui.startup import SessionStarter
from claw_tui.ui.themes import load_themes

if TYPE_CHECKING:  # the core is imported by whoever starts it; the console's first frame does not wait for it
    from claw_tui.session import Session

log = logging.getLogger(__name__)

STARTING = "Starting claw: the gateway, the backends and the GPU telemetry…"

# (id, title, class); the first is shown at start, the others are imported and mounted just after the first frame.
PANES = (
    ("power", "Power", "claw_tui.ui.panes.power:PowerPane"),
    ("chat", "Chat", "claw_tui.ui.panes.chat:ChatPane"),
    ("models", "Models", "claw_tui.ui.panes.models:ModelsPane"),
    ("agents", "Agents", "claw_tui.ui.panes.agents:AgentsPane"),
    ("requests", "Requests", "claw_tui.ui.panes.requests:RequestsPane"),
)

PREFERRED_CHAT_MODELS = ("qwen3:8b", "llama3.2:3b")


class ClawApp(ReportsWorkerErrors, App):
    CSS_PATH = "claw.tcss"
    TITLE = "claw"
    COMMANDS = App.COMMANDS | {ClawCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        # The tabs carry the F-keys in their labels, so the footer keeps its room for the pane's own keys.
        *(
            Binding(f"f{i}", f"show_pane('{pane_id}')", title, show=False, priority=True)
            for i, (pane_id, title, _) in enumerate(PANES, start=1)
        ),
        *(
            Binding(str(i), f"show_pane('{pane_id}')", title, show=False)
            for i, (pane_id, title, _) in enumerate(PANES, start=1)
        ),
        Binding("f6", "toggle_governor", "Governor", show=True, priority=True),
        Binding("f7", "export_summary", "Export", show=True, priority=True),
        Binding("question_mark", "help", "Help", show=True),
        Binding("ctrl+q", "quit", "Quit", show=True, priority=True),
    ]

    def __init__(
        self,
        session: Session | None = None,
        *,
        starter: SessionStarter | None = None,
        refresh_hz: float | None = None,
        clock: Callable[[], float] | None = None,
        gateway_label: str | None = None,
    ) -> None:
        """Over a running `session`, or over one that `starter` starts once the first frame is on the screen."""
        super().__init__()
        if session is None and starter is None:
            raise ValueError("ClawApp needs a session or a starter")
        self.session = session
        self.starter = starter
        self.config = session.config if session is not None else starter.config
        self._clock = clock
        self.gateway_label = gateway_label
        self.refresh_hz = refresh_hz if refresh_hz is not None else self.config.ui.refresh_hz
        self.gateway = self._gateway_client()
        self._refresh_timer = None
        self._theme_notice: str | None = None
        # Before the first frame: a theme set after mounting restyles every widget (a visible delay).
        for theme in load_themes():
            self.register_theme(theme)
        configured = self.config.ui.theme
        if configured in self.available_themes:
            self.theme = configured
        elif configured:
            self._theme_notice = f"theme '{configured}' not found; using {self.theme}"

    def _gateway_client(self) -> GatewayClient:
        # The console is a client of its own gateway; with auth on, it carries the session's internal token.
        if self.session is None:
            return GatewayClient("")
        return GatewayClient(self.session.gateway_url, self.session.gateway_headers())

    @property
    def clock(self) -> Callable[[], float]:
        if self._clock is not None:
            return self._clock
        return self.session.clock if self.session is not None else time.time

    @property
    def gateway_url(self) -> str:
        return self.session.gateway_url if self.session is not None else ""

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with TabbedContent(id="panes", initial="power"):
            for index, (pane_id, title, path) in enumerate(PANES, start=1):
                with TabPane(f"[dim]F{index}[/] {title}", id=pane_id):
                    if self.session is None:
                        if index == 1:
                            yield Static(STARTING, id="starting", classes="hint")
                    else:
                        yield self._pane_widget(index, pane_id, path)
        yield Footer()

    @staticmethod
    def _pane_widget(index: int, pane_id: str, path: str):
        if index == 1:
            return pane_class(path)(id=f"{pane_id}-pane")
        return DeferredPane(path, f"{pane_id}-pane")

    def on_mount(self) -> None:
        if self._theme_notice:
            self.notify(self._theme_notice, severity="warning")
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.session is None:
            self.sub_title = "starting the gateway and telemetry…"
            self.run_worker(self._start_session, thread=True, group="session-start", exit_on_error=False)
        else:
            self._session_running()

    def _start_session(self) -> None:
        session = self.starter.start()
        if session is None:
            self.call_from_thread(self.exit, return_code=1)
            return
        self.call_from_thread(self._mount_panes, session)

    async def _mount_panes(self, session: Session) -> None:
        self.session = session
        await self.gateway.aclose()
        self.gateway = self._gateway_client()
        await self.query_one("#starting").remove()
        for index, (pane_id, _, path) in enumerate(PANES, start=1):
            await self.query_one(f"#{pane_id}", TabPane).mount(self._pane_widget(index, pane_id, path))
        self._session_running()

    def _session_running(self) -> None:
        self.update_header()
        for notice in self.session.notices:
            self.notify(notice, severity="warning", timeout=10)
        if self.refresh_hz > 0:
            self._refresh_timer = self.set_interval(1 / self.refresh_hz, self.refresh_active_pane)

    async def on_unmount(self) -> None:
        await self.gateway.aclose()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Until the session runs there is no governor to toggle and nothing to export.
        return not (self.session is None and action in ("toggle_governor", "export_summary"))

    def update_header(self) -> None:
        demo = "DEMO · " if self.session.demo else ""
        status = self.session.governor_json()
        dry = status.get("enabled") and status.get("mode") == "dry-run"
        governor = status.get("state", "off") + (" (dry run)" if dry else "")
        address = self.gateway_label or self.gateway_url.removeprefix("http://")
        self.sub_title = f"{demo}gateway {address} · governor {governor}"

    # ---- panes -------------------------------------------------------------------------------------------------
    def active_pane(self):
        return self.pane(self.tabs.active)

    # The panes live on the first screen: query there, not on whatever dialog is on top.
    @property
    def tabs(self) -> TabbedContent:
        return self.screen_stack[0].query_one("#panes", TabbedContent)

    def pane(self, pane_id: str):
        return self.screen_stack[0].query_one(f"#{pane_id}-pane")

    def refresh_active_pane(self) -> None:
        if self.session is None:
            return
        try:
            pane = self.active_pane()
        except NoMatches:  # not composed yet, or being taken down
            return
        if not pane.ready:
            return
        with self.batch_update():
            self.update_header()
            try:
                pane.refresh_data()
            except NoMatches:  # the pane is being taken down (the app is closing)
                return
            except Exception as exc:  # a pane that cannot draw says why; the console keeps running
                log.exception("refreshing the %s pane failed", pane.id)
                self.notify(f"{pane.id}: {exc}", severity="error")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id == "panes":
            self.refresh_active_pane()

    def action_show_pane(self, pane_id: str) -> None:
        # Drop focus first: a focused widget left in the old pane would pull its tab back to the front.
        self.set_focus(None)
        self.tabs.active = pane_id
        self.with_pane(pane_id, lambda pane: pane.focus_main())

    def with_pane(self, pane_id: str, use: Callable, attempts: int = 20) -> None:
        """Call `use(pane)` now, or once the pane is mounted (hidden panes mount just after the first frame)."""
        try:
            pane = self.pane(pane_id)
        except NoMatches:
            pane = None
        if pane is None or not pane.ready:
            if attempts > 0:
                self.set_timer(0.02, lambda: self.with_pane(pane_id, use, attempts - 1))
            return
        use(pane)

    @property
    def panes_ready(self) -> bool:
        """Every pane mounted and set up (the hidden ones come just after the first frame)."""
        try:
            return all(self.pane(pane_id).ready for pane_id, _, _ in PANES)
        except NoMatches:
            return False

    def default_chat_model(self, names: list[str]) -> str:
        for preferred in PREFERRED_CHAT_MODELS:
            if preferred in names:
                return preferred
        return names[0]

    # ---- themes ------------------------------------------------------------------------------------------------
    def _remember_theme(self, theme: Theme) -> None:
        ui = self.config.ui
        if ui.theme == theme.name:
            return
        ui.theme = theme.name
        path = self.config.path
        if path is None:
            return
        try:
            update_ui(path, ui)
        except (ConfigError, OSError) as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")

    def action_set_theme(self, name: str) -> None:
        if name not in self.available_themes:
            self.notify(f"no theme named '{name}'", severity="error")
            return
        self.theme = name
        self.notify(f"theme {name}", timeout=3)

    # ---- help and palette --------------------------------------------------------------------------------------
    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        sections = [("Everywhere", binding_rows(self.BINDINGS) + list(EXTRA_GLOBAL_KEYS))]
        for _, title, path in PANES:
            rows = binding_rows(pane_class(path).BINDINGS)
            if rows:
                sections.append((title, rows))
        return sections

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_sections()))

    def palette_commands(self) -> Iterator[PaletteCommand]:
        for index, (pane_id, title, _) in enumerate(PANES, start=1):
            yield PaletteCommand(
                f"Show {title}",
                f"switch to the {title} pane (F{index})",
                lambda pane_id=pane_id: self.action_show_pane(pane_id),
            )
        for name in sorted(self.available_themes):
            if name.startswith("claw-") or name == self.config.ui.theme:
                yield PaletteCommand(
                    f"Theme: {name}",
                    "switch the colours; the choice is saved in the config",
                    lambda name=name: self.action_set_theme(name),
                )
        if hasattr(self, "action_toggle_governor"):
            yield PaletteCommand(
                "Toggle idle downclock",
                "the governor downclocks the GPU when idle (F6)",
                lambda: self.call_action("toggle_governor"),
            )
        if hasattr(self, "action_export_summary"):
            yield PaletteCommand(
                "Export summary",
                "write the session's efficiency summary (F7)",
                lambda: self.call_action("export_summary"),
            )
        pane_actions = (
            ("chat", "Clear chat", "start a new conversation with the selected model", "clear_chat"),
            ("chat", "Copy answer", "copy the last answer to the clipboard", "copy_answer"),
            ("models", "Rebuild model", "build the edited Modelfile under a new name", "rebuild"),
            ("models", "Revert Modelfile", "drop your edits to the open Modelfile", "revert"),
            ("models", "Load model", "load the selected model into memory", "load_model"),
            ("models", "Unload model", "unload the selected model now (keep_alive 0)", "unload_model"),
            ("agents", "New agent", "create an agent (a virtual model)", "new_agent"),
            ("requests", "Clear request filters", "show every request again", "clear_filters"),
        )
        for pane_id, name, help_text, action in pane_actions:
            yield PaletteCommand(name, help_text, lambda p=pane_id, a=action: self.run_pane_action(p, a))
        yield PaletteCommand("Help: keys", "every key of the console (?)", self.action_help)

    def call_action(self, name: str) -> None:
        """Run an app action that may be defined elsewhere (F6/F7 come with the governor and export)."""
        getattr(self, f"action_{name}")()

    def run_pane_action(self, pane_id: str, action: str) -> None:
        self.action_show_pane(pane_id)
        self.with_pane(pane_id, lambda pane: self.call_after_refresh(getattr(pane, f"action_{action}")))

    # ---- F6 / F7: the session's governor and summary export run off the UI thread --------------------------------
    def action_toggle_governor(self) -> None:
        self.run_worker(self._toggle_governor, thread=True, exclusive=True, group="governor")

    def _toggle_governor(self) -> None:
        try:
            status = self.session.toggle_governor()
        except Exception as exc:
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
            self.notify(
                f"{text} — dry run only: {status.get('reason')}", title="governor", severity="warning", timeout=8
            )
        else:
            self.notify(text, title="governor")

    def action_export_summary(self) -> None:
        self.run_worker(self._export_summary, thread=True, exclusive=True, group="export")

    def _export_summary(self) -> None:
        try:
            path = self.session.export_summary()
        except Exception as exc:
            self.call_from_thread(self.notify, f"export failed: {exc}", severity="error", timeout=10)
            return
        self.call_from_thread(self.notify, f"{path}\n(.md and .csv beside it)", title="summary written", timeout=10)
