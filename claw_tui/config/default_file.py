"""The commented default config file that `claw config init` writes: every key, its default and its help."""

from __future__ import annotations

import dataclasses
from typing import Any

from claw_tui.config.schema import DEFAULT_OLLAMA_URL, TABLE_SECTIONS, AgentConfig, BackendConfig, DoctorConfig
from claw_tui.config.toml_text import toml_pair


def default_config_text() -> str:
    """A config file that sets every key to its default, each with a one-line comment."""
    parts = [
        (
            "# claw configuration. Every key below is set to its default value; change what you need.\n"
            "# `claw config show` prints the configuration in effect; `claw config path` says where this file is.\n"
        )
    ]
    for name in ("gateway", "telemetry", "governor"):
        parts.append(commented_table(f"[{name}]", TABLE_SECTIONS[name]()))
    parts.append(
        "# Backends that answer requests. With no [[backends]] table, claw uses one Ollama backend\n"
        f"# at $OLLAMA_HOST, else {DEFAULT_OLLAMA_URL}. One table per backend, for example:\n"
        + example_table("[[backends]]", BackendConfig(name="ollama"))
    )
    example_agent = AgentConfig(
        name="coder",
        model="qwen3:8b",
        system="You are a careful senior programmer.",
        options={"temperature": 0.2, "num_ctx": 8192},
    )
    parts.append(
        "# Agents: a model with a system prompt and options, offered to clients as a model of its own.\n"
        "# The Agents pane (F4) edits these tables. For example:\n" + example_table("[[agents]]", example_agent)
    )
    for name in ("ui", "store", "batch"):
        parts.append(commented_table(f"[{name}]", TABLE_SECTIONS[name]()))
    parts.append(
        "# Budgets of `claw doctor`, the readiness checklist (`claw doctor --load N` sends N requests at once).\n"
        + commented_table("[doctor]", DoctorConfig())
    )
    return "\n".join(parts)


def commented_table(header: str, section: Any) -> str:
    lines = [header]
    for f in dataclasses.fields(section):
        lines.append(f"# {f.metadata['help']}")
        lines.append(toml_pair(f.name, getattr(section, f.name)))
    return "\n".join(lines) + "\n"


def example_table(header: str, section: Any) -> str:
    """A table commented out, each pair followed by its help."""
    pairs = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            pairs.append((toml_pair(f.name, 0), f.metadata["help"] + " (default: not set)"))
        else:
            pairs.append((toml_pair(f.name, value), f.metadata["help"]))
    width = max(len(pair) for pair, _ in pairs)
    lines = [f"# {header}"] + [f"# {pair.ljust(width)}  # {help}" for pair, help in pairs]
    return "\n".join(lines) + "\n"
