"""Create or edit one agent: name, model, system prompt, options, token limits, fallback.

Everything is checked before the form closes: names (unique, no blanks, not hiding a real model), integers, and
options with the rules the config applies when it saves them (a wrong type would fail every request; an unknown
or deprecated name, or a fraction for a whole number, is refused: Ollama would ignore or cut it).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Static, TextArea

from claw_tui.config import AgentConfig
from claw_tui.config.toml_text import toml_pair
from claw_tui.ollama.parameters import validate_options
from claw_tui.ui.screens import dialog_classes

# Ollama only ignores or cuts these, but claw's config refuses to save them: the form does the same.
REFUSED_OPTION_CODES = ("unknown-parameter", "deprecated-parameter", "truncated-value")


def on_backend(name: str, models: list[str]) -> bool:
    """`llama3.2-pirate` is `llama3.2-pirate:latest`: a tag-less name means `:latest`, as Ollama reads it."""
    bare = name.removesuffix(":latest")
    return any(model.removesuffix(":latest") == bare for model in models)


def options_text(options: dict[str, Any]) -> str:
    """`temperature = 0.2, num_ctx = 8192`: the options as the inside of a TOML inline table."""
    return ", ".join(toml_pair(key, value) for key, value in options.items())


def parse_options(text: str) -> dict[str, Any]:
    """The inside of a TOML inline table (or a whole `{ … }`) as a dict; ValueError with a readable reason."""
    text = text.strip()
    if not text:
        return {}
    if not (text.startswith("{") and text.endswith("}")):
        text = "{ " + text + " }"
    try:
        options: dict[str, Any] = tomllib.loads(f"options = {text}")["options"]
        return options
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc).split(" (at ")[0]
        raise ValueError(f"options: {reason} — write them as  temperature = 0.2, num_ctx = 8192") from None


def parse_count(text: str, label: str) -> int:
    text = text.strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{label} must be a whole number") from None
    if value < 0:
        raise ValueError(f"{label} must be 0 or more")
    return value


@dataclass
class FormContext:
    """What the form checks against: the other agents' names and the backend's models."""

    other_agents: set[str]
    models: list[str]


def check_agent(agent: AgentConfig, context: FormContext) -> tuple[list[str], list[str]]:
    """(errors, warnings) for an agent about to be saved."""
    errors, warnings = [], []
    if not agent.name:
        errors.append("the name must not be empty")
    elif any(c.isspace() for c in agent.name):
        errors.append("the name must not contain blanks (clients send it as a model name)")
    elif agent.name in context.other_agents:
        errors.append(f"an agent named '{agent.name}' exists")
    elif on_backend(agent.name, context.models):
        errors.append(f"'{agent.name}' is an installed model: the agent would hide it")
    if not agent.model:
        errors.append("the model must not be empty")
    elif context.models and not on_backend(agent.model, context.models):
        warnings.append(f"model '{agent.model}' is not on the backend (yet)")
    if agent.fallback and context.models and not on_backend(agent.fallback, context.models):
        warnings.append(f"fallback '{agent.fallback}' is not on the backend (yet)")
    for diagnostic in validate_options(agent.options):
        message = diagnostic.message + (f" — {diagnostic.suggestion}" if diagnostic.suggestion else "")
        refused = diagnostic.is_error or diagnostic.code in REFUSED_OPTION_CODES
        (errors if refused else warnings).append(message.replace(" (Ollama ignores it)", ""))
    return errors, warnings


class AgentFormScreen(ModalScreen[AgentConfig | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("ctrl+s", "save", "Save", show=False),
        # Taken before the focused field sees the next key: keys typed (or pasted) in a burst land in the field
        # Tab moved to, not in the one it left. No field of the form uses Tab itself.
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
    ]

    def __init__(self, agent: AgentConfig | None, context: FormContext) -> None:
        super().__init__()
        self.original = agent
        self.context = context
        self._warned: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        agent = self.original or AgentConfig(name="", model="")
        suggester = SuggestFromList(self.context.models, case_sensitive=True)
        title = f"Edit agent {agent.name}" if self.original else "New agent"
        with Vertical(id="agent-dialog", classes=dialog_classes(self.app)):
            yield Static(title, classes="dialog-title")
            with Grid(id="agent-fields"):
                yield Label("name")
                yield Input(agent.name, id="agent-name", placeholder="e.g. support", compact=True)
                yield Label("model")
                yield Input(
                    agent.model, id="agent-model", placeholder="e.g. qwen3:8b", suggester=suggester, compact=True
                )
                yield Label("fallback")
                yield Input(
                    agent.fallback,
                    id="agent-fallback",
                    placeholder="model if the first one fails",
                    suggester=suggester,
                    compact=True,
                )
                yield Label("options")
                yield Input(
                    options_text(agent.options),
                    id="agent-options",
                    placeholder="temperature = 0.2, num_ctx = 8192",
                    compact=True,
                )
                yield Label("max tokens")
                yield Input(
                    str(agent.max_tokens or ""),
                    id="agent-max-tokens",
                    type="integer",
                    placeholder="0 = the model's default",
                    compact=True,
                )
                yield Label("context budget")
                yield Input(
                    str(agent.max_context_tokens or ""),
                    id="agent-max-context",
                    type="integer",
                    placeholder="tokens kept of a conversation; 0 = all",
                    compact=True,
                )
                yield Label("description")
                yield Input(
                    agent.description, id="agent-description", placeholder="one line for this table", compact=True
                )
            yield Label("system prompt", classes="field-label")
            yield TextArea(agent.system, id="agent-system", soft_wrap=True, show_line_numbers=False)
            yield Static("", id="agent-problems")
            with Horizontal(classes="dialog-buttons"):
                yield Static("ctrl+s saves · Esc cancels", classes="dialog-hint")
                yield Button("Cancel", id="agent-cancel", compact=True)
                yield Button("Save", id="agent-save", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#agent-name" if not self.original else "#agent-model", Input).focus()

    def value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def build_agent(self) -> AgentConfig:
        """The agent as typed; ValueError for a field that cannot be read."""
        base = self.original or AgentConfig(name="", model="")
        return AgentConfig(
            name=self.value("agent-name"),
            model=self.value("agent-model"),
            system=self.query_one("#agent-system", TextArea).text.strip(),
            options=parse_options(self.value("agent-options")),
            max_context_tokens=parse_count(self.value("agent-max-context"), "context budget"),
            max_tokens=parse_count(self.value("agent-max-tokens"), "max tokens"),
            fallback=self.value("agent-fallback"),
            tools=list(base.tools),
            description=self.value("agent-description"),
        )

    def show_problems(self, errors: list[str], warnings: list[str]) -> None:
        lines = [f"[b red]✗[/] {e}" for e in errors] + [f"[b yellow]![/] {w}" for w in warnings]
        self.query_one("#agent-problems", Static).update("\n".join(lines))

    @on(Button.Pressed, "#agent-save")
    def action_save(self) -> None:
        try:
            agent = self.build_agent()
        except ValueError as exc:
            self.show_problems([str(exc)], [])
            return
        errors, warnings = check_agent(agent, self.context)
        self.show_problems(errors, warnings)
        if errors:
            return
        # Warnings are shown once; saving again with the same warnings means "yes, I know".
        if warnings and tuple(warnings) != self._warned:
            self._warned = tuple(warnings)
            self.query_one("#agent-problems", Static).update(
                "\n".join(f"[b yellow]![/] {w}" for w in warnings) + "\n[dim]Save again to keep it anyway.[/]"
            )
            return
        self.dismiss(agent)

    @on(Button.Pressed, "#agent-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
