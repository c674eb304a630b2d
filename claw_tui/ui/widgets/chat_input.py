"""The chat prompt: a TextArea where Enter sends, shift+Enter or ctrl+j starts a new line and a paste is kept whole;
Up on the first line and Down on the last walk through the prompts sent before."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

# ctrl+j is what every terminal sends for a line feed; shift+enter reaches the console only from terminals that speak
# the kitty keyboard protocol (Textual asks for it), so both start a new line.
NEWLINE_KEYS = ("shift+enter", "ctrl+j")


class ChatInput(TextArea):
    class Submitted(Message):
        """Enter: the prompt as typed (the input is left as it was; the pane clears it once the turn is sent)."""

        def __init__(self, chat_input: ChatInput, text: str) -> None:
            super().__init__()
            self.chat_input = chat_input
            self.text = text

        @property
        def control(self) -> ChatInput:
            return self.chat_input

    def __init__(self, *, prompts: list[str] | None = None, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
            placeholder=placeholder,
            id=id,
        )
        self.prompts = prompts if prompts is not None else []  # the history, oldest first (TextArea's own is undo)
        self._recalled: int | None = None  # the index of the history entry shown, while walking it
        self._draft = ""  # what was typed before walking the history

    async def _on_key(self, event: events.Key) -> None:
        handled = True
        if event.key == "enter":
            self.post_message(self.Submitted(self, self.text))
        elif event.key in NEWLINE_KEYS:
            self.replace("\n", *self.selection)
        elif event.key == "up" and self.cursor_location[0] == 0:
            handled = self.recall(-1)
        elif event.key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            handled = self.recall(+1)
        else:
            handled = False
        if handled:  # otherwise TextArea's own handler (and its bindings) take the key
            event.stop()
            event.prevent_default()

    def recall(self, step: int) -> bool:
        """Show the previous (-1) or next (+1) prompt of the history; past the newest, the draft comes back."""
        if not self.prompts or (self._recalled is None and step > 0):
            return False
        if self._recalled is None:
            self._draft = self.text
            index = len(self.prompts) - 1
        else:
            index = self._recalled + step
        if index < 0:
            return True  # the oldest stays shown
        if index >= len(self.prompts):
            self._recalled = None
            self._show(self._draft)
            return True
        self._recalled = index
        self._show(self.prompts[index])
        return True

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def remember(self, prompt: str) -> None:
        """A prompt was sent: it becomes the newest history entry, and the walk starts again from there."""
        if prompt and (not self.prompts or self.prompts[-1] != prompt):
            self.prompts.append(prompt)
        self._recalled = None
        self._draft = ""

    def clear_prompt(self) -> None:
        self.load_text("")
        self._recalled = None
