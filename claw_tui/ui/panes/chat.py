"""The Chat pane: stream an answer through claw's own gateway and show what it cost (TTFT, tok/s, J/tok).

One conversation per model or agent, kept for the session; per-turn options (temperature, num_ctx) and a system
prompt override; Esc stops an answer (the gateway then cancels the request upstream and records it `cancelled`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Markdown, Select, Static
from textual.worker import Worker

from claw_tui.console.records import RequestView as RequestRecord
from claw_tui.ollama.parameters import validate_options
from claw_tui.ui import format as fmt
from claw_tui.ui.client import GatewayError
from claw_tui.ui.panes.base import Pane

EMPTY_CHAT_HINT = (
    "Type below and press Enter: the answer streams through claw's gateway, metered like any client.\n"
    "Under each answer: TTFT, decode tok/s, J/token and the prefill/decode energy.\n"
    "Each model and agent keeps its own conversation; ctrl+l starts a new one."
)
MODELS_RELOAD_S = 10.0
THINKING_TAIL = 240
ENERGY_WAIT_S = 2.0


def stats_line(record: RequestRecord, *, prefix: str = "") -> str:
    """`TTFT … ms · … tok/s · … J/tok · … tok · prefill … J · decode … J` for one finished request."""
    parts = [prefix] if prefix else []
    parts.append(f"TTFT {fmt.ms(record.ttft_ms)}")
    rate = record.decode_tokens_per_s
    parts.append(f"{rate:.1f} tok/s" if rate else "— tok/s")
    jpt = record.joules_per_token
    parts.append(f"{jpt:.2f} J/tok" if jpt is not None else "N/A J/tok")
    parts.append(f"{record.completion_tokens} tok")
    if record.energy_j > 0:
        parts.append(f"prefill {fmt.joules(record.prefill_j)} · decode {fmt.joules(record.decode_j)}")
    return " · ".join(parts)


@dataclass
class Turn:
    prompt: str
    answer: str = ""
    thinking: str = ""
    stats: str = ""  # Rich markup shown under the answer

    def thinking_text(self) -> str:
        """While the model thinks: the tail of its thoughts; once it answers: one line that says how long."""
        if not self.thinking:
            return ""
        if self.answer:
            return f"thought for {len(self.thinking.split()):,} words"
        tail = " ".join(self.thinking.split())[-THINKING_TAIL:]
        return f"thinking… {tail}"


@dataclass
class Conversation:
    messages: list[dict] = field(default_factory=list)  # what the next turn sends (user/assistant)
    turns: list[Turn] = field(default_factory=list)


def model_options(tags: list[dict]) -> list[tuple[str, str]]:
    """Select options: real models first, then agents (shown with the model behind them)."""
    models, agents = [], []
    for tag in tags:
        name = tag.get("name")
        if not name:
            continue
        details = tag.get("details") or {}
        if details.get("format") == "agent":
            agents.append((f"{name}  (agent → {details.get('parent_model', '?')})", name))
        else:
            models.append((name, name))
    return sorted(models) + sorted(agents)


class ChatPane(Pane):
    main_widget = "#chat-input"
    BINDINGS = [
        Binding("escape", "stop", "Stop", show=True, tooltip="Stop the answer (the gateway cancels upstream)"),
        Binding("ctrl+l", "clear_chat", "Clear", show=True, tooltip="Clear chat: a new conversation with this model"),
        Binding("ctrl+y", "copy_answer", "Copy", show=True, tooltip="Copy the last answer to the clipboard"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conversations: dict[str, Conversation] = {}
        self._answer: Worker | None = None
        self._models_loaded_at: float | None = None
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-bar", classes="bar"):
            yield Select([], prompt="model or agent", id="chat-model", allow_blank=True, compact=True)
            yield Static("", id="chat-status")
        with Horizontal(id="chat-options", classes="bar"):
            yield Label("temp")
            yield Input(id="chat-temperature", type="number", placeholder="model", compact=True)
            yield Label("num_ctx")
            yield Input(id="chat-num-ctx", type="integer", placeholder="model", compact=True)
            yield Label("system")
            yield Input(id="chat-system", placeholder="the model's or agent's own", compact=True)
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="Ask something — Enter sends, Esc stops", id="chat-input")

    async def on_mount(self) -> None:
        self.query_one("#chat-log", VerticalScroll).anchor()
        await self.show_conversation()
        self.load_models()

    def refresh_data(self) -> None:
        loaded = self._models_loaded_at
        if loaded is not None and self.app.clock() - loaded >= MODELS_RELOAD_S and not self.streaming:
            self.load_models()

    @property
    def streaming(self) -> bool:
        return self._answer is not None and self._answer.is_running

    @property
    def model(self) -> str | None:
        value = self.query_one("#chat-model", Select).value
        return None if value is Select.NULL else str(value)

    @property
    def history(self) -> list[dict]:
        """The messages of the current model's conversation."""
        return self.conversation().messages

    def conversation(self, model: str | None = None) -> Conversation:
        key = model or self.model or ""
        return self.conversations.setdefault(key, Conversation())

    # ---- the model picker ---------------------------------------------------------------------------------------
    @work(exclusive=True, group="chat-models", exit_on_error=False)
    async def load_models(self) -> None:
        status = self.query_one("#chat-status", Static)
        self._models_loaded_at = self.app.clock()
        try:
            tags = await self.app.gateway.tags()
        except GatewayError as exc:
            status.update(f"[red]cannot list models: {exc}[/]")
            return
        options = model_options(tags)
        select = self.query_one("#chat-model", Select)
        current = select.value
        names = [value for _, value in options]
        with select.prevent(Select.Changed):
            select.set_options(options)
            if current is not Select.NULL and current in names:
                select.value = current
        if names and select.is_blank():
            select.value = self.app.default_chat_model(names)
        self._update_status()

    @on(Select.Changed, "#chat-model")
    async def _model_changed(self) -> None:
        if self.model != self._shown:
            await self.show_conversation()
        self._update_status()

    def _update_status(self) -> None:
        model = self.model
        if model is None:
            self.query_one("#chat-status", Static).update("[yellow]no model: is the backend up?[/]")
            return
        turns = len(self.conversation(model).turns)
        text = f"{turns} turn{'s' if turns != 1 else ''} with {model}" if turns else f"new conversation with {model}"
        self.query_one("#chat-status", Static).update(f"[dim]{text} · ctrl+l clears[/]")

    # ---- showing a conversation ---------------------------------------------------------------------------------
    async def show_conversation(self) -> None:
        """Render the selected model's conversation (each model or agent keeps its own)."""
        log = self.query_one("#chat-log", VerticalScroll)
        await log.remove_children()
        self._shown = self.model
        turns = self.conversation().turns
        if not turns:
            await log.mount(Static(EMPTY_CHAT_HINT, classes="hint chat-empty"))
        for turn in turns:
            await log.mount(*self._turn_widgets(turn))

    def _turn_widgets(self, turn: Turn) -> tuple[Static, Static, Markdown, Static]:
        thinking = Static(turn.thinking_text(), classes="chat-thinking", markup=False)
        thinking.display = bool(turn.thinking)
        return (
            Static(turn.prompt, classes="chat-user", markup=False),
            thinking,
            Markdown(turn.answer, classes="chat-answer"),
            Static(turn.stats or "…", classes="chat-stats"),
        )

    async def action_clear_chat(self) -> None:
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        model = self.model
        self.conversations.pop(model or "", None)
        await self.show_conversation()
        self._update_status()
        self.notify(f"new conversation with {model}" if model else "conversation cleared")

    def action_copy_answer(self) -> None:
        turns = self.conversation().turns
        answer = next((t.answer for t in reversed(turns) if t.answer), "")
        if not answer:
            self.notify("No answer to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(answer)
        self.notify(f"answer copied ({len(answer):,} characters)")

    # ---- one turn ----------------------------------------------------------------------------------------------
    def turn_options(self) -> dict | None:
        """The per-turn options typed in the bar, or None (with a notification) when one is invalid."""
        options: dict = {}
        temperature = self.query_one("#chat-temperature", Input).value.strip()
        num_ctx = self.query_one("#chat-num-ctx", Input).value.strip()
        try:
            if temperature:
                options["temperature"] = float(temperature)
            if num_ctx:
                options["num_ctx"] = int(num_ctx)
        except ValueError:
            self.notify("temperature must be a number and num_ctx a whole number", severity="error")
            return None
        problems = [d for d in validate_options(options) if d.is_error]
        if num_ctx and options.get("num_ctx", 1) <= 0:
            self.notify("num_ctx must be more than 0", severity="error")
            return None
        if problems:
            self.notify(problems[0].message, severity="error")
            return None
        return options

    @on(Input.Submitted, "#chat-input")
    def send_prompt(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        model = self.model
        if not prompt:
            return
        if model is None:
            self.notify("Pick a model first", severity="warning")
            return
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        options = self.turn_options()
        if options is None:
            return
        event.input.value = ""
        conversation = self.conversation(model)
        turn = Turn(prompt)
        conversation.turns.append(turn)
        conversation.messages.append({"role": "user", "content": prompt})
        body: dict = {"model": model, "messages": self._messages(conversation)}
        if options:
            body["options"] = options
        widgets = self._turn_widgets(turn)
        for hint in self.query(".chat-empty"):
            hint.remove()
        self.query_one("#chat-log", VerticalScroll).mount(*widgets)
        self._update_status()
        self._answer = self.stream_answer(body, conversation, turn, *widgets[1:])

    def _messages(self, conversation: Conversation) -> list[dict]:
        system = self.query_one("#chat-system", Input).value.strip()
        prefix = [{"role": "system", "content": system}] if system else []
        return prefix + list(conversation.messages)

    def action_stop(self) -> None:
        if self.streaming:
            self._answer.cancel()

    @work(exclusive=True, group="chat-answer", exit_on_error=False)
    async def stream_answer(
        self, body: dict, conversation: Conversation, turn: Turn, thinking: Static, answer: Markdown, stats: Static
    ) -> None:
        stream = Markdown.get_stream(answer)
        request_id = None
        try:
            async with self.app.gateway.chat(body) as chat:
                request_id = chat.request_id
                async for chunk in chat.chunks:
                    if "error" in chunk:
                        raise GatewayError(str(chunk["error"]))
                    message = chunk.get("message") or {}
                    thought = message.get("thinking") or ""
                    if thought:
                        turn.thinking += thought
                        thinking.display = True
                        thinking.update(turn.thinking_text())
                    piece = message.get("content") or ""
                    if piece:
                        if not turn.answer and turn.thinking:
                            turn.answer = piece
                            thinking.update(turn.thinking_text())
                        else:
                            turn.answer += piece
                        await stream.write(piece)
        except asyncio.CancelledError:
            await stream.stop()
            self._remember(conversation, turn)
            turn.stats = "[yellow]stopped[/]"
            stats.update(turn.stats)
            self._finish_stats_later(request_id, turn, stats, "[yellow]stopped[/]")
            raise
        except GatewayError as exc:
            await stream.stop()
            if not turn.answer:
                conversation.messages.pop()  # nothing was answered: the turn can be sent again
            else:
                self._remember(conversation, turn)
            turn.stats = f"[red]error: {exc}[/]"
            stats.update(turn.stats)
            return
        await stream.stop()
        self._remember(conversation, turn)
        await self._show_stats(request_id, turn, stats)

    def _remember(self, conversation: Conversation, turn: Turn) -> None:
        if turn.answer:
            conversation.messages.append({"role": "assistant", "content": turn.answer})

    def _finish_stats_later(self, request_id: str | None, turn: Turn, stats: Static, prefix: str) -> None:
        if request_id:
            self.run_worker(
                self._show_stats(request_id, turn, stats, prefix=prefix), group="chat-stats", exit_on_error=False
            )

    async def _show_stats(self, request_id: str | None, turn: Turn, stats: Static, prefix: str = "") -> None:
        """The answer's cost, once the request's `finished` event (with its final energy) has come."""
        model = self.app.model
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ENERGY_WAIT_S
        # The energy is final once the power samples cover the end of the answer (well under a second).
        record = model.record(request_id) if request_id else None
        while request_id and loop.time() < deadline:
            record = model.record(request_id)
            if record is not None and record.finished and (record.energy_final or not model.metering):
                break
            await asyncio.sleep(0.05)
        if record is None:
            turn.stats = prefix or "done"
            stats.update(turn.stats)
            return
        turn.stats = stats_line(record, prefix=prefix)
        stats.update(turn.stats)
