"""The Chat pane: stream an answer through claw's own gateway and show what it cost (TTFT, tok/s, J/tok)."""

from __future__ import annotations

import asyncio
import json

import httpx
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Markdown, Select, Static
from textual.worker import Worker, WorkerState

from claw_tui.ui import format as fmt
from claw_tui.ui.panes.base import Pane


def stats_line(record) -> str:
    """`TTFT … ms · … tok/s · … J/tok` for one finished request record."""
    parts = [f"TTFT {fmt.ms(record.ttft_ms)}"]
    rate = record.decode_tokens_per_s
    parts.append(f"{rate:.1f} tok/s" if rate else "— tok/s")
    jpt = record.joules_per_token
    parts.append(f"{jpt:.2f} J/tok" if jpt is not None else "N/A J/tok")
    parts.append(f"{record.completion_tokens} tok")
    if record.energy_j > 0:
        parts.append(f"prefill {fmt.joules(record.prefill_j)} · decode {fmt.joules(record.decode_j)}")
    return " · ".join(parts)


class ChatPane(Pane):
    BINDINGS = [Binding("escape", "stop", "Stop answer", show=True)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[dict] = []
        self._answer: Worker | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-bar"):
            yield Select([], prompt="model or agent", id="chat-model", allow_blank=True)
            yield Static("", id="chat-status")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="Ask something — Enter sends, Esc stops", id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-log", VerticalScroll).anchor()
        self.load_models()

    def refresh_data(self) -> None:
        return None

    @work(exclusive=True, group="chat-models")
    async def load_models(self) -> None:
        status = self.query_one("#chat-status", Static)
        try:
            async with httpx.AsyncClient(base_url=self.app.gateway_url, timeout=10) as client:
                response = await client.get("/api/tags")
                response.raise_for_status()
                models = response.json().get("models") or []
        except (httpx.HTTPError, ValueError) as exc:
            status.update(f"[red]cannot list models: {exc}[/]")
            return
        names = [m.get("name") for m in models if m.get("name")]
        select = self.query_one("#chat-model", Select)
        select.set_options([(name, name) for name in names])
        if names and select.is_blank():
            select.value = self.app.default_chat_model(names)
        status.update(f"{len(names)} models" if names else "[yellow]no models on the backend[/]")

    @on(Input.Submitted, "#chat-input")
    def send_prompt(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        model = self.query_one("#chat-model", Select).value
        if not prompt:
            return
        if model is Select.BLANK:
            self.notify("Pick a model first", severity="warning")
            return
        if self._answer is not None and self._answer.is_running:
            self.notify("An answer is still streaming — Esc stops it", severity="warning")
            return
        event.input.value = ""
        log = self.query_one("#chat-log", VerticalScroll)
        answer = Markdown("", classes="chat-answer")
        stats = Static("…", classes="chat-stats")
        log.mount(Static(prompt, classes="chat-user"), answer, stats)
        self.history.append({"role": "user", "content": prompt})
        self._answer = self.stream_answer(str(model), answer, stats)

    def action_stop(self) -> None:
        if self._answer is not None and self._answer.is_running:
            self._answer.cancel()

    @work(exclusive=True, group="chat-answer")
    async def stream_answer(self, model: str, answer: Markdown, stats: Static) -> None:
        text, request_id = "", None
        stream = Markdown.get_stream(answer)
        try:
            async with httpx.AsyncClient(base_url=self.app.gateway_url, timeout=httpx.Timeout(600, connect=5)) as client:
                body = {"model": model, "messages": self.history, "stream": True}
                async with client.stream("POST", "/api/chat", json=body) as response:
                    request_id = response.headers.get("X-Claw-Request-Id")
                    if response.status_code != 200:
                        content = await response.aread()
                        stats.update(f"[red]error {response.status_code}: {_error_text(content)}[/]")
                        self.history.pop()
                        return
                    async for line in response.aiter_lines():
                        chunk = _parse(line)
                        if chunk is None:
                            continue
                        if "error" in chunk:
                            stats.update(f"[red]error: {chunk['error']}[/]")
                            return
                        piece = (chunk.get("message") or {}).get("content") or ""
                        if piece:
                            text += piece
                            await stream.write(piece)
        except asyncio.CancelledError:
            stats.update("[yellow]stopped[/]")
            self._remember_answer(text)
            raise
        except httpx.HTTPError as exc:
            stats.update(f"[red]gateway error: {exc}[/]")
            return
        finally:
            await stream.stop()
        self._remember_answer(text)
        await self._show_stats(request_id, stats)

    def _remember_answer(self, text: str) -> None:
        if text:
            self.history.append({"role": "assistant", "content": text})

    async def _show_stats(self, request_id: str | None, stats: Static) -> None:
        session = self.app.session
        record = session.ledger.get(request_id) if request_id else None
        if record is None:
            stats.update("done")
            return
        for _ in range(20):  # energy becomes final once the power samples cover the answer (< 1 s)
            await asyncio.to_thread(session.refresh_telemetry)
            if record.energy_final or session.sampler is None or session.sampler.state != "ok":
                break
            await asyncio.sleep(0.1)
        stats.update(stats_line(record))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self._answer and event.state == WorkerState.ERROR:
            self.notify(f"chat failed: {event.worker.error}", severity="error")


def _parse(line: str) -> dict | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_text(content: bytes) -> str:
    try:
        error = json.loads(content).get("error")
        return error if isinstance(error, str) else json.dumps(error)
    except (ValueError, AttributeError):
        return content.decode(errors="replace")[:200]
