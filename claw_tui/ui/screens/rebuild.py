"""Rebuild a model under a new name through /api/create, with the streamed progress; confirm before overwriting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, RichLog, Select, Static

from claw_tui.ollama.modelfile import Modelfile, ModelfileError, to_create_request
from claw_tui.ollama.parameters import QUANTIZE_TYPES
from claw_tui.ui.client import GatewayError
from claw_tui.ui.errors import ReportsWorkerErrors
from claw_tui.ui.screens import dialog_classes
from claw_tui.ui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from textual.worker import Worker


def suggested_name(model: str) -> str:
    """`qwen3:8b` → `qwen3-8b-custom`: a new name that does not touch the original."""
    base = model.removesuffix(":latest").replace(":", "-").replace("/", "-")
    return f"{base}-custom"


def same_model(a: str, b: str) -> bool:
    return a.removesuffix(":latest") == b.removesuffix(":latest")


class RebuildScreen(ReportsWorkerErrors, ModalScreen[str | None]):
    """Dismisses with the new model's name once /api/create said `success`, else None."""

    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    def __init__(self, modelfile: Modelfile, source: str, installed: list[str], changes: int) -> None:
        super().__init__()
        self.modelfile = modelfile
        self.source = source
        self.installed = installed
        self.changes = changes
        self.built: str | None = None
        self._worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="rebuild-dialog", classes=dialog_classes(self.app)):
            yield Static(f"Rebuild [b]{self.source}[/] under a new name", classes="dialog-title")
            lines = f"{self.changes} changed line{'s' if self.changes != 1 else ''}" if self.changes else "no changes"
            yield Static(
                f"FROM {self.modelfile.from_} · {lines} against the original · sent as /api/create", classes="hint"
            )
            with Horizontal(classes="dialog-row"):
                yield Label("new name")
                yield Input(suggested_name(self.source), id="rebuild-name", compact=True)
            with Horizontal(classes="dialog-row"):
                yield Label("quantize")
                yield Select([(q, q) for q in QUANTIZE_TYPES], prompt="keep as is", id="rebuild-quantize", compact=True)
            yield Static("", id="rebuild-check")
            yield ProgressBar(id="rebuild-progress", show_eta=False)
            yield RichLog(id="rebuild-log", markup=True, wrap=True, auto_scroll=True, min_width=20)  # wraps digests
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="rebuild-close", compact=True)
                yield Button("Build", id="rebuild-build", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#rebuild-progress", ProgressBar).display = False
        self.query_one("#rebuild-log", RichLog).display = False
        name = self.query_one("#rebuild-name", Input)
        name.focus()
        self._check_name(name.value)

    @property
    def new_name(self) -> str:
        return self.query_one("#rebuild-name", Input).value.strip()

    def _exists(self, name: str) -> bool:
        return any(same_model(name, existing) for existing in self.installed)

    @on(Input.Changed, "#rebuild-name")
    def _name_changed(self, event: Input.Changed) -> None:
        self._check_name(event.value.strip())

    def _check_name(self, name: str) -> None:
        check = self.query_one("#rebuild-check", Static)
        if not name:
            check.update("[red]type a name for the new model[/]")
        elif same_model(name, self.source):
            check.update(f"[yellow]! this replaces {self.source} itself[/]")
        elif self._exists(name):
            check.update(f"[yellow]! a model named {name} exists: building overwrites it[/]")
        else:
            check.update(f"[green]✓[/] {name} is a new name")

    def request_body(self) -> dict[str, Any] | None:
        quantize = self.query_one("#rebuild-quantize", Select).value
        try:
            return to_create_request(
                self.modelfile, self.new_name, quantize=None if quantize is Select.NULL else str(quantize)
            )
        except ModelfileError as exc:
            self.log_line(f"[red]✗ {exc}[/]")
            return None

    @on(Input.Submitted, "#rebuild-name")
    @on(Button.Pressed, "#rebuild-build")
    def action_build(self) -> None:
        if self.built is not None:
            self.dismiss(self.built)
            return
        body = self.request_body()
        if body is None:
            return
        name = self.new_name
        if self._exists(name) or same_model(name, self.source):

            def answered(yes: bool | None) -> None:
                if yes:
                    self.start(body)

            self.app.push_screen(
                ConfirmScreen(f"A model named [b]{name}[/] exists. Overwrite it?", yes="Overwrite"), answered
            )
            return
        self.start(body)

    def start(self, body: dict[str, Any]) -> None:
        self.query_one("#rebuild-build", Button).disabled = True
        self.query_one("#rebuild-name", Input).disabled = True
        self._worker = self.create(body)

    def log_line(self, text: str) -> None:
        log = self.query_one("#rebuild-log", RichLog)
        log.display = True
        log.write(text)

    @work(exclusive=True, group="rebuild", exit_on_error=False)
    async def create(self, body: dict[str, Any]) -> None:
        name = body["model"]
        progress = self.query_one("#rebuild-progress", ProgressBar)
        self.log_line(f"[b]creating {name}[/] from {body['from']}")
        last_status = None
        try:
            async for line in self.app.gateway.create(body):
                status = str(line.get("status", ""))
                if line.get("total"):
                    progress.display = True
                    progress.update(total=line["total"], progress=line.get("completed") or 0)
                if status and status != last_status:
                    self.log_line(status)
                    last_status = status
        except GatewayError as exc:
            self.log_line(f"[red]✗ {exc}[/]")
            self._allow_retry()
            return
        if last_status != "success":
            self.log_line("[red]✗ the backend ended without saying success[/]")
            self._allow_retry()
            return
        self.built = name
        self.installed.append(name)
        self.query_one("#rebuild-check", Static).update(f"[green]✓[/] built {name}: Done opens it")
        self.log_line(f"[green]✓ {name} is ready[/]")
        build = self.query_one("#rebuild-build", Button)
        build.label = "Done"
        build.disabled = False
        build.focus()

    def _allow_retry(self) -> None:
        self.query_one("#rebuild-build", Button).disabled = False
        self.query_one("#rebuild-name", Input).disabled = False

    @on(Button.Pressed, "#rebuild-close")
    def action_close(self) -> None:
        if self._worker is not None and self._worker.is_running:
            self._worker.cancel()
        self.dismiss(self.built)
