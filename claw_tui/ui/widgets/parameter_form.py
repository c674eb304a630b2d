"""A typed form over Ollama's runner parameters: one field per parameter, its default shown when unset."""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from claw_tui.ollama.parameters import PARAMETERS, ParamSpec, format_value

UNSET = None


def field_id(name: str) -> str:
    return f"param-{name}"


def stops_text(values: list[str]) -> str:
    """Stop sequences as JSON strings separated by commas, so that `\\n` and quotes stay readable and exact."""
    return ", ".join(json.dumps(value, ensure_ascii=False) for value in values)


def parse_stops(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    try:
        values = json.loads(f"[{text}]")
    except ValueError:
        raise ValueError('write stop sequences as quoted strings: "<|im_end|>", "\\n\\n"') from None
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError("each stop sequence must be a non-empty quoted string")
    stops: list[str] = values  # each checked above: a non-empty string
    return stops


def parse_field(spec: ParamSpec, text: str) -> object:
    """The typed value of a field, UNSET for an empty one; ValueError with a message for a bad one."""
    if spec.repeatable:
        return parse_stops(text) or UNSET
    text = text.strip()
    if not text:
        return UNSET
    if spec.type == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{spec.name} takes a whole number") from None
    if spec.type == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{spec.name} takes a number") from None
    return text


def default_text(spec: ParamSpec) -> str:
    if spec.default is None:
        return "auto" if spec.type == "bool" else "unset"
    return format_value(spec.name, spec.default)


class ParameterForm(VerticalScroll):
    """Posts `ParameterForm.Changed` when a field holds a new valid value (None = remove the parameter)."""

    DEFAULT_CLASSES = "form"

    class Changed(Message):
        def __init__(self, name: str, value: object) -> None:
            super().__init__()
            self.name = name
            self.value = value

    def compose(self) -> ComposeResult:
        yield Static("", id="param-note", classes="hint")
        with Grid(id="param-grid"):
            for spec in PARAMETERS.values():
                yield Label(spec.name, classes="param-name")
                yield self._field(spec)
                yield Static(f"[dim]default {default_text(spec)} ·[/] {spec.description}", classes="param-help")

    def _field(self, spec: ParamSpec) -> Select[bool] | Input:
        if spec.type == "bool":
            return Select(
                [("true", True), ("false", False)], prompt=f"{default_text(spec)}", id=field_id(spec.name), compact=True
            )
        if spec.repeatable:
            return Input(id=field_id(spec.name), placeholder='"<|im_end|>", "\\n\\n"', compact=True)
        kinds: dict[str, Literal["integer", "number"]] = {"int": "integer", "float": "number"}
        kind: Literal["integer", "number", "text"] = kinds.get(spec.type, "text")
        return Input(id=field_id(spec.name), type=kind, placeholder=default_text(spec), compact=True)

    def set_note(self, text: str) -> None:
        note = self.query_one("#param-note", Static)
        note.update(text)
        note.display = bool(text)

    def set_values(self, parameters: dict[str, Any]) -> None:
        """Show these parameter values (the rest empty, so their defaults show) without posting Changed. The field
        being typed into keeps its text: the Modelfile catches up with it, not the other way round."""
        for spec in PARAMETERS.values():
            value = parameters.get(spec.name)
            widget = cast("Select[bool] | Input", self.query_one(f"#{field_id(spec.name)}"))  # made by _field
            if widget.has_focus:
                continue
            if isinstance(widget, Select):
                wanted = Select.NULL if value is None else bool(value)
                if widget.value != wanted:
                    with widget.prevent(Select.Changed):
                        widget.value = wanted
                continue
            if spec.repeatable:
                text = stops_text(value if isinstance(value, list) else [value] if value else [])
            else:
                text = "" if value is None else format_value(spec.name, value)
            if text != widget.value:
                try:
                    current = parse_field(spec, widget.value)
                except ValueError:
                    current = object()
                if current != value or value is None:
                    with widget.prevent(Input.Changed):
                        widget.value = text
            widget.remove_class("-invalid")

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        name = (event.input.id or "").removeprefix("param-")
        spec = PARAMETERS.get(name)
        if spec is None:
            return
        try:
            value = parse_field(spec, event.value)
        except ValueError as exc:
            event.input.add_class("-invalid")
            event.input.tooltip = str(exc)
            return
        event.input.remove_class("-invalid")
        event.input.tooltip = None
        self.post_message(self.Changed(name, value))

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        name = (event.select.id or "").removeprefix("param-")
        if name in PARAMETERS:
            self.post_message(self.Changed(name, None if event.value is Select.NULL else bool(event.value)))
