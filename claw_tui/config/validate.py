"""Checking values: ranges, choices, addresses, tokens, agent options, the theme and duplicate names."""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any
from urllib.parse import urlsplit

from claw_tui.config.errors import ConfigError, KeyPath, SchemaError, describe_value
from claw_tui.config.locate import find_key_line
from claw_tui.config.schema import ARRAY_SECTIONS, TABLE_SECTIONS, AgentConfig, BackendConfig, Config, GatewayConfig
from claw_tui.config.toml_text import toml_pair
from claw_tui.ollama.parameters import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    ParameterError,
    coerce_option,
    suggest_for_unknown,
)
from claw_tui.theme_files import TEXTUAL_THEMES, claw_theme_names, themes_dir


def validate_config(config: Config) -> None:
    """Check ranges, choices, addresses and names; raise a SchemaError at the first problem."""
    for name in TABLE_SECTIONS:
        check_field_limits(getattr(config, name), (name,))
    for name in ARRAY_SECTIONS:
        for index, item in enumerate(getattr(config, name)):
            check_field_limits(item, (name, index))
    check_listen(config.gateway)
    check_tokens(config.gateway)
    if not config.backends:
        raise SchemaError(("backends",), "at least one backend is needed")
    for index, backend in enumerate(config.backends):
        check_backend(backend, ("backends", index))
    for index, agent in enumerate(config.agents):
        check_agent(agent, ("agents", index))
    check_unique_names(config.backends, "backends", "backend")
    check_unique_names(config.agents, "agents", "agent")
    check_theme(config.ui.theme)
    if config.telemetry.source == "replay" and not config.telemetry.replay_file:
        raise SchemaError(("telemetry", "replay_file"), 'source = "replay" needs a replay_file')


def check_telemetry_source(config: Config, *, demo: bool, replay: bool = False) -> None:
    """`[telemetry] source = "sim"` is the simulated GPU of --demo: a run without --demo (or --replay, which
    brings its own trace) refuses it rather than quietly reading NVML instead."""
    if config.telemetry.source != "sim" or demo or replay:
        return
    line = None
    if config.path is not None:
        try:
            line = find_key_line(config.path.read_text(encoding="utf-8"), ("telemetry", "source"))
        except (OSError, UnicodeDecodeError):
            pass
    raise ConfigError(
        '"sim" is the simulated GPU of --demo, which this run is not: run with --demo, '
        'or set source = "auto" (NVML when there is a GPU), "nvml" or "none"',
        path=config.path,
        key="telemetry.source",
        line=line,
    )


def check_field_limits(section: Any, key_path: KeyPath) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        limits = f.metadata
        if limits.get("choices") and value not in limits["choices"]:
            allowed = ", ".join(f'"{choice}"' for choice in limits["choices"])
            raise SchemaError((*key_path, f.name), f"must be one of {allowed}, got {json.dumps(value)}")
        if value is None or isinstance(value, (bool, str, list, dict)):
            continue
        if limits.get("at_least") is not None and value < limits["at_least"]:
            raise SchemaError((*key_path, f.name), f"must be at least {limits['at_least']}, got {value}")
        if limits.get("above") is not None and value <= limits["above"]:
            raise SchemaError((*key_path, f.name), f"must be more than {limits['above']}, got {value}")
        if limits.get("at_most") is not None and value > limits["at_most"]:
            raise SchemaError((*key_path, f.name), f"must be at most {limits['at_most']}, got {value}")


def check_listen(gateway: GatewayConfig) -> None:
    try:
        gateway.host_port()
    except ValueError as exc:
        raise SchemaError(
            ("gateway", "listen"), f"invalid listen address {json.dumps(gateway.listen)}: {exc}"
        ) from None


def check_tokens(gateway: GatewayConfig) -> None:
    for key in ("tokens", "admin_tokens"):
        for index, token in enumerate(getattr(gateway, key)):
            if not token.strip():
                raise SchemaError(("gateway", key, index), "a token must not be empty")
    for model, fallback in gateway.fallback_models.items():
        if not isinstance(fallback, str) or not fallback.strip():
            raise SchemaError(
                ("gateway", "fallback_models", model), f"expected the name of a model, got {describe_value(fallback)}"
            )


def check_backend(backend: BackendConfig, key_path: KeyPath) -> None:
    if not backend.name.strip():
        raise SchemaError((*key_path, "name"), "the name must not be empty")
    parts = urlsplit(backend.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SchemaError((*key_path, "url"), f"expected an http:// or https:// URL, got {json.dumps(backend.url)}")
    try:
        _ = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        raise SchemaError((*key_path, "url"), f"invalid port in {json.dumps(backend.url)}") from None


def check_agent(agent: AgentConfig, key_path: KeyPath) -> None:
    if not agent.name.strip():
        raise SchemaError((*key_path, "name"), "the name must not be empty")
    if not agent.model.strip():
        raise SchemaError((*key_path, "model"), "the model must not be empty")
    for name, value in agent.options.items():
        check_agent_option(name, value, (*key_path, "options", name))


# How a TOML value of each Ollama parameter type is written, for error messages.
OPTION_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string"}


def check_agent_option(name: str, value: Any, key_path: KeyPath) -> None:
    """An agent option must be one of Ollama's parameters, with a value of its type: Ollama refuses a wrong type
    (every chat to the agent fails) and ignores an unknown name (the setting silently does nothing)."""
    spec = PARAMETERS.get(name)
    if spec is None:
        if name in DEPRECATED_PARAMETERS:
            raise SchemaError(key_path, f"'{name}' is a deprecated Ollama option that Ollama ignores; remove it")
        hint = suggest_for_unknown(name)
        raise SchemaError(key_path, f"unknown Ollama option '{name}'" + (f" ({hint})" if hint else ""))
    expected = "an array of strings" if spec.repeatable else OPTION_TYPE_WORDS[spec.type]
    if spec.type == "int" and isinstance(value, float):
        raise SchemaError(key_path, f"expected {expected}, got {describe_value(value)}")
    try:
        coerce_option(name, value)
    except ParameterError as exc:
        if exc.code != "invalid-type":
            raise SchemaError(key_path, exc.message) from None
        example = "" if spec.default is None else f" (e.g. {toml_pair(name, spec.default)})"
        raise SchemaError(key_path, f"expected {expected}, got {describe_value(value)}{example}") from None


def check_theme(theme: str) -> None:
    """The theme must be one of the themes folder's or one of Textual's own ("" = Textual's default)."""
    claw_themes = claw_theme_names()
    if not theme or not claw_themes or theme in claw_themes or theme in TEXTUAL_THEMES:
        return  # with no theme files found there is nothing to check against: the console says so when it starts
    message = f"unknown theme '{theme}'"
    close = difflib.get_close_matches(theme, [*claw_themes, *TEXTUAL_THEMES], n=1, cutoff=0.6)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    message += (
        f": the themes folder ({themes_dir()}) has {', '.join(claw_themes)}; Textual's own, such as nord, work too"
    )
    raise SchemaError(("ui", "theme"), message)


def check_unique_names(items: list[Any], section: str, noun: str) -> None:
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in first_index:
            raise SchemaError(
                (section, index, "name"),
                f"duplicate {noun} name '{item.name}' (also {section}[{first_index[item.name]}])",
            )
        first_index[item.name] = index
