"""Trimming a conversation to an agent's token budget: the system prompt and the newest turns are kept.

Token counts are estimated (about four characters per token plus a few tokens of framing per message, what
chat templates add); the budget is a guard against runaway histories, not an exact fit to num_ctx.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_OVERHEAD_TOKENS = 4
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 768  # a typical vision encoder's share of the context per image


def estimate_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        text = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        images = sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
    else:
        text = content if isinstance(content, str) else ""
        images = len(message.get("images") or [])
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], default=str)
    return MESSAGE_OVERHEAD_TOKENS + (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN + images * IMAGE_TOKENS


def trim_messages(messages: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The messages that fit `budget` tokens, and how many were dropped.

    System messages are always kept; then turns are kept newest first while they fit. The newest message is kept
    even when it alone is over the budget (dropping the question would answer nothing). A kept history never starts
    with a tool result or an assistant turn cut off from the user turn that asked for it.
    """
    if budget <= 0 or not messages:
        return messages, 0
    system = [m for m in messages if m.get("role") == "system"]
    turns = [m for m in messages if m.get("role") != "system"]
    used = sum(estimate_tokens(m) for m in system)
    kept: list[dict[str, Any]] = []
    for message in reversed(turns):
        cost = estimate_tokens(message)
        if kept and used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while len(kept) > 1 and kept[0].get("role") in ("assistant", "tool"):
        kept.pop(0)
    dropped = len(turns) - len(kept)
    if not dropped:
        return messages, 0
    kept_ids = {id(m) for m in kept} | {id(m) for m in system}
    return [m for m in messages if id(m) in kept_ids], dropped
