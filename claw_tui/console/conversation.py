"""A chat conversation as the console keeps it: its turns (prompt, thinking, answer, what the answer cost), the
model or agent it talks to and the options it carries. The same JSON travels through the console source, claw's
HTTP API (`/claw/v1/conversations`) and the session store; `to_markdown` is what the chat pane exports."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TITLE_CHARS = 60
TURN_STATES = ("ok", "stopped", "error", "streaming")
OPTION_KEYS = ("temperature", "num_ctx")


class ConversationError(ValueError):
    """A conversation that cannot be read or kept; `str()` is one sentence to show."""


def new_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return f"c{stamp}-{secrets.token_hex(3)}"


def title_of(prompt: str) -> str:
    """The first line of the first prompt, cut to fit a list row."""
    line = next((part.strip() for part in prompt.splitlines() if part.strip()), "")
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass
class Turn:
    prompt: str
    answer: str = ""
    thinking: str = ""
    state: str = "streaming"  # ok | stopped | error | streaming
    stats: str = ""  # the cost line under the answer (TTFT, tok/s, J/token, prefill/decode, load)
    error: str = ""
    model: str = ""  # the model or agent that answered
    options: dict[str, Any] = field(default_factory=dict)  # the per-turn options the request carried
    prompt_tokens: int = 0  # the backend's prompt_eval_count
    completion_tokens: int = 0  # the backend's eval_count
    request_id: str | None = None
    at: float = 0.0

    @property
    def thinking_words(self) -> int:
        return len(self.thinking.split())

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "thinking": self.thinking,
            "state": self.state,
            "stats": self.stats,
            "error": self.error,
            "model": self.model,
            "options": dict(self.options),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "request_id": self.request_id,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: object, index: int = 0) -> Turn:
        if not isinstance(data, dict):
            raise ConversationError(f"turn {index + 1} must be an object with at least a prompt")
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise ConversationError(f"turn {index + 1} needs a prompt (a string)")
        texts = {key: data.get(key) or "" for key in ("answer", "thinking", "stats", "error", "model")}
        for key, value in texts.items():
            if not isinstance(value, str):
                raise ConversationError(f"turn {index + 1}: {key} must be a string")
        state = data.get("state") or ("ok" if texts["answer"] else "error")
        if state not in TURN_STATES:
            raise ConversationError(f"turn {index + 1}: state must be one of {', '.join(TURN_STATES)}")
        return cls(
            prompt=prompt,
            state="stopped" if state == "streaming" else state,  # a turn saved mid-answer was cut there
            options=_options(data.get("options"), f"turn {index + 1}: options"),
            prompt_tokens=_count(data.get("prompt_tokens"), f"turn {index + 1}: prompt_tokens"),
            completion_tokens=_count(data.get("completion_tokens"), f"turn {index + 1}: completion_tokens"),
            request_id=data.get("request_id") if isinstance(data.get("request_id"), str) else None,
            at=_number(data.get("at"), 0.0),
            **texts,
        )


@dataclass
class Conversation:
    model: str = ""  # the model or agent it talks to
    id: str = field(default_factory=new_id)
    turns: list[Turn] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # temperature and num_ctx sent with each turn
    system: str = ""  # a system prompt in place of the model's or agent's own
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    session_id: str | None = None  # the claw session it started in (it outlives that session)
    saved: bool = False  # in the store (set by whoever loaded or saved it)

    @property
    def title(self) -> str:
        return title_of(self.turns[0].prompt) if self.turns else "(empty)"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the next turn sends after the system prompt: every answered turn, as user and assistant."""
        out: list[dict[str, Any]] = []
        for turn in self.turns:
            if turn.answer:
                out += [{"role": "user", "content": turn.prompt}, {"role": "assistant", "content": turn.answer}]
        return out

    def request_messages(self, prompt: str) -> list[dict[str, Any]]:
        prefix = [{"role": "system", "content": self.system}] if self.system else []
        return prefix + self.messages + [{"role": "user", "content": prompt}]

    @property
    def context_tokens(self) -> int | None:
        """The backend's own count of the context the last answered turn used (prompt_eval_count + eval_count)."""
        for turn in reversed(self.turns):
            if turn.prompt_tokens or turn.completion_tokens:
                return turn.prompt_tokens + turn.completion_tokens
        return None

    def summary_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "model": self.model,
            "turns": len(self.turns),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "session_id": self.session_id,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary_json(),
            "options": dict(self.options),
            "system": self.system,
            "turns": [turn.to_json() for turn in self.turns],
        }

    @classmethod
    def from_json(cls, data: object, *, id: str | None = None) -> Conversation:
        """Read (and check) a conversation sent by a client or kept in the store; `id` overrides the body's."""
        if not isinstance(data, dict):
            raise ConversationError("a conversation is a JSON object with a model and its turns")
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ConversationError("a conversation needs a model (the model or agent it talks to)")
        conversation_id = id or data.get("id") or new_id()
        check_id(conversation_id)
        turns = data.get("turns", [])
        if not isinstance(turns, list):
            raise ConversationError("turns must be a list of {prompt, answer, thinking, …} objects")
        system = data.get("system") or ""
        if not isinstance(system, str):
            raise ConversationError("system must be a string (the system prompt)")
        created = _number(data.get("created_at"), time.time())
        return cls(
            model=model.strip(),
            id=conversation_id,
            turns=[Turn.from_json(turn, index) for index, turn in enumerate(turns)],
            options=_options(data.get("options"), "options"),
            system=system,
            created_at=created,
            updated_at=_number(data.get("updated_at"), created),
            session_id=data.get("session_id") if isinstance(data.get("session_id"), str) else None,
        )

    # ---- Markdown ----------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created_at))
        lines = [f"# {self.title}", "", f"*claw conversation {self.id} with {self.model}, started {started}*", ""]
        carried = [f"{key} {value}" for key, value in self.options.items()]
        if carried:
            lines += [f"Options: {', '.join(carried)}", ""]
        if self.system:
            lines += ["System prompt:", "", *_quoted(self.system), ""]
        for turn in self.turns:
            lines += ["## You", "", turn.prompt, "", f"## {turn.model or self.model}", ""]
            if turn.thinking:
                lines += [
                    "<details>",
                    f"<summary>thought for {turn.thinking_words:,} words</summary>",
                    "",
                    *_quoted(turn.thinking),
                    "",
                    "</details>",
                    "",
                ]
            if turn.answer:
                lines += [turn.answer, ""]
            if turn.error:
                lines += [f"> error: {turn.error}", ""]
            elif turn.state == "stopped":
                lines += ["*(stopped)*", ""]
            if turn.stats:
                lines += [f"*{turn.stats}*", ""]
        return "\n".join(lines).rstrip() + "\n"


def check_id(conversation_id: object) -> str:
    if not isinstance(conversation_id, str) or not ID_PATTERN.match(conversation_id):
        raise ConversationError("a conversation id is 1 to 64 letters, digits, '-' or '_'")
    return conversation_id


def write_markdown(conversation: Conversation, directory: Path) -> Path:
    """Write the conversation as Markdown in `directory`; returns the file's path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"claw-chat-{conversation.id}-{stamp}.md"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(conversation.to_markdown())
        tmp.replace(path)
    except OSError as exc:
        raise ConversationError(f"cannot write the conversation in {directory}: {exc.strerror or exc}") from None
    return path


def _quoted(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.splitlines()]


def _options(value: object, where: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ConversationError(f'{where} must be an object like {{"temperature": 0.7, "num_ctx": 8192}}')
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "num_ctx" and (isinstance(item, bool) or not isinstance(item, int) or item <= 0):
            raise ConversationError(f"{where}: num_ctx must be a whole number above 0")
        if key == "temperature" and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise ConversationError(f"{where}: temperature must be a number")
        out[str(key)] = item
    return out


def _count(value: object, where: str) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConversationError(f"{where} must be a whole number of tokens")
    return value


def _number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)
