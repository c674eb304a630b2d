"""The Models pane: installed and loaded models, load/unload, and the Modelfile editor that rebuilds a model.

The selected model's Modelfile (from /api/show) opens in an editor validated as you type, with the failing line
marked; a typed parameter form edits the same text (a minimal change, comments kept); the diff shows what changed
against the original; a rebuild sends the result to /api/create under a new name and streams the progress.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Static, TabbedContent, TabPane, TextArea

from claw_tui.ollama.modelfile import ParseResult, diff, from_show_response, parse, replace_parameters, serialize
from claw_tui.ui import format as fmt
from claw_tui.ui.client import GatewayError
from claw_tui.ui.panes.base import Pane
from claw_tui.ui.screens.confirm import ConfirmScreen
from claw_tui.ui.screens.rebuild import RebuildScreen, same_model
from claw_tui.ui.widgets.modelfile_editor import ModelfileEditor
from claw_tui.ui.widgets.parameter_form import ParameterForm
from claw_tui.ui.widgets.steady_table import SteadyTable

if TYPE_CHECKING:
    from textual.timer import Timer
    from textual.widget import Widget

    from claw_tui.ollama.parameters import ParamValue

POLL_S = 2.0
VALIDATE_DELAY_S = 0.15
MAX_PROBLEMS_SHOWN = 3
INSTALLED_COLUMNS = ("model", "size", "params", "quant", "in memory")
LOADED_COLUMNS = ("loaded", "size", "VRAM", "context", "expires")
EVENT_COLUMNS = ("time", "event", "model", "status", "took", "energy")
EVENTS_SHOWN = 50


def seconds_until(rfc3339: str | None, now: float) -> float | None:
    if not rfc3339:
        return None
    try:
        # Python before 3.11 cannot read nanoseconds; cut to microseconds.
        head, dot, rest = rfc3339.partition(".")
        if dot:
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits) :]
            rfc3339 = f"{head}.{digits[:6]}{zone}"
        moment = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() - now


def countdown(seconds: float | None) -> str:
    return fmt.countdown(seconds)


def vram_share(model: dict[str, Any]) -> str:
    size = model.get("size") or 0
    if not size:
        return "—"
    share = (model.get("size_vram") or 0) / size * 100
    return f"{share:.0f}% GPU" if share >= 99.5 else f"{share:.0f}% GPU / {100 - share:.0f}% CPU"


def diff_text(lines: list[str]) -> Text:
    if not lines:
        return Text("No changes against the original.", style="dim")
    text = Text()
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = "dim"
        text.append(line + "\n", style=style)
    return text


def changed_lines(lines: list[str]) -> tuple[int, int]:
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    return added, removed


def problems_text(result: ParseResult) -> Text:
    if not result.diagnostics:
        return Text.assemble(("✓ ", "bold green"), ("valid: Ollama would accept this Modelfile", "dim"))
    text = Text()
    for diagnostic in result.diagnostics[:MAX_PROBLEMS_SHOWN]:
        if text:
            text.append("\n")
        mark, style = ("✗", "bold red") if diagnostic.is_error else ("!", "bold yellow")
        where = f"line {diagnostic.line}" if diagnostic.line > 0 else "file"
        text.append(f"{mark} ", style=style)
        text.append(f"{where}: ", style="bold")
        text.append(diagnostic.message)
        if diagnostic.suggestion:
            text.append(f" — {diagnostic.suggestion}", style="italic")
    extra = len(result.diagnostics) - MAX_PROBLEMS_SHOWN
    if extra > 0:
        text.append(f"\n… and {extra} more", style="dim")
    return text


class ModelsPane(Pane):
    main_widget = "#models-installed"
    HELP_KEYS = (
        ("Enter", "open the model under the cursor: its Modelfile, parameters and diff"),
        ("tab", "from the lists to the actions, the editor and its Modelfile / Parameters / Diff tabs"),
    )
    BINDINGS = [
        Binding(
            "l",
            "load_model",
            "Load",
            show=True,
            tooltip="Load the model under the cursor (else the open one)",
        ),
        Binding(
            "u",
            "unload_model",
            "Unload",
            show=True,
            tooltip="Unload the model under the cursor (else the open one) now (keep_alive 0)",
        ),
        Binding(
            "ctrl+r",
            "rebuild",
            "Rebuild",
            show=True,
            tooltip="Rebuild: the edited Modelfile under a new name (/api/create)",
        ),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_poll: float | None = None
        self._polling = False
        self._building = False
        self.installed: list[dict[str, Any]] = []
        self.loaded: list[dict[str, Any]] = []
        self.current: str | None = None  # the model whose Modelfile is in the editor
        self.original_text = ""
        self.result: ParseResult | None = None
        self.backend_error: str | None = None
        self._pending_point: str | None = None
        self._pending_open: str | None = None  # a model just built, opened once the backend lists it
        self._diff_lines: list[str] = []
        self._validate_timer: Timer | None = None
        self._events_shown: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="models-empty", classes="hint")
        with Horizontal(id="models-lists"):
            yield SteadyTable(id="models-installed", cursor_type="row", zebra_stripes=True)
            yield SteadyTable(id="models-loaded", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="models-actions", classes="bar"):
            yield Static("", id="models-current")
            yield Button("Load", id="models-load", compact=True)
            yield Button("Unload", id="models-unload", compact=True)
            yield Button("Revert", id="models-revert", compact=True)
            yield Button("Rebuild…", id="models-rebuild", variant="primary", compact=True)
        with TabbedContent(id="models-tabs", classes="form"):
            with TabPane("Modelfile", id="models-tab-modelfile"):
                yield ModelfileEditor(
                    id="modelfile-editor", placeholder="Select a model and press Enter to open its Modelfile"
                )
                yield Static("", id="modelfile-problems")
            with TabPane("Parameters", id="models-tab-parameters"):
                yield ParameterForm(id="parameter-form")
            with TabPane("Diff", id="models-tab-diff"), VerticalScroll(id="modelfile-diff-box"):
                yield Static("", id="modelfile-diff")
            with TabPane("Events", id="models-tab-events"):
                yield SteadyTable(id="models-events", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table_id, columns in (
            ("#models-installed", INSTALLED_COLUMNS),
            ("#models-loaded", LOADED_COLUMNS),
            ("#models-events", EVENT_COLUMNS),
        ):
            table = self.query_one(table_id, DataTable)
            for column in columns:
                table.add_column(column, key=column)
        self.query_one("#models-empty", Static).display = False
        self._show_validation(None)

    # ---- polling the backend ----------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        now = self.app.clock()
        due = self._last_poll is None or now - self._last_poll >= POLL_S
        if due and not self._polling and not self._building:
            self._last_poll = now
            self.poll_backend()
        self._fill_loaded()
        self._fill_events()

    def poll_now(self) -> None:
        self._last_poll = None
        if not self._polling:
            self._last_poll = self.app.clock()
            self.poll_backend()

    @work(exclusive=True, group="models-poll", exit_on_error=False)
    async def poll_backend(self) -> None:
        self._polling = True
        try:
            tags = await self.app.gateway.tags()
            loaded = await self.app.gateway.ps()
        except GatewayError as exc:
            self.backend_error = str(exc)
            self._update_current()
            self._show_empty()
            return
        finally:
            self._polling = False
        self.backend_error = None
        self.installed = [t for t in tags if t.get("name") and (t.get("details") or {}).get("format") != "agent"]
        self.loaded = [m for m in loaded if m.get("name")]
        self._fill_installed()
        self._fill_loaded()
        self._show_empty()
        if self._pending_point is not None:
            self._point_at(self._pending_point)
        if self._pending_open is not None:
            # Open what the backend really stored (under its full name, e.g. with ":latest") as the new original.
            name = next((m["name"] for m in self.installed if same_model(m["name"], self._pending_open)), None)
            if name is not None:
                self._pending_open = None
                self.load_modelfile(name)
        if self.current is None and self.installed:
            names = [m["name"] for m in self.installed]
            self.open_model(self.app.default_chat_model(sorted(names)))

    def _fill_installed(self) -> None:
        table = self.query_one("#models-installed", DataTable)
        loaded = {m["name"] for m in self.loaded}
        rows = {}
        for model in sorted(self.installed, key=lambda m: m["name"]):
            details = model.get("details") or {}
            rows[model["name"]] = (
                model["name"],
                fmt.bytes_size(model.get("size")),
                details.get("parameter_size") or "—",
                details.get("quantization_level") or "—",
                Text("● loaded", style="green") if model["name"] in loaded else Text("—", style="dim"),
            )
        if sync_table(table, INSTALLED_COLUMNS, rows):
            table.sort("model")  # a model built or pulled meanwhile takes its place in the order

    def _show_empty(self) -> None:
        """No model listed: say why, in the gateway's own words when the backend is down."""
        empty = self.query_one("#models-empty", Static)
        if self.backend_error:
            empty.update(
                Text.assemble(("No models: the backend cannot be listed.\n", "bold red"), (self.backend_error, ""))
            )
        elif not self.installed:
            empty.update("The backend has no models yet: `ollama pull qwen3:8b` (or any model) and they show here.")
        _show(empty, bool(self.backend_error) or not self.installed)
        _show(self.query_one("#models-lists"), not self.backend_error or bool(self.installed))

    def _fill_events(self) -> None:
        """Loads, unloads and warm-ups (newest first) with their time, duration and the energy of a load."""
        events = self.app.model.model_events
        signature = (len(events), events[-1].get("id") if events else None)
        if self._events_shown == signature:
            return
        self._events_shown = signature
        rows: dict[str, tuple[Any, ...]] = {}
        for data in reversed(events[-EVENTS_SHOWN:]):
            key = str(data.get("id") or len(rows))
            energy = data.get("energy_j") or 0.0
            arrival = data.get("t_arrival")
            rows[key] = (
                time.strftime("%H:%M:%S", time.localtime(arrival)) if arrival else "—",
                str(data.get("kind") or "—"),
                str(data.get("model") or "—"),
                Text(str(data.get("status") or "—"), style=fmt.STATUS_STYLE.get(data.get("status"), "")),
                fmt.right(fmt.duration(data.get("duration_ms"))),
                fmt.right(fmt.joules(energy) if energy else "—"),
            )
        table = self.query_one("#models-events", DataTable)
        if sync_table(table, EVENT_COLUMNS, rows):
            table.sort("time", reverse=True)

    def _fill_loaded(self) -> None:
        table = self.query_one("#models-loaded", DataTable)
        now = time.time()  # expires_at is the backend's wall clock
        rows = {}
        for model in self.loaded:
            rows[model["name"]] = (
                model["name"],
                fmt.bytes_size(model.get("size")),
                vram_share(model),
                f"{model['context_length']:,}" if model.get("context_length") else "—",
                countdown(seconds_until(model.get("expires_at"), now)),
            )
        sync_table(table, LOADED_COLUMNS, rows)

    # ---- which model -------------------------------------------------------------------------------------------
    def selected_model(self) -> str | None:
        """The model under the cursor of the focused list; the open model when neither list has the focus."""
        for table in self.query("#models-installed, #models-loaded").results(DataTable):
            if table.has_focus and table.row_count:
                return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.current

    @on(DataTable.RowSelected, "#models-installed")
    def _installed_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_model(event.row_key.value)

    @on(DataTable.RowSelected, "#models-loaded")
    def _loaded_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_model(event.row_key.value)

    @property
    def dirty(self) -> bool:
        return self.current is not None and self.editor.text != self.original_text

    @property
    def editor(self) -> ModelfileEditor:
        return self.query_one("#modelfile-editor", ModelfileEditor)

    def open_model(self, name: str | None) -> None:
        if not name or (name == self.current and not self.dirty):
            return
        if self.dirty:

            def answered(yes: bool | None) -> None:
                if yes:
                    self.load_modelfile(name)

            self.app.push_screen(
                ConfirmScreen(
                    f"Discard your edits to the Modelfile of [b]{self.current}[/] and open [b]{name}[/]?", yes="Discard"
                ),
                answered,
            )
            return
        self.load_modelfile(name)

    @work(exclusive=True, group="models-show", exit_on_error=False)
    async def load_modelfile(self, name: str) -> None:
        try:
            show = await self.app.gateway.show(name)
        except GatewayError as exc:
            self.notify(f"cannot read the Modelfile of {name}: {exc}", severity="error")
            return
        try:
            text = serialize(from_show_response(show, model_name=name))
        except ValueError as exc:  # a value no Modelfile can hold: show the server's own text instead
            text = str(show.get("modelfile") or "")
            self.notify(f"{name}: {exc}", severity="warning")
        self.current = name
        self.original_text = text
        self.editor.load_text(text)
        # From the top: FROM says what the model is built on; the parameters follow it.
        self.editor.cursor_location = (0, 0)
        self.editor.scroll_home(animate=False)
        self.validate_now()
        self._point_at(name)

    def _point_at(self, name: str) -> None:
        """Put the installed table's cursor on this model (once its row exists)."""
        table = self.query_one("#models-installed", DataTable)
        if name in table.rows:
            table.move_cursor(row=table.get_row_index(name))
            self._pending_point = None
        else:
            self._pending_point = name

    # ---- validation, form and diff ---------------------------------------------------------------------------
    @on(TextArea.Changed, "#modelfile-editor")
    def _editor_changed(self) -> None:
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(VALIDATE_DELAY_S, self.validate_now)

    def validate_now(self) -> None:
        self._validate_timer = None
        if self.current is None:
            self._show_validation(None)
            return
        self.result = parse(self.editor.text)
        self._show_validation(self.result)

    def _show_validation(self, result: ParseResult | None) -> None:
        problems = self.query_one("#modelfile-problems", Static)
        form = self.query_one("#parameter-form", ParameterForm)
        if result is None:
            problems.update("")
            form.disabled = True
            form.set_note("Open a model first.")
            self.query_one("#modelfile-diff", Static).update(diff_text([]))
            self._diff_lines = []
            self._update_current()
            return
        self.editor.set_diagnostics(result.diagnostics)
        problems.update(problems_text(result))
        problems.set_class(bool(result.errors), "-errors")
        if result.errors:
            form.disabled = True
            form.set_note(
                f"[red]Fix the Modelfile first[/] (line {result.errors[0].line}): the form edits a valid "
                "Modelfile only."
            )
        else:
            form.disabled = False
            form.set_note("")
            form.set_values(result.modelfile.parameters)
        # The problems panel changes height: keep the line being edited in view.
        self.call_after_refresh(self.editor.scroll_cursor_visible)
        lines = diff(self.original_text, self.editor.text, a_label=f"{self.current} (original)", b_label="edited")
        self.query_one("#modelfile-diff", Static).update(diff_text(lines))
        self._diff_lines = lines
        self._update_current()

    def _update_current(self) -> None:
        current = self.query_one("#models-current", Static)
        if self.backend_error:
            current.update(Text(f"✗ {self.backend_error}", style="red"))
            return
        if self.current is None:
            current.update(Text("no model open", style="dim"))
            return
        text = Text.assemble((self.current, "bold"))
        added, removed = changed_lines(self._diff_lines)
        if added or removed:
            text.append(f"  edited +{added} −{removed}", style="yellow")
        result = self.result
        if result is not None and result.errors:
            text.append(f"  ✗ {len(result.errors)} error{'s' if len(result.errors) != 1 else ''}", style="red")
        elif result is not None and result.warnings:
            text.append(f"  ! {len(result.warnings)} warning{'s' if len(result.warnings) != 1 else ''}", style="yellow")
        else:
            text.append("  ✓ valid", style="green")
        current.update(text)

    @on(ParameterForm.Changed)
    def _parameter_changed(self, event: ParameterForm.Changed) -> None:
        event.stop()
        result = parse(self.editor.text)
        if result.errors or self.current is None:
            return
        if result.modelfile.parameters.get(event.name) == event.value:
            return
        try:
            value = cast("ParamValue | list[str] | None", event.value)  # what parse_field makes of a field
            text = serialize(replace_parameters(result.modelfile, **{event.name: value}))
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self._replace_text(text)

    def _replace_text(self, text: str) -> None:
        """Replace the editor's text as one undoable edit, keeping the cursor's line."""
        editor = self.editor
        row, column = editor.cursor_location
        editor.replace(text, editor.document.start, editor.document.end, maintain_selection_offset=False)
        last = editor.document.line_count - 1
        editor.cursor_location = (min(row, last), column)

    # ---- actions -------------------------------------------------------------------------------------------------
    def action_load_model(self) -> None:
        if name := self.selected_model():
            self.load_or_unload(name, load=True)

    def action_unload_model(self) -> None:
        if name := self.selected_model():
            self.load_or_unload(name, load=False)

    @on(Button.Pressed, "#models-load")
    def _load_pressed(self) -> None:
        """The buttons sit beside the open model's name: they act on that model."""
        if self.current:
            self.load_or_unload(self.current, load=True)

    @on(Button.Pressed, "#models-unload")
    def _unload_pressed(self) -> None:
        if self.current:
            self.load_or_unload(self.current, load=False)

    @work(group="models-load", exit_on_error=False)
    async def load_or_unload(self, name: str, load: bool) -> None:
        verb = "loading" if load else "unloading"
        self.notify(f"{verb} {name}…")
        started = time.monotonic()
        try:
            if load:
                await self.app.gateway.preload(name)
            else:
                await self.app.gateway.unload(name)
        except GatewayError as exc:
            self.notify(f"{verb} {name} failed: {exc}", severity="error")
            return
        took = time.monotonic() - started
        self.notify(f"{name} loaded in {took:.1f} s" if load else f"{name} unloaded")
        self.poll_now()

    @on(Button.Pressed, "#models-revert")
    def action_revert(self) -> None:
        if not self.dirty:
            self.notify("Nothing to revert", severity="information")
            return
        self._replace_text(self.original_text)
        self.notify(f"Modelfile of {self.current} reverted")

    @on(Button.Pressed, "#models-rebuild")
    def action_rebuild(self) -> None:
        if self.current is None:
            self.notify("Open a model first (Enter on a row)", severity="warning")
            return
        result = parse(self.editor.text)
        if result.errors:
            first = result.errors[0]
            self.notify(
                f"The Modelfile has {len(result.errors)} error(s); line {first.line}: {first.message}",
                severity="error",
                timeout=8,
            )
            self.query_one("#models-tabs", TabbedContent).active = "models-tab-modelfile"
            self.editor.cursor_location = (max(first.line - 1, 0), 0)
            self.editor.focus()
            return
        added, removed = changed_lines(diff(self.original_text, self.editor.text))
        screen = RebuildScreen(result.modelfile, self.current, [m["name"] for m in self.installed], added + removed)
        self._building = True
        self.app.push_screen(screen, self._rebuilt)

    def _rebuilt(self, name: str | None) -> None:
        self._building = False
        if name is None:
            return
        self.notify(f"{name} is ready: select it in Chat or send requests to it", title="model built")
        self._pending_open = name
        self.poll_now()


def _show(widget: Widget, visible: bool) -> None:
    if widget.display != visible:
        widget.display = visible


def sync_table(table: DataTable[Any], columns: tuple[str, ...], rows: dict[str, tuple[Any, ...]]) -> bool:
    """Make the table show `rows` (keyed by name), changing only the cells that differ; the cursor stays put.
    True when a row was added (new rows come last: the caller sorts when the order matters)."""
    added = False
    for row_key in list(table.rows):
        if row_key.value not in rows:
            table.remove_row(row_key)
    for key, values in rows.items():
        if key not in table.rows:
            table.add_row(*values, key=key)
            added = True
            continue
        for column, value in zip(columns, values):
            if str(table.get_cell(key, column)) != str(value):
                table.update_cell(key, column, value, update_width=True)
    return added
