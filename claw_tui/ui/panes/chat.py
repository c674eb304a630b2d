"""The Chat pane: stream an answer through claw's own gateway and show what it cost (TTFT, tok/s, J/token, the
prefill/decode energy and a model load apart).

Each model and agent has a current conversation; every finished turn saves it in the session store (through the
console source: the Session's store in-process, the service's attached), and ctrl+o reopens a saved one. A
conversation carries its own options (temperature, num_ctx, system): switching the model or agent shows that
conversation's options in the bar, never the previous model's. Esc stops an answer (the gateway then cancels the
request upstream and records it `cancelled`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Markdown, Select, Static
from textual.widgets.markdown import MarkdownStream
from textual.worker import Worker, WorkerState

from claw_tui.console.conversation import Conversation, ConversationError, Turn
from claw_tui.console.source import SourceError
from claw_tui.ui.chat_models import (
    ContextLimit,
    ModelFacts,
    context_limit,
    facts_from_show,
    loaded_context,
    meter_text,
    model_options,
    served_model,
    stats_line,
)
from claw_tui.ui.client import GatewayError
from claw_tui.ui.panes.base import Pane
from claw_tui.ui.screens.conversations import ConversationsScreen
from claw_tui.ui.widgets.chat_input import ChatInput
from claw_tui.ui.widgets.chat_options import ChatOptions
from claw_tui.ui.widgets.chat_turn import TurnView

log = logging.getLogger(__name__)

EMPTY_CHAT_HINT = (
    "Type below: Enter sends, shift+Enter or ctrl+j starts a new line, ↑ recalls an earlier prompt.\n"
    "The answer streams through claw's gateway, metered like any client; under it: TTFT, tok/s, J/token and the "
    "prefill/decode energy.\n"
    "Every turn saves the conversation: ctrl+o reopens one, ctrl+l starts a new one, ctrl+r regenerates the last "
    "answer, ctrl+s writes it as Markdown."
)
INPUT_PLACEHOLDER = "Ask something — Enter sends · ctrl+j new line · ↑ earlier prompts"
MODELS_RELOAD_S = 10.0
ENERGY_WAIT_S = 2.0
SHOW_CONCURRENCY = 4


def error_sentence(error: object) -> str:
    """An `error` field of a streamed chunk (Ollama's string, or an OpenAI-style object) as one sentence."""
    if isinstance(error, dict):
        error = error.get("message") or error.get("error")
    text = str(error or "").strip()
    return text or "the backend answered with an error and no message"


def options_words(conversation: Conversation) -> str:
    carried = [f"{key} {value}" for key, value in conversation.options.items()]
    if conversation.system:
        carried.append("a system prompt")
    return ", ".join(carried) if carried else "the model's own"


class ChatPane(Pane):
    main_widget = "#chat-input"
    HELP_KEYS = (  # taken by the prompt itself (ChatInput)
        ("Enter", "Send the prompt"),
        ("shift+Enter / ctrl+j", "New line in the prompt"),
        ("↑ / ↓", "Earlier prompts (from the first / last line)"),
    )
    BINDINGS = [
        Binding("escape", "stop", "Stop", show=True, tooltip="Stop the answer (the gateway cancels upstream)"),
        Binding("ctrl+l", "new_conversation", "New", show=True, tooltip="Start a new conversation with this model"),
        Binding("ctrl+o", "open_conversations", "Open", show=True, tooltip="Reopen a saved conversation"),
        Binding("ctrl+r", "regenerate", "Regen", show=True, tooltip="Ask for the last answer again"),
        Binding("ctrl+s", "export_conversation", "Save .md", show=True, tooltip="Write the conversation as Markdown"),
        Binding("ctrl+y", "copy_answer", "Copy", show=False, priority=True, tooltip="Copy the last answer"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversations: dict[str, Conversation] = {}  # the current conversation of each model or agent
        self.prompt_history: list[str] = []
        self.facts: dict[str, ModelFacts] = {}  # from /api/show, per model or agent name
        self._facts_digest: dict[str, str] = {}
        self._tags: list[dict[str, Any]] = []
        self._offered: list[str] = []  # the names in the picker
        self._loaded_ctx: dict[str, int | None] = {}  # /api/ps context_length, per served model
        self._answer: Worker[None] | None = None
        self._starting = False  # a turn between Enter and its request
        self._models_loaded_at: float | None = None
        self._shown: str | None = None
        self._save_lock: asyncio.Lock | None = None
        self._store_warned = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-bar", classes="bar"):
            yield Select([], prompt="model or agent", id="chat-model", allow_blank=True, compact=True)
            yield Static("", id="chat-status")
        yield ChatOptions()
        yield VerticalScroll(id="chat-log")
        yield ChatInput(prompts=self.prompt_history, placeholder=INPUT_PLACEHOLDER, id="chat-input")

    async def on_mount(self) -> None:  # type: ignore[override]  # Textual runs Pane's on_mount after this one
        self._save_lock = asyncio.Lock()
        self.query_one("#chat-log", VerticalScroll).anchor()
        await self.show_conversation()
        self.load_models()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers Stop only while an answer streams, and Regen once there is an answer to redo."""
        if action == "stop":
            return self.streaming
        if action == "regenerate":
            return bool(self.is_mounted and self.model and self.conversation().turns) and not self.streaming
        return True

    def refresh_data(self) -> None:
        loaded = self._models_loaded_at
        if loaded is not None and self.app.clock() - loaded >= MODELS_RELOAD_S and not self.streaming:
            self.load_models()

    @property
    def streaming(self) -> bool:
        running = self._answer is not None and self._answer.state in (WorkerState.PENDING, WorkerState.RUNNING)
        return running or self._starting

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)
        if event.worker is self._answer:
            self.refresh_bindings()

    @property
    def model(self) -> str | None:
        value = self.query_one("#chat-model", Select).value
        return None if value is Select.NULL else str(value)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The messages the current conversation sends before the next prompt."""
        return self.conversation().messages

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one("#chat-input", ChatInput)

    def conversation(self, model: str | None = None) -> Conversation:
        key = model or self.model or ""
        if key not in self.conversations:
            self.conversations[key] = Conversation(model=key)
        return self.conversations[key]

    # ---- the model picker: only models that can chat ----------------------------------------------------------------
    @work(exclusive=True, group="chat-models", exit_on_error=False)
    async def load_models(self) -> None:
        status = self.query_one("#chat-status", Static)
        self._models_loaded_at = self.app.clock()
        try:
            tags = await self.app.gateway.tags()
        except GatewayError as exc:
            status.update(f"[red]cannot list models: {escape(str(exc))}[/]")
            return
        self._tags = tags
        await self._learn_facts(tags)
        options = model_options(tags, self.facts)
        select = self.query_one("#chat-model", Select)
        current = select.value
        names = [value for _, value in options]
        self._offered = names
        with select.prevent(Select.Changed):
            select.set_options(options)
            if current is not Select.NULL and current in names:
                select.value = current
        if names and select.is_blank():
            select.value = self.app.default_chat_model(names)
        self._update_status()
        self.refresh_context()

    async def _learn_facts(self, tags: list[dict[str, Any]]) -> None:
        """/api/show for each model not seen yet (or changed since): its capabilities and context."""
        wanted = [t for t in tags if t.get("name") and self._facts_digest.get(t["name"]) != self._fact_key(t)]
        limit = asyncio.Semaphore(SHOW_CONCURRENCY)

        async def learn(tag: dict[str, Any]) -> None:
            async with limit:
                try:
                    shown = await self.app.gateway.show(tag["name"])
                except GatewayError:
                    return  # unknown: still offered, and asked again at the next reload
            self.facts[tag["name"]] = facts_from_show(shown)
            self._facts_digest[tag["name"]] = self._fact_key(tag)

        await asyncio.gather(*(learn(tag) for tag in wanted))

    def _fact_key(self, tag: dict[str, Any]) -> str:
        """What /api/show depends on: a model's digest; for an agent (no digest), its settings."""
        if (tag.get("details") or {}).get("format") != "agent":
            return str(tag.get("digest", ""))
        agent = next((a for a in self.app.model.agents if a.get("name") == tag.get("name")), {})
        return json.dumps(agent, sort_keys=True, default=str)

    @on(Select.Changed, "#chat-model")
    async def _model_changed(self) -> None:
        if self.model != self._shown:
            await self.show_conversation()
        self.refresh_context()

    # ---- the status line: turns and the context meter ---------------------------------------------------------------
    def _update_status(self) -> None:
        model = self.model
        status = self.query_one("#chat-status", Static)
        if model is None:
            status.update("[yellow]no model: is the backend up?[/]")
            return
        conversation = self.conversation(model)
        turns = len(conversation.turns)
        head = f"{turns} turn{'s' if turns != 1 else ''}" if turns else "new conversation"
        status.update(f"[dim]{head} ·[/] {meter_text(conversation.context_tokens, self.context_limit(model))}")

    def context_limit(self, model: str) -> ContextLimit | None:
        served = served_model(self._tags, model)
        return context_limit(self.conversation(model).options, self._loaded_ctx.get(served), self.facts.get(model))

    @work(exclusive=True, group="chat-context", exit_on_error=False)
    async def refresh_context(self) -> None:
        """What the backend loaded the model with (/api/ps), for the meter's denominator."""
        model = self.model
        if model is None:
            return
        try:
            ps = await self.app.gateway.ps()
        except GatewayError:
            return  # the meter falls back on the model's own num_ctx
        served = served_model(self._tags, model)
        self._loaded_ctx[served] = loaded_context(ps, served)
        self._update_status()

    # ---- showing a conversation -------------------------------------------------------------------------------------
    async def show_conversation(self) -> None:
        """Render the selected model's current conversation, and put its options in the bar."""
        log = self.query_one("#chat-log", VerticalScroll)
        await log.remove_children()
        self._shown = self.model
        conversation = self.conversation()
        self._options_to_bar(conversation)
        if not conversation.turns:
            await log.mount(Static(EMPTY_CHAT_HINT, classes="hint chat-empty"))
        await log.mount_all(TurnView(turn) for turn in conversation.turns)
        self._update_status()
        self.refresh_bindings()

    def _options_to_bar(self, conversation: Conversation) -> None:
        if self.query_one(ChatOptions).show(conversation) and self.model:
            self.notify(f"options for {self.model}: {options_words(conversation)}", title="chat", timeout=4)

    @on(Input.Changed, "#chat-options Input")
    def _bar_changed(self) -> None:
        """The bar is the conversation's options: what is typed there (when valid) goes with it, and the meter
        follows a new num_ctx at once."""
        if self.model is None:
            return
        bar = self.query_one(ChatOptions)
        conversation = self.conversation()
        conversation.options, _ = bar.read()
        conversation.system = bar.system
        self._update_status()

    async def action_new_conversation(self) -> None:
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        model = self.model
        if model is None:
            return
        previous = self.conversation(model)
        self.conversations[model] = Conversation(model=model, options=dict(previous.options), system=previous.system)
        await self.show_conversation()
        self.notify(f"new conversation with {model}" + (" (the last one is saved: ctrl+o)" if previous.saved else ""))

    def action_copy_answer(self) -> None:
        turns = self.conversation().turns
        answer = next((t.answer for t in reversed(turns) if t.answer), "")
        if not answer:
            self.notify("No answer to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(answer)
        self.notify(f"answer copied ({len(answer):,} characters)")

    # ---- saved conversations ----------------------------------------------------------------------------------------
    def action_open_conversations(self) -> None:
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        self.app.push_screen(ConversationsScreen(), self._open_chosen)

    def _open_chosen(self, conversation_id: str | None) -> None:
        if conversation_id:
            self.reopen(conversation_id)

    @work(exclusive=True, group="chat-open", exit_on_error=False)
    async def reopen(self, conversation_id: str) -> None:
        try:
            source = self.app.source
            assert source is not None  # panes are mounted once the source runs
            conversation = Conversation.from_json(await source.load_conversation(conversation_id))
        except (SourceError, ConversationError) as exc:
            self.notify(f"cannot open the conversation: {exc}", severity="error")
            return
        conversation.saved = True
        select = self.query_one("#chat-model", Select)
        if conversation.model not in self._offered:
            self.notify(
                f"“{conversation.title}” talks to {conversation.model}, which the backend does not offer now",
                severity="error",
            )
            return
        self.conversations[conversation.model] = conversation
        for turn in conversation.turns:
            if turn.prompt not in self.prompt_history:
                self.prompt_history.append(turn.prompt)
        with select.prevent(Select.Changed):
            select.value = conversation.model
        await self.show_conversation()
        self.refresh_context()
        self.chat_input.focus()
        self.notify(f"reopened “{conversation.title}” ({len(conversation.turns)} turns)", timeout=4)

    def save(self, conversation: Conversation) -> None:
        data = conversation.to_json()  # as it is now: the saves are written in the order they were asked for
        self.run_worker(self._save(conversation, data), group="chat-save", exit_on_error=False)

    async def _save(self, conversation: Conversation, data: dict[str, Any]) -> None:
        assert self._save_lock is not None  # made in on_mount
        source = self.app.source
        assert source is not None  # panes are mounted once the source runs
        async with self._save_lock:
            try:
                saved = await source.save_conversation(data)
            except SourceError as exc:
                if not self._store_warned:
                    self._store_warned = True
                    self.notify(f"the conversation is not saved: {exc}", severity="warning", timeout=8)
                return
        conversation.saved = True
        conversation.session_id = saved.get("session_id") or conversation.session_id

    def action_export_conversation(self) -> None:
        conversation = self.conversation()
        if not conversation.turns:
            self.notify("Nothing to write yet: ask something first", severity="warning")
            return
        self.run_worker(self._export(conversation.to_json()), group="chat-export", exit_on_error=False)

    async def _export(self, data: dict[str, Any]) -> None:
        try:
            source = self.app.source
            assert source is not None  # panes are mounted once the source runs
            path = await source.export_conversation(data)
        except SourceError as exc:
            self.notify(f"conversation not written: {exc}", severity="error", timeout=10)
            return
        self.notify(str(path), title="conversation written", timeout=10)

    # ---- one turn ---------------------------------------------------------------------------------------------------
    @on(ChatInput.Submitted, "#chat-input")
    async def _submitted(self, event: ChatInput.Submitted) -> None:
        prompt = event.text.strip()
        if prompt and await self.send(prompt):
            event.chat_input.remember(prompt)
            event.chat_input.clear_prompt()

    async def action_regenerate(self) -> None:
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        conversation = self.conversation()
        if not conversation.turns:
            self.notify("No answer to regenerate yet", severity="warning")
            return
        last = conversation.turns.pop()
        views = self.query(TurnView)
        if views:
            await views.last().remove()
        if not await self.send(last.prompt):
            conversation.turns.append(last)
            await self.query_one("#chat-log", VerticalScroll).mount(TurnView(last))

    async def send(self, prompt: str) -> bool:
        """Start a turn; False (with a notification) when it cannot start."""
        model = self.model
        if model is None:
            self.notify("Pick a model first", severity="warning")
            return False
        if self.streaming:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return False
        bar = self.query_one(ChatOptions)
        options, problem = bar.read()
        if problem is not None:
            self.notify(problem, severity="error")
            return False
        conversation = self.conversation(model)
        conversation.options = options
        conversation.system = bar.system
        body: dict[str, Any] = {"model": model, "messages": conversation.request_messages(prompt)}
        if options:
            body["options"] = options
        turn = Turn(prompt, model=model, options=dict(options), at=self.app.clock())
        conversation.turns.append(turn)
        view = TurnView(turn)
        self._starting = True
        try:
            await self.query(".chat-empty").remove()
            await self.query_one("#chat-log", VerticalScroll).mount(view)
            self._answer = self.stream_answer(body, conversation, view)
        finally:
            self._starting = False
        self._update_status()
        self.refresh_bindings()
        return True

    def action_stop(self) -> None:
        if self.streaming and self._answer is not None:  # a first turn only starting has no worker to stop yet
            self._answer.cancel()

    @work(exclusive=True, group="chat-answer", exit_on_error=False)
    async def stream_answer(self, body: dict[str, Any], conversation: Conversation, view: TurnView) -> None:
        turn = view.turn
        stream = Markdown.get_stream(view.answer)
        try:
            async with self.app.gateway.chat(body) as chat:
                turn.request_id = chat.request_id
                async for chunk in chat.chunks:
                    await self._take(chunk, view, stream)
        except asyncio.CancelledError:
            turn.state = "stopped"
            if self.is_attached:  # Esc, not the console closing
                await stream.stop()
                view.show_stats()
                self._finish(conversation)
                if turn.request_id:
                    self.run_worker(self._show_stats(view, conversation), group="chat-stats", exit_on_error=False)
            raise
        except GatewayError as exc:
            await self._failed(conversation, view, stream, exc.message)
            return
        except Exception as exc:  # a broken stream still ends as a sentence under the turn, not a traceback
            log.exception("the chat answer failed")
            await self._failed(conversation, view, stream, str(exc) or "the answer broke off")
            return
        await stream.stop()
        turn.state = "ok"
        await self._show_stats(view)
        self._finish(conversation)

    async def _take(self, chunk: dict[str, Any], view: TurnView, stream: MarkdownStream) -> None:
        if "error" in chunk:
            raise GatewayError(error_sentence(chunk["error"]))
        turn = view.turn
        message = chunk.get("message") or {}
        thought = message.get("thinking") or ""
        if thought:
            view.thought(thought)
        piece = message.get("content") or ""
        if piece:
            first = not turn.answer
            turn.answer += piece
            if first:
                view.answering()
            await stream.write(piece)
        if chunk.get("done"):
            turn.prompt_tokens = int(chunk.get("prompt_eval_count") or 0)
            turn.completion_tokens = int(chunk.get("eval_count") or 0)

    async def _failed(self, conversation: Conversation, view: TurnView, stream: MarkdownStream, message: str) -> None:
        await stream.stop()
        view.turn.state = "error"
        view.turn.error = message
        view.show_stats()
        self._finish(conversation)

    def _finish(self, conversation: Conversation) -> None:
        self._update_status()
        self.save(conversation)
        self.refresh_context()

    async def _show_stats(self, view: TurnView, stopped_in: Conversation | None = None) -> None:
        """The answer's cost, once the request's `finished` event (with its final energy) has come."""
        turn = view.turn
        request_id = turn.request_id
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
        turn.stats = stats_line(record) if record is not None else "done"
        if record is not None and not turn.prompt_tokens:
            turn.prompt_tokens, turn.completion_tokens = record.prompt_tokens, record.completion_tokens
        view.show_stats()
        self._update_status()
        if stopped_in is not None:
            self.save(stopped_in)  # again, now with the stopped answer's cost
