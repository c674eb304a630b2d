"""The claw console: five panes over one console source (a Session in this process, or a `claw serve`).

The panes never touch the core: they render the console's model, which only the events of the source change
(turned into `SourceEvents` messages on the console's own thread); commands (governor, agents, export) go through
the source too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen
from textual.theme import Theme
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Select, Static, TabbedContent, TabPane, TextArea

from claw_tui.config import ConfigError, update_ui
from claw_tui.console.events import RESYNC, ConsoleEvent
from claw_tui.console.model import ConsoleModel
from claw_tui.console.source import ConsoleSource, SourceError
from claw_tui.ui import format
from claw_tui.ui.client import GatewayClient
from claw_tui.ui.commands import ClawCommands, PaletteCommand
from claw_tui.ui.errors import ReportsWorkerErrors
from claw_tui.ui.panes.by_path import pane_class
from claw_tui.ui.screens import SHORT_HEIGHT
from claw_tui.ui.screens.help import EXTRA_GLOBAL_KEYS, HelpScreen, binding_rows
from claw_tui.ui.startup import SessionStarter
from claw_tui.ui.themes import load_themes

if TYPE_CHECKING:  # the core is imported by whoever starts it; the console's first frame does not wait for it
    from textual.timer import Timer
    from textual.worker import WorkType

    from claw_tui.config import Config
    from claw_tui.session import Session
    from claw_tui.ui.panes.base import Pane

log = logging.getLogger(__name__)

STARTING = "Starting claw: the gateway, the backends and the GPU telemetry…"
ATTACHING = "Attaching to the claw service at {address}…"
CONNECTION = "connection"

# (id, title, class); a pane's module is imported when the pane is first composed.
PANES = (
    ("power", "Power", "claw_tui.ui.panes.power:PowerPane"),
    ("chat", "Chat", "claw_tui.ui.panes.chat:ChatPane"),
    ("models", "Models", "claw_tui.ui.panes.models:ModelsPane"),
    ("agents", "Agents", "claw_tui.ui.panes.agents:AgentsPane"),
    ("requests", "Requests", "claw_tui.ui.panes.requests:RequestsPane"),
    ("batch", "Batch", "claw_tui.ui.panes.batch:BatchPane"),
)
PANE_KEYS = ("f1", "f2", "f3", "f4", "f5", "f8")  # F6 and F7 are the governor and the export

PREFERRED_CHAT_MODELS = ("qwen3:8b", "llama3.2:3b")


HEADER_EVENTS = frozenset({"governor", "backends"})


def typing_into(widget: Widget | None) -> bool:
    """True when the focus is in a text field, a form (class `form`) or a dialog: keys there are input."""
    if widget is None:
        return False
    for node in (widget, *widget.ancestors):
        if isinstance(node, (Input, TextArea, Select, ModalScreen)) or node.has_class("form"):
            return True
    return False


class SourceEvents(Message):
    """Events from the console source, in order (posted from whichever thread the source delivers on)."""

    def __init__(self, events: tuple[ConsoleEvent, ...] = ()) -> None:
        super().__init__()
        self.events = events


class ClawApp(ReportsWorkerErrors, App[None]):
    CSS_PATH = ["claw.tcss", "chat.tcss"]
    TITLE = "claw"
    COMMANDS = App.COMMANDS | {ClawCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    # Dialogs tighten their spacing on 24-line terminals.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_HEIGHT, "-roomy")]
    BINDINGS = [
        # The tabs carry the F-keys in their labels, so the footer keeps its room for the pane's own keys.
        *(
            Binding(key, f"show_pane('{pane_id}')", title, show=False, priority=True)
            for key, (pane_id, title, _) in zip(PANE_KEYS, PANES)
        ),
        *(
            Binding(str(i), f"digit_pane('{pane_id}')", title, show=False)
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
        source: ConsoleSource | None = None,
        starter: SessionStarter | None = None,
        config: Config | None = None,
        refresh_hz: float | None = None,
        clock: Callable[[], float] | None = None,
        gateway_label: str | None = None,
        exit_on_signals: bool = False,
    ) -> None:
        """Over a running `session`, over a `source` (e.g. a RemoteSource attached to `claw serve`), or over a
        session that `starter` starts once the first frame is on the screen. `config` is this console's own (its
        theme and refresh rate); it defaults to the session's or the starter's."""
        super().__init__()
        if session is None and starter is None and source is None:
            raise ValueError("ClawApp needs a session, a source or a starter")
        if session is not None:
            from claw_tui.console.inprocess import InProcessSource

            source = InProcessSource(session)
        self.source: ConsoleSource | None = source
        self.starter = starter
        config = config or (session.config if session is not None else starter.config if starter else None)
        if config is None:
            from claw_tui.config import Config

            config = Config()
        self.config = config
        self.model = ConsoleModel()
        self._clock = clock
        self.gateway_label = gateway_label
        self.refresh_hz = refresh_hz if refresh_hz is not None else self.config.ui.refresh_hz
        self._refresh_timer: Timer | None = None
        self._theme_notice: str | None = None
        self._events_ready = False
        self.exit_on_signals = exit_on_signals
        self.ended_by: str | None = None  # the signal that ended the console
        self._reloading = False
        self.connected = True
        self.loaded = False
        if session is not None:
            # A running session: subscribe, then read its state now, so the first frame already shows it.
            assert isinstance(self.source, InProcessSource)  # made from the session above
            self.source.start(self._wake)
            self.model.load(self.source.load_now())
            self.loaded = True
        self.gateway = self._gateway_client()
        # Before the first frame: a theme set after mounting restyles every widget (a visible delay).
        for theme in load_themes():
            self.register_theme(theme)
        configured = self.config.ui.theme
        if configured in self.available_themes:
            self.theme = configured
        elif configured:
            self._theme_notice = f"theme '{configured}' not found; using {self.theme}"

    def _gateway_client(self) -> GatewayClient:
        # The console is a client of the gateway like any other; in-process with auth on, it carries the session's
        # internal token, attached the token it was given.
        if self.source is None or not self.loaded:
            return GatewayClient("")
        return GatewayClient(self.source.gateway_url, self.source.gateway_headers())

    @property
    def clock(self) -> Callable[[], float]:
        if self._clock is not None:
            return self._clock
        return self.source.clock if self.source is not None else time.time

    @property
    def gateway_url(self) -> str:
        return self.source.gateway_url if self.source is not None else ""

    @property
    def demo(self) -> bool:
        return bool(self.source is not None and self.source.demo)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with TabbedContent(id="panes", initial="power"):
            for index, (pane_id, title, path) in enumerate(PANES, start=1):
                with TabPane(f"[dim]{PANE_KEYS[index - 1].upper()}[/] {title}", id=pane_id):
                    if not self.loaded:
                        if index == 1:
                            yield Static(self._waiting_text(), id="starting", classes="hint")
                    else:  # composed with the app: no pane is ever taken down half-mounted
                        yield pane_class(path)(id=f"{pane_id}-pane")
        yield Footer(compact=True)

    def _handle_signals(self) -> None:
        """A hang-up (the SSH session dropped), SIGTERM or SIGINT ends the console like ctrl+q does."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._signalled, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal here
                return

    def _signalled(self, signum: int) -> None:
        import signal

        self.ended_by = signal.Signals(signum).name
        self._exit_when_settled()

    async def action_quit(self) -> None:
        self._exit_when_settled()

    def _exit_when_settled(self, attempts: int = 100) -> None:
        """Exit once the hidden panes have finished mounting (a pane taken down half-mounted raises in its
        on_mount); give up waiting after about five seconds."""
        if not self.loaded or self.panes_ready or attempts <= 0:
            self.exit()
        else:
            self.set_timer(0.05, lambda: self._exit_when_settled(attempts - 1))

    def _waiting_text(self) -> str:
        if self.starter is not None:
            return STARTING
        return ATTACHING.format(address=getattr(self.source, "address", self.gateway_url))

    def on_mount(self) -> None:
        if self._theme_notice:
            self.notify(self._theme_notice, severity="warning")
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.exit_on_signals:
            self._handle_signals()
        if self.loaded:
            self._events_ready = True
            self._source_running()
            self._drain_events()
        elif self.starter is not None:
            self.sub_title = "starting the gateway and telemetry…"
            start: WorkType[None] = self._start_session
            self.run_worker(start, thread=True, group="session-start", exit_on_error=False)
        else:
            self.sub_title = f"attaching to {getattr(self.source, 'address', '')}…"
            attach: WorkType[None] = self._attach_to_service
            self.run_worker(attach, group="attach", exit_on_error=False)

    def _start_session(self) -> None:
        assert self.starter is not None  # this worker runs only for a starter
        session = self.starter.start()
        if session is None:
            self.call_from_thread(self.exit, return_code=1)
            return
        from claw_tui.console.inprocess import InProcessSource

        self.source = InProcessSource(session)
        begin: Callable[[], Awaitable[None] | None] = self._begin
        self.call_from_thread(begin)

    async def _attach_to_service(self) -> None:
        """Attached: read the service's state (the events follow from there on), then show the panes."""
        await self._begin()

    async def _begin(self) -> None:
        self._events_ready = True
        assert self.source is not None  # given (attached) or just made by _start_session
        self.source.start(self._wake)
        try:
            state = await self.source.load()
        except SourceError as exc:
            self.exit(return_code=1, message=f"claw: {exc}")
            return
        self.model.load(state)
        self.loaded = True
        await self.gateway.aclose()
        self.gateway = self._gateway_client()
        await self.query_one("#starting").remove()
        # One pane after the other, each awaited: the first shows while the others mount, and every way out
        # (ctrl+q, signals) waits until they are all mounted (see _exit_when_settled).
        for pane_id, _, path in PANES:
            await self.query_one(f"#{pane_id}", TabPane).mount(pane_class(path)(id=f"{pane_id}-pane"))
        self._source_running()
        self._drain_events()

    def _source_running(self) -> None:
        self.refresh_bindings()  # F6 and F7 are available from here on
        self.update_header()
        for notice in getattr(self.source, "notices", []):
            self.notify(notice, severity="warning", timeout=10)
        if self.refresh_hz > 0:
            self._refresh_timer = self.set_interval(1 / self.refresh_hz, self.refresh_active_pane)

    async def on_unmount(self) -> None:
        await self.gateway.aclose()
        if self.source is not None:
            await self.source.stop()

    # ---- events from the source ------------------------------------------------------------------------------------
    def _wake(self) -> None:
        """Called by the source, from any thread, when events wait."""
        if self._events_ready:
            self.post_message(SourceEvents())

    def on_source_events(self, message: SourceEvents) -> None:
        self._drain_events()

    def _drain_events(self) -> None:
        if self.source is None:
            return
        header_news = False
        for event in self.source.drain():
            if event.kind == RESYNC:
                self._reload()
            elif event.kind == CONNECTION:
                self._connection_changed(event.data)
            else:
                self.model.apply(event)
                header_news = header_news or event.kind in HEADER_EVENTS
        if header_news and self.loaded:
            self.update_header()  # the header says the governor's and backends' state as soon as it changes

    def _reload(self) -> None:
        """Events were lost (a slow console, or the service restarted): read the whole state again."""
        if not self._reloading:
            self._reloading = True
            read: WorkType[None] = self._read_state_again
            self.run_worker(read, group="resync", exit_on_error=False)

    async def _read_state_again(self) -> None:
        assert self.source is not None  # a resync event came from it
        try:
            self.model.load(await self.source.load())
        except SourceError as exc:
            log.warning("re-reading the state failed: %s", exc)
        finally:
            self._reloading = False
        self.refresh_active_pane()

    def _connection_changed(self, data: dict[str, Any]) -> None:
        up = data.get("state") == "up"
        if up == self.connected:
            return
        self.connected = up
        self.update_header()
        if up:
            self.notify("the claw service is back: the panes are live again", title="attached", timeout=5)
        else:
            self.notify(
                f"lost the claw service ({data.get('message') or 'no answer'}); the panes keep what they had, "
                "and the console reconnects when it is back",
                title="attached",
                severity="warning",
                timeout=10,
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "digit_pane":  # a digit typed into a field or form is text, never a pane switch
            return not typing_into(self.focused)
        # Until the source runs there is no governor to toggle and nothing to export.
        return not (not self.loaded and action in ("toggle_governor", "export_summary"))

    def update_header(self) -> None:
        """Where the console is attached, the governor in words, and each backend that is not up with its reason;
        shorter words on a narrow terminal."""
        narrow = self.size.width < 100
        parts = ["DEMO"] if self.demo else []
        label = self.source.label if self.source is not None else ""
        if self.gateway_label and self.source is not None and self.source.mode == "in-process":
            label = f"in-process {self.gateway_label}" if narrow else f"in-process · gateway {self.gateway_label}"
        parts.append(label + (" · DISCONNECTED, reconnecting" if not self.connected else ""))
        parts.append(("gov " if narrow else "governor ") + format.governor_words(self.model.governor))
        down = [b for b in self.model.backends if b.get("state") not in (None, "up")]
        parts += ["backend " + format.backend_words(b) for b in down]
        sub_title = " · ".join(part for part in parts if part)
        if sub_title != self.sub_title:
            self.sub_title = sub_title

    # ---- panes -------------------------------------------------------------------------------------------------
    def active_pane(self) -> Pane:
        return self.pane(self.tabs.active)

    # The panes live on the first screen: query there, not on whatever dialog is on top.
    @property
    def tabs(self) -> TabbedContent:
        return self.screen_stack[0].query_one("#panes", TabbedContent)

    def pane(self, pane_id: str) -> Pane:
        return cast("Pane", self.screen_stack[0].query_one(f"#{pane_id}-pane"))

    def refresh_active_pane(self) -> None:
        if not self.loaded or not self.screen_stack:  # not started, or closing
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

    def action_digit_pane(self, pane_id: str) -> None:
        self.action_show_pane(pane_id)

    def with_pane(self, pane_id: str, use: Callable[[Pane], object], attempts: int = 20) -> None:
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
            pane = pane_class(path)
            rows = list(getattr(pane, "HELP_KEYS", ())) + binding_rows(pane.BINDINGS)  # keys its widgets take
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
                f"switch to the {title} pane ({PANE_KEYS[index - 1].upper()})",
                partial(self.action_show_pane, pane_id),
            )
        for name in sorted(self.available_themes):
            if name.startswith("claw-") or name == self.config.ui.theme:
                yield PaletteCommand(
                    f"Theme: {name}",
                    "switch the colours; the choice is saved in the config",
                    partial(self.action_set_theme, name),
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
            ("chat", "New conversation", "start a new conversation with the selected model", "new_conversation"),
            ("chat", "Open conversation", "reopen a saved conversation", "open_conversations"),
            ("chat", "Regenerate answer", "ask for the last answer again", "regenerate"),
            ("chat", "Export conversation", "write the conversation as Markdown", "export_conversation"),
            ("chat", "Copy answer", "copy the last answer to the clipboard", "copy_answer"),
            ("models", "Rebuild model", "build the edited Modelfile under a new name", "rebuild"),
            ("models", "Revert Modelfile", "drop your edits to the open Modelfile", "revert"),
            ("models", "Load model", "load the selected model into memory", "load_model"),
            ("models", "Unload model", "unload the selected model now (keep_alive 0)", "unload_model"),
            ("agents", "New agent", "create an agent (a virtual model)", "new_agent"),
            ("requests", "Clear request filters", "show every request again", "clear_filters"),
        )
        for pane_id, name, help_text, action in pane_actions:
            yield PaletteCommand(name, help_text, partial(self.run_pane_action, pane_id, action))
        yield PaletteCommand("Help: keys", "every key of the console (?)", self.action_help)

    def call_action(self, name: str) -> None:
        """Run an app action that may be defined elsewhere (F6/F7 come with the governor and export)."""
        getattr(self, f"action_{name}")()

    def run_pane_action(self, pane_id: str, action: str) -> None:
        self.action_show_pane(pane_id)
        self.with_pane(pane_id, lambda pane: self.call_after_refresh(getattr(pane, f"action_{action}")))

    # ---- F6 / F7: commands through the source, off the UI's work -------------------------------------------------
    def action_toggle_governor(self) -> None:
        toggle: WorkType[None] = self._toggle_governor
        self.run_worker(toggle, exclusive=True, group="governor", exit_on_error=False)

    async def _toggle_governor(self) -> None:
        if self.source is None or not self.loaded:  # the palette runs actions without check_action
            self.notify("the console is still starting: try again in a moment", severity="warning")
            return
        try:
            enable = not self.model.governor.get("enabled", False)
            status = await self.source.set_governor(enable)
        except SourceError as exc:
            self.notify(f"governor: {exc}", severity="error")
            return
        self._governor_toggled(status)

    def _governor_toggled(self, status: dict[str, Any]) -> None:
        self.model.governor = status
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
        export: WorkType[None] = self._export_summary
        self.run_worker(export, exclusive=True, group="export", exit_on_error=False)

    async def _export_summary(self) -> None:
        if self.source is None or not self.loaded:  # the palette runs actions without check_action
            self.notify("the console is still starting: try again in a moment", severity="warning")
            return
        try:
            path = await self.source.export_summary()
        except SourceError as exc:
            self.notify(f"export failed: {exc}", severity="error", timeout=10)
            return
        self.notify(f"{path}\n(.md and .csv beside it)", title="summary written", timeout=10)
