"""What the chat pane needs to know about each model, from the gateway's /api/tags, /api/show and /api/ps: whether it
can chat (its `capabilities`), and how much context a turn has (`num_ctx`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from claw_tui.ui import format as fmt

if TYPE_CHECKING:
    from claw_tui.console.records import RequestView


@dataclass(frozen=True)
class ModelFacts:
    capabilities: tuple[str, ...] | None = None  # None: the backend did not say
    num_ctx: int | None = None  # PARAMETER num_ctx (the model's, or the agent's options)
    context_length: int | None = None  # the most the model was trained for (model_info)

    @property
    def can_chat(self) -> bool:
        """Models that say what they can do must say "completion"; an embedding model cannot answer a chat."""
        return self.capabilities is None or "completion" in self.capabilities


def facts_from_show(show: dict[str, Any]) -> ModelFacts:
    capabilities = show.get("capabilities")
    if not isinstance(capabilities, list):
        capabilities = None
    return ModelFacts(
        capabilities=tuple(str(c) for c in capabilities) if capabilities is not None else None,
        num_ctx=parameter_num_ctx(show.get("parameters")),
        context_length=info_context_length(show.get("model_info")),
    )


def parameter_num_ctx(parameters: object) -> int | None:
    """The last `num_ctx` line of /api/show's parameters text (an agent's options come after the model's)."""
    found = None
    if isinstance(parameters, str):
        for line in parameters.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "num_ctx":
                found = _positive_int(value.strip()) or found
    return found


def info_context_length(model_info: object) -> int | None:
    """`<architecture>.context_length` of /api/show's model_info."""
    if not isinstance(model_info, dict):
        return None
    architecture = model_info.get("general.architecture")
    value = model_info.get(f"{architecture}.context_length") if architecture else None
    if value is None:
        value = next((v for k, v in model_info.items() if k.endswith(".context_length")), None)
    return _positive_int(value)


def _positive_int(value: object) -> int | None:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def model_options(tags: list[dict[str, Any]], facts: dict[str, ModelFacts]) -> list[tuple[str, str]]:
    """Select options: the models that can chat first, then agents (shown with the model behind them)."""
    models, agents = [], []
    for tag in tags:
        name = tag.get("name")
        if not name or not facts.get(name, ModelFacts()).can_chat:
            continue
        details = tag.get("details") or {}
        if details.get("format") == "agent":
            agents.append((f"{name}  (agent → {details.get('parent_model', '?')})", name))
        else:
            models.append((name, name))
    return sorted(models) + sorted(agents)


def served_model(tags: list[dict[str, Any]], name: str) -> str:
    """The model behind an agent (the name itself for a model)."""
    for tag in tags:
        if tag.get("name") == name and (tag.get("details") or {}).get("format") == "agent":
            return str((tag.get("details") or {}).get("parent_model") or name)
    return name


def loaded_context(ps: list[dict[str, Any]], model: str) -> int | None:
    """The context the backend loaded `model` with (/api/ps `context_length`), when it is loaded and says so."""
    for entry in ps:
        if model in (entry.get("name"), entry.get("model")):
            return _positive_int(entry.get("context_length"))
    return None


@dataclass(frozen=True)
class ContextLimit:
    tokens: int
    source: str  # "loaded" | "num_ctx" | "model default" | "model max"


def context_limit(options: dict[str, Any], loaded: int | None, facts: ModelFacts | None) -> ContextLimit | None:
    """The context a turn gets: what the backend loaded the model with (when the turn asked for nothing else),
    else the num_ctx the conversation sends, else the model's own num_ctx, else the most it was trained for."""
    asked = options.get("num_ctx")
    if loaded and (asked is None or asked == loaded):
        return ContextLimit(loaded, "loaded")
    if asked:
        return ContextLimit(int(asked), "num_ctx")
    if facts is not None and facts.num_ctx:
        return ContextLimit(facts.num_ctx, "model default")
    if facts is not None and facts.context_length:
        return ContextLimit(facts.context_length, "model max")
    return None


def meter_text(used: int | None, limit: ContextLimit | None) -> str:
    """`ctx 1,234 / 4,096 (30%, loaded)` in Rich markup: yellow past 75%, red past 90%."""
    used_text = "—" if used is None else f"{used:,}"
    if limit is None:
        return f"ctx {used_text}"
    share = None if used is None else 100 * used / limit.tokens
    text = f"ctx {used_text} / {limit.tokens:,}"
    text += f" ({share:.0f}%, {limit.source})" if share is not None else f" ({limit.source})"
    if share is not None and share >= 90:
        return f"[red]{text}[/]"
    if share is not None and share >= 75:
        return f"[yellow]{text}[/]"
    return text


def stats_line(record: RequestView, *, prefix: str = "") -> str:
    """`TTFT … ms · … tok/s · … J/tok · … tok · prefill … J · decode … J · load … s, … J` for one finished request.
    J/tok is the request's own energy (prefill + decode) per answer token; a model load it caused is shown apart."""
    parts = [prefix] if prefix else []
    parts.append(f"TTFT {fmt.ms(record.ttft_ms)}")
    rate = record.decode_tokens_per_s
    parts.append(f"{rate:.1f} tok/s" if rate else "— tok/s")
    jpt = record.joules_per_token
    parts.append(f"{jpt:.2f} J/tok" if jpt is not None else "N/A J/tok")
    parts.append(f"{record.completion_tokens} tok")
    if record.energy_j > 0:
        parts.append(f"prefill {fmt.joules(record.prefill_j)} · decode {fmt.joules(record.decode_j)}")
    if record.load_j > 0:
        seconds = f"{record.server_load_ms / 1000:.1f} s, " if record.server_load_ms else ""
        parts.append(f"load {seconds}{fmt.joules(record.load_j)}")
    return " · ".join(parts)
