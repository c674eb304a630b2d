"""Agents are virtual models: a name that maps to a real model with a system prompt, options and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claw_tui.gateway.context import trim_messages

if TYPE_CHECKING:
    from claw_tui.config import AgentConfig


@dataclass
class Agent:
    name: str
    model: str
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    max_context_tokens: int = 0
    max_tokens: int = 0
    fallback: str = ""
    tools: list[str] = field(default_factory=list)
    description: str = ""

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> Agent:
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__})

    def as_tag(self) -> dict[str, Any]:
        """The agent as an entry of /api/tags."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": "1970-01-01T00:00:00Z",
            "size": 0,
            "digest": "",
            "details": {
                "parent_model": self.model,
                "format": "agent",
                "family": "agent",
                "families": ["agent"],
                "parameter_size": "",
                "quantization_level": "",
            },
            "owned_by": "claw-agent",
        }

    def apply_to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of an Ollama /api/chat body with the agent's model, system prompt, options and limits."""
        out = dict(body)
        out["model"] = self.model
        out["messages"], _ = self.messages_for(body.get("messages"))
        out["options"] = self._options(body.get("options"))
        return out

    def messages_for(self, messages: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], int]:
        """The conversation with the agent's system prompt, trimmed to its context budget; and how many
        messages the trimming dropped."""
        messages = list(messages or [])
        if self.system and not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.system})
        if self.max_context_tokens:
            return trim_messages(messages, self.max_context_tokens)
        return messages, 0

    def apply_to_openai_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of an OpenAI chat-completions body with the agent's model, system prompt, limits and the options
        that the OpenAI surface can carry."""
        out = dict(body)
        out["model"] = self.model
        out["messages"], _ = self.messages_for(body.get("messages"))
        for key in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "stop"):
            if key in self.options and out.get(key) is None:
                out[key] = self.options[key]
        if self.max_tokens:
            requested = out.get("max_completion_tokens", out.get("max_tokens"))
            if not isinstance(requested, int) or requested <= 0 or requested > self.max_tokens:
                out.pop("max_completion_tokens", None)
                out["max_tokens"] = self.max_tokens
        return out

    def apply_to_generate(self, body: dict[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out["model"] = self.model
        if self.system and not body.get("system"):
            out["system"] = self.system
        out["options"] = self._options(body.get("options"))
        return out

    def _options(self, request_options: object) -> dict[str, Any]:
        options = {**self.options, **(request_options if isinstance(request_options, dict) else {})}
        if self.max_tokens:
            requested = options.get("num_predict")
            if not isinstance(requested, int) or requested < 0 or requested > self.max_tokens:
                options["num_predict"] = self.max_tokens
        return options
