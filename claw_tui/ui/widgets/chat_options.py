"""The chat pane's options bar: temperature, num_ctx and a system prompt — the options of the conversation shown."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from claw_tui.console.conversation import Conversation
from claw_tui.ollama.parameters import validate_options


class ChatOptions(Horizontal):
    def __init__(self) -> None:
        super().__init__(id="chat-options", classes="bar")

    def compose(self) -> ComposeResult:
        yield Label("temp")
        yield Input(id="chat-temperature", type="number", placeholder="model", compact=True)
        yield Label("num_ctx")
        yield Input(id="chat-num-ctx", type="integer", placeholder="model", compact=True)
        yield Label("system")
        yield Input(id="chat-system", placeholder="the model's or agent's own", compact=True)

    def field(self, name: str) -> Input:
        return self.query_one(f"#chat-{name}", Input)

    @property
    def system(self) -> str:
        return self.field("system").value.strip()

    def read(self) -> tuple[dict[str, Any], str | None]:
        """The valid options typed in the bar, and the first problem with the others (None when there is none)."""
        options: dict[str, Any] = {}
        problems: list[str] = []
        temperature = self.field("temperature").value.strip()
        num_ctx = self.field("num-ctx").value.strip()
        if temperature:
            try:
                options["temperature"] = float(temperature)
            except ValueError:
                problems.append("temperature must be a number")
        if num_ctx:
            try:
                value = int(num_ctx)
            except ValueError:
                problems.append("num_ctx must be a whole number")
            else:
                if value > 0:
                    options["num_ctx"] = value
                else:
                    problems.append("num_ctx must be more than 0")
        for key in list(options):
            errors = [d.message for d in validate_options({key: options[key]}) if d.is_error]
            if errors:
                problems += errors
                del options[key]
        return options, (problems[0] if problems else None)

    def show(self, conversation: Conversation) -> bool:
        """Put the conversation's options in the bar (without Changed messages); True when that changed the bar."""
        values = {
            "temperature": str(conversation.options.get("temperature", "")),
            "num-ctx": str(conversation.options.get("num_ctx", "")),
            "system": conversation.system,
        }
        changed = False
        for name, value in values.items():
            field = self.field(name)
            if field.value != value:
                changed = True
                with field.prevent(Input.Changed):
                    field.value = value
        return changed
