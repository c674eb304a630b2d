"""One chat turn on screen: the prompt, the model's thinking (collapsed, expandable), the answer and what it cost."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static

from claw_tui.console.conversation import Turn

THINKING_TAIL = 160  # characters of the newest thoughts shown while the model thinks


def thinking_title(turn: Turn) -> str:
    words = turn.thinking_words
    if turn.answer or turn.state != "streaming":
        return f"thought for {words:,} word{'s' if words != 1 else ''}"
    return f"thinking… {words:,} word{'s' if words != 1 else ''}"


def stats_text(turn: Turn) -> Text:
    if turn.state == "error":
        return Text(f"error: {turn.error}", style="bold red")
    if turn.state == "stopped":
        return Text.assemble(("stopped", "yellow"), (f" · {turn.stats}" if turn.stats else "", ""))
    return Text(turn.stats or "…")


class TurnView(Vertical):
    def __init__(self, turn: Turn) -> None:
        super().__init__(classes="chat-turn")
        self.turn = turn

    def compose(self) -> ComposeResult:
        turn = self.turn
        yield Static(turn.prompt, classes="chat-user", markup=False)
        with Collapsible(title=thinking_title(turn), collapsed=True, classes="chat-thinking") as thinking:
            thinking.display = bool(turn.thinking)
            yield Static(turn.thinking, classes="chat-thinking-text", markup=False)
        tail = Static(self._tail(), classes="chat-thinking-tail", markup=False)
        tail.display = bool(turn.thinking) and not turn.answer and turn.state == "streaming"
        yield tail
        yield Markdown(turn.answer, classes="chat-answer")
        yield Static(stats_text(turn), classes="chat-stats")

    @property
    def answer(self) -> Markdown:
        return self.query_one(".chat-answer", Markdown)

    @property
    def thinking(self) -> Collapsible:
        return self.query_one(".chat-thinking", Collapsible)

    def _tail(self) -> str:
        return "… " + " ".join(self.turn.thinking.split())[-THINKING_TAIL:] if self.turn.thinking else ""

    def thought(self, piece: str) -> None:
        """More thinking streamed in: the title counts the words, the line below shows the newest."""
        self.turn.thinking += piece
        thinking = self.thinking
        thinking.display = True
        thinking.title = thinking_title(self.turn)
        self.query_one(".chat-thinking-text", Static).update(self.turn.thinking)
        tail = self.query_one(".chat-thinking-tail", Static)
        tail.display = not self.turn.answer
        tail.update(self._tail())

    def answering(self) -> None:
        """The first piece of the answer: the thinking folds into its one-line title."""
        self.query_one(".chat-thinking-tail", Static).display = False
        self.thinking.title = thinking_title(self.turn)

    def show_stats(self) -> None:
        self.query_one(".chat-thinking-tail", Static).display = False
        if self.turn.thinking:
            self.thinking.title = thinking_title(self.turn)
        stats = self.query_one(".chat-stats", Static)
        stats.update(stats_text(self.turn))
        stats.set_class(self.turn.state == "error", "-error")
