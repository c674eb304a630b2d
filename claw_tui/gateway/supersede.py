"""Supersede: a conversation's newer turn replaces its older turn still waiting for its first token.

The replaced request is answered 409 with a message naming the request that replaced it — never dropped without a
word. A conversation is named by the `X-Claw-Conversation` header, or else by its history: the same client sending
the same model the same earlier messages with a different last message is the same conversation (a chat UI
re-sending an edited question). A first turn has no history, so only the header can name its conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CONVERSATION_HEADER = b"x-claw-conversation"


def conversation_key(identity: str, model: str, body: dict[str, Any], header: str | None) -> str | None:
    if header:
        return f"h:{identity}:{header}"
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return None
    history = messages[:-1]
    if not any(isinstance(m, dict) and m.get("role") == "user" for m in history):
        return None
    digest = hashlib.sha256(json.dumps([identity, model, history], sort_keys=True, default=str).encode())
    return "m:" + digest.hexdigest()


@dataclass(eq=False)
class Turn:
    key: str
    request_id: str
    interrupt: Callable[[str], None]  # answers the request 409 with this message
    answering: bool = False  # its first byte reached the client: no longer replaceable
    superseded_by: str | None = field(default=None)


class Superseder:
    def __init__(self) -> None:
        self._turns: dict[str, Turn] = {}
        self.superseded = 0

    def begin_request(
        self,
        identity: str,
        model: str,
        body: dict[str, Any],
        header: str | None,
        request_id: str,
        interrupt: Callable[[str], None],
    ) -> Turn | None:
        """The turn of a request whose conversation is named (None otherwise), begun: it supersedes the older turn
        of its conversation still waiting."""
        key = conversation_key(identity, model, body, header)
        if key is None:
            return None
        turn = Turn(key=key, request_id=request_id, interrupt=interrupt)
        self.begin(turn)
        return turn

    def begin(self, turn: Turn) -> None:
        older = self._turns.get(turn.key)
        if older is not None and not older.answering and older.superseded_by is None:
            older.superseded_by = turn.request_id
            self.superseded += 1
            older.interrupt(
                f"superseded by a newer turn of the same conversation (request {turn.request_id}) "
                "before its first token"
            )
        self._turns[turn.key] = turn

    def end(self, turn: Turn) -> None:
        if self._turns.get(turn.key) is turn:
            del self._turns[turn.key]
