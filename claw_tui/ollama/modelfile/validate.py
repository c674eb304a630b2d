"""Checks of a `Modelfile` built or edited in code, with the same messages the parser gives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from claw_tui.ollama.modelfile.hints import hint_for_role
from claw_tui.ollama.modelfile.model import INVALID_REQUIRES, INVALID_ROLE, MESSAGE_ROLES, MISSING_FROM, Modelfile
from claw_tui.ollama.modelfile.parser import is_semver
from claw_tui.ollama.modelfile.serialize import is_representable, why_unrepresentable
from claw_tui.ollama.parameters import (
    Diagnostic,
    ParameterError,
    coerce_option,
    format_value,
    lookup_parameter,
)


def validate(modelfile: Modelfile) -> list[Diagnostic]:
    """Problems in a Modelfile built in code (a form, a show response): what parse would have caught."""
    diagnostics: list[Diagnostic] = []

    def error(message: str, code: str, suggestion: str | None = None) -> None:
        diagnostics.append(Diagnostic(0, None, "error", message, suggestion, code))

    if not modelfile.from_:
        error(MISSING_FROM, "missing-from")
    elif _looks_like_local_file(modelfile.from_):
        diagnostics.append(
            Diagnostic(
                0,
                None,
                "warning",
                f"FROM {modelfile.from_} looks like a local file: the server reads `from` as a model name",
                "create models from local files with `ollama create`; here, FROM an installed model",
                "local-from",
            )
        )
    for name, value in modelfile.parameters.items():
        diagnostics.extend(_validate_parameter(name, value))
    for role, _ in modelfile.messages:
        if role not in MESSAGE_ROLES:
            error(INVALID_ROLE, "invalid-role", hint_for_role(role))
    if any(not adapter for adapter in modelfile.adapters):
        error("ADAPTER needs a path", "missing-value")
    if isinstance(modelfile.requires, str) and not is_semver(modelfile.requires):
        error(INVALID_REQUIRES, "invalid-requires")
    for label, text in _text_values(modelfile):
        if not isinstance(text, str):
            error(f"{label} must be text, not {type(text).__name__}", "invalid-type")
        elif not is_representable(text):
            error(f"{label} cannot be written in a Modelfile", "unrepresentable-value", why_unrepresentable(text))
    return diagnostics


def _looks_like_local_file(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or name.lower().endswith((".gguf", ".safetensors", ".bin"))


def _validate_parameter(name: str, value: Any) -> list[Diagnostic]:
    try:
        spec = lookup_parameter(name)
        coerced = coerce_option(name, value)
    except ParameterError as error:
        return [error.to_diagnostic()]
    if spec.type == "int" and coerced != value:
        return [
            Diagnostic(
                0,
                None,
                "error",
                f"invalid int value [{format_value(name, value)}]",
                f"{name} takes a whole number",
                "invalid-value",
            )
        ]
    return []


def _text_values(modelfile: Modelfile) -> Iterator[tuple[str, Any]]:
    yield "FROM", modelfile.from_
    for label, value in (
        ("TEMPLATE", modelfile.template),
        ("SYSTEM", modelfile.system),
        ("REQUIRES", modelfile.requires),
    ):
        if value is not None:
            yield label, value
    yield from (("ADAPTER", adapter) for adapter in modelfile.adapters)
    yield from (("LICENSE", text) for text in modelfile.license)
    yield from ((f"MESSAGE {role}", content) for role, content in modelfile.messages)
    stops = modelfile.parameters.get("stop")
    if isinstance(stops, list):
        yield from (("PARAMETER stop", stop) for stop in stops)
