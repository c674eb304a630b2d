"""The Chat pane driven through Pilot over the demo (simulated qwen3 models that think, and an embedding model):
multi-line input and paste, prompt history, conversations saved, reopened and exported, regenerate, thinking that
folds and unfolds, the context meter, chat-capable models only, options per conversation, errors as sentences."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import ollama
import pytest
from textual import events
from textual.widgets import Collapsible, DataTable, Input, Select, Static
from textual.widgets._collapsible import CollapsibleTitle

from claw_tui import store
from claw_tui.ui.app import ClawApp
from claw_tui.ui.client import GatewayClient
from claw_tui.ui.panes.chat import ChatPane
from claw_tui.ui.screens.conversations import ConversationsScreen
from claw_tui.ui.widgets.chat_input import ChatInput
from claw_tui.ui.widgets.chat_turn import TurnView
from tests.conftest import start_demo_session
from tests.test_tui import ask, gateway_json, notifications, stats_lines, text_of, wait_for


@pytest.fixture
def demo_runner(tmp_path):
    runner = start_demo_session(tmp_path)
    yield runner
    runner.stop()


async def open_chat(pilot) -> ChatPane:
    app = pilot.app
    await wait_for(lambda: app.panes_ready)  # hidden panes mount just after the first frame
    await pilot.press("f2")
    await wait_for(lambda: not app.query_one("#chat-model", Select).is_blank())
    return app.query_one(ChatPane)


async def answered(app, count: int = 1) -> None:
    await wait_for(lambda: sum("TTFT" in line for line in stats_lines(app)) >= count)


def written_note(app):
    return next((n for n in app._notifications if n.title == "conversation written"), None)


def status_text(app) -> str:
    return text_of(app.query_one("#chat-status", Static))


# ---- one turn and what it cost ------------------------------------------------------------------------------------
async def test_chat_streams_an_answer_with_its_stats(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        assert app.query_one("#chat-model", Select).value == "qwen3:8b"
        await ask(pilot, "why is the sky blue?")
        await answered(app)
        line = next(line for line in stats_lines(app) if "TTFT" in line)
        assert " ms" in line and "tok/s" in line and "J/tok" in line and "prefill" in line and "decode" in line
        assert pane.history[-1]["role"] == "assistant" and pane.history[-1]["content"]
        record = demo_runner.session.ledger.records()[-1]
        assert record.status == "ok" and record.energy_j > 0
        # J/tok is the request's own energy (prefill + decode) per answer token.
        assert f"{record.energy_j / record.completion_tokens:.2f} J/tok" in line
        await pilot.press("ctrl+y")
        assert app.clipboard == pane.history[-1]["content"]


async def test_a_turn_that_loads_the_model_shows_the_load_apart(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_chat(pilot)
        app.query_one("#chat-model", Select).value = "llama3.2:3b"  # not loaded yet in the demo
        await ask(pilot, "hello")
        await answered(app)
        record = session.ledger.records()[-1]
        assert record.model == "llama3.2:3b" and record.load_j > 0
        line = next(line for line in stats_lines(app) if "TTFT" in line)
        assert "load " in line and line.index("decode") < line.index("load ")
        assert f"{record.energy_j / record.completion_tokens:.2f} J/tok" in line  # the load is not in J/tok


async def test_escape_stops_the_answer_and_the_gateway_cancels_upstream(demo_runner):
    session = demo_runner.session
    session.sim.state.stall_next(30.0, after_chunks=3)
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "tell me a long story")
        await wait_for(lambda: pane.conversation().turns and pane.conversation().turns[-1].thinking)
        assert pane.streaming
        await pilot.press("escape")
        record = await wait_for(lambda: next((r for r in session.ledger.records() if r.status == "cancelled"), None))
        assert record.http_status == 499 and record.endpoint == "/api/chat"
        await wait_for(lambda: any(line.startswith("stopped") for line in stats_lines(app)))
        assert not pane.streaming
        assert pane.conversation().turns[-1].thinking  # what the model had thought so far stays


async def test_backend_errors_and_an_unreachable_gateway_read_as_sentences(demo_runner):
    session = demo_runner.session
    # More failures than the gateway retries (it retries before the first byte), so the error reaches the pane.
    session.sim.state.fail_next(n=5, status=500, message="CUDA error: out of memory")
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "hello")
        await wait_for(lambda: any("out of memory" in line for line in stats_lines(app)))
        line = next(line for line in stats_lines(app) if "out of memory" in line)
        assert line.startswith("error: ") and "Error(" not in line and "Exception" not in line
        assert pane.history == []  # the failed turn is not sent as context: it can be asked again

    app = ClawApp(session)
    app.gateway = GatewayClient("http://127.0.0.1:9")  # nothing listens there
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.panes_ready)
        await pilot.press("f2")
        await wait_for(lambda: "gateway unreachable" in status_text(app))
        assert app.is_running


async def test_an_answer_cut_midway_ends_with_a_sentence_and_keeps_what_came(demo_runner):
    session = demo_runner.session
    session.sim.state.die_mid_stream_after(6)  # the backend drops the connection mid-answer
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "tell me a story")
        await wait_for(lambda: any(line.startswith("error: ") for line in stats_lines(app)))
        line = next(line for line in stats_lines(app) if line.startswith("error: "))
        record = await wait_for(lambda: next((r for r in session.ledger.records() if r.status == "error"), None))
        assert record.error and record.error in line  # the gateway's own sentence
        assert line.startswith("error: backend 'sim' failed mid-stream")  # a sentence, no exception class name
        assert pane.conversation().turns[0].state == "error"


async def serve_a_broken_chat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A gateway that starts an answer and hangs up in the middle of it."""
    await reader.readuntil(b"\r\n\r\n")
    line = b'{"message":{"role":"assistant","content":"Half an "},"done":false}\n'
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
    writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
    await writer.drain()
    writer.close()


async def test_a_gateway_that_hangs_up_mid_answer_reads_as_a_sentence(demo_runner):
    server = await asyncio.start_server(serve_a_broken_chat, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = ClawApp(demo_runner.session)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await open_chat(pilot)
            app.gateway = GatewayClient(f"http://127.0.0.1:{port}")
            await ask(pilot, "hello")
            await wait_for(lambda: any(line.startswith("error: ") for line in stats_lines(app)))
            line = next(line for line in stats_lines(app) if line.startswith("error: "))
            assert "the connection to the gateway broke off before the answer ended" in line
            assert "RemoteProtocolError" not in line and "httpx" not in line
            assert pane.conversation().turns[0].answer == "Half an "
    finally:
        server.close()
        await server.wait_closed()


# ---- the input: several lines, pastes, history ----------------------------------------------------------------------
async def test_shift_enter_and_ctrl_j_start_new_lines_and_enter_sends_them_all(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        box = app.query_one("#chat-input", ChatInput)
        box.focus()
        await pilot.press(*"first line", "shift+enter", *"second line", "ctrl+j", *"third line")
        assert box.text == "first line\nsecond line\nthird line"
        assert not session.ledger.records()  # nothing sent yet
        await pilot.press("enter")
        await answered(app)
        assert box.text == ""
        assert pane.conversation().turns[0].prompt == "first line\nsecond line\nthird line"
        assert text_of(app.query_one(".chat-user", Static)) == "first line\nsecond line\nthird line"
        # The backend got all three lines: the same message sent by the ollama SDK counts the same prompt tokens.
        sent = session.ledger.records()[-1].prompt_tokens
        client = ollama.AsyncClient(host=session.gateway_url)
        same = await client.chat(
            model="qwen3:8b", messages=[{"role": "user", "content": "first line\nsecond line\nthird line"}]
        )
        first_only = await client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "first line"}])
        assert sent == same.prompt_eval_count != first_only.prompt_eval_count


async def test_a_pasted_block_is_kept_whole(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        box = app.query_one("#chat-input", ChatInput)
        box.focus()
        await pilot.press(*"Review this:", "ctrl+j")  # the terminal delivers a paste to the app, as one event
        app.post_message(events.Paste("def f(x):\n    return x * 2\n\nprint(f(3))"))
        await wait_for(lambda: "print(f(3))" in box.text)
        assert box.text == "Review this:\ndef f(x):\n    return x * 2\n\nprint(f(3))"
        await pilot.press("enter")
        await answered(app)
        assert pane.conversation().turns[0].prompt == "Review this:\ndef f(x):\n    return x * 2\n\nprint(f(3))"


async def test_what_terminals_send_reaches_the_input_as_new_lines_a_paste_and_a_send(demo_runner):
    """The bytes a terminal writes, through Textual's own parser, as the driver delivers them: kitty's shift+Enter,
    a bare line feed (ctrl+j in every terminal), a bracketed paste of several lines, then a carriage return."""
    from textual._xterm_parser import XTermParser

    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        box = app.query_one("#chat-input", ChatInput)
        box.focus()
        parser = XTermParser()
        for data in ("one", "\x1b[13;2u", "two", "\n", "\x1b[200~three\nfour\r\nfive\x1b[201~"):
            for event in parser.feed(data):
                app.post_message(event)
            await pilot.pause()
        await wait_for(lambda: box.text == "one\ntwo\nthree\nfour\nfive")
        for event in parser.feed("\r"):
            app.post_message(event)
        await answered(app)
        assert pane.conversation().turns[0].prompt == "one\ntwo\nthree\nfour\nfive"


async def test_up_and_down_walk_the_prompt_history(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        box = app.query_one("#chat-input", ChatInput)
        await ask(pilot, "first question")
        await answered(app)
        await ask(pilot, "second\nquestion")
        await answered(app, 2)
        await pilot.press(*"a draft")
        await pilot.press("up")
        assert box.text == "second\nquestion"
        await pilot.press("up")  # the cursor is on the last line of a two-line prompt: it moves up a line
        assert box.text == "second\nquestion" and box.cursor_location[0] == 0
        await pilot.press("up")
        assert box.text == "first question"
        await pilot.press("up")  # the oldest stays
        assert box.text == "first question"
        await pilot.press("down")
        assert box.text == "second\nquestion"
        await pilot.press("down", "down")  # to the last line, then past the newest: the draft comes back
        assert box.text == "a draft"
        await pilot.press("enter")
        await answered(app, 3)
        await pilot.press("up")
        assert box.text == "a draft"


# ---- thinking, the context meter, the models offered ----------------------------------------------------------------
async def test_thinking_is_folded_into_one_line_and_unfolds(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "why is the sky blue?")
        await answered(app)
        turn = pane.conversation().turns[0]
        assert turn.thinking and turn.answer
        thinking = app.query_one(".chat-thinking", Collapsible)
        words = len(turn.thinking.split())
        assert thinking.collapsed and thinking.title == f"thought for {words:,} words"
        text = app.query_one(".chat-thinking-text", Static)
        assert text.region.height == 0  # folded: nothing of the thoughts on screen
        await pilot.click(thinking.query_one(CollapsibleTitle))
        await wait_for(lambda: not thinking.collapsed and text.region.height > 0)
        assert text_of(text) == turn.thinking
        thinking.query_one(CollapsibleTitle).focus()
        await pilot.press("enter")  # the keyboard folds it again
        await wait_for(lambda: thinking.collapsed)


async def test_the_context_meter_counts_the_backends_tokens_against_the_loaded_context(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await open_chat(pilot)
        await wait_for(lambda: "ctx" in status_text(app))
        assert "ctx — / 40,960 (model max)" in status_text(app)  # qwen3:8b's model_info, before any turn
        await ask(pilot, "why is the sky blue?")
        await answered(app)
        await ask(pilot, "and at sunset?")
        await answered(app, 2)
        record = session.ledger.records()[-1]
        used = record.prompt_tokens + record.completion_tokens  # prompt_eval_count + eval_count of the last turn
        _, ps = await gateway_json(session, "GET", "/api/ps")
        loaded = {m["name"]: m["context_length"] for m in ps["models"]}["qwen3:8b"]
        expected = f"ctx {used:,} / {loaded:,} ({100 * used / loaded:.0f}%, loaded)"
        await wait_for(lambda: expected in status_text(app))
        assert "2 turns" in status_text(app)
        assert pane.conversation().context_tokens == used


async def test_a_typed_num_ctx_is_the_meters_limit_at_once(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_chat(pilot)
        app.query_one("#chat-num-ctx", Input).value = "2048"
        await wait_for(lambda: "/ 2,048 (num_ctx)" in status_text(app))


async def test_embedding_models_are_not_offered(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        _, tags = await gateway_json(session, "GET", "/api/tags")
        assert "nomic-embed-text:latest" in [t["name"] for t in tags["models"]]  # the backend has it
        offered = [value for _, value in app.query_one("#chat-model", Select)._options if isinstance(value, str)]
        assert "nomic-embed-text:latest" not in offered
        assert {"qwen3:8b", "qwen3:32b", "llama3.2:3b"} <= set(offered)


async def test_each_conversation_keeps_its_own_options_when_the_model_changes(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await open_chat(pilot)
        select = app.query_one("#chat-model", Select)
        num_ctx = app.query_one("#chat-num-ctx", Input)
        temperature = app.query_one("#chat-temperature", Input)
        num_ctx.value, temperature.value = "4096", "0.2"
        await ask(pilot, "hello")
        await answered(app)
        _, ps = await gateway_json(session, "GET", "/api/ps")
        assert {m["name"]: m["context_length"] for m in ps["models"]}["qwen3:8b"] == 4096

        # Another model: its conversation carries no options, so the bar is empty and says so.
        select.value = "llama3.2:3b"
        await wait_for(lambda: num_ctx.value == "" and temperature.value == "")
        assert any("options for llama3.2:3b: the model's own" in n for n in notifications(app))
        await ask(pilot, "hello")
        await answered(app)
        _, ps = await gateway_json(session, "GET", "/api/ps")
        assert {m["name"]: m["context_length"] for m in ps["models"]}["llama3.2:3b"] != 4096
        assert pane.conversation("llama3.2:3b").turns[0].options == {}

        # Back: qwen3:8b's conversation still carries its options, shown in the bar.
        select.value = "qwen3:8b"
        await wait_for(lambda: num_ctx.value == "4096" and temperature.value == "0.2")
        assert any("options for qwen3:8b: temperature 0.2, num_ctx 4096" in n for n in notifications(app))


async def test_invalid_options_are_refused_before_anything_is_sent(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        app.query_one("#chat-num-ctx", Input).value = "0"
        await ask(pilot, "refused")
        await wait_for(lambda: any("num_ctx must be more than 0" in n for n in notifications(app)))
        assert not session.ledger.records()
        assert app.query_one("#chat-input", ChatInput).text == "refused"  # nothing typed is lost
        app.query_one("#chat-num-ctx", Input).value = "2048"
        app.query_one("#chat-system", Input).value = "Answer in one line."
        await pilot.press("enter")
        await answered(app)
        assert session.ledger.records()[-1].prompt_tokens > 0


# ---- conversations: per model, regenerate, saved, reopened, exported -------------------------------------------------
async def test_each_model_keeps_its_conversation_and_ctrl_l_starts_a_new_one(demo_runner):
    app = ClawApp(demo_runner.session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        select = app.query_one("#chat-model", Select)
        await ask(pilot, "first question")
        await answered(app)
        select.value = "support"  # an agent: its own conversation
        await wait_for(lambda: not app.query(".chat-user"))
        await ask(pilot, "agent question")
        await answered(app)
        assert demo_runner.session.ledger.records()[-1].agent == "support"
        select.value = "qwen3:8b"
        await wait_for(lambda: [text_of(w) for w in app.query(".chat-user")] == ["first question"])
        app.query_one("#chat-input", ChatInput).focus()
        await pilot.press("ctrl+l")
        await wait_for(lambda: not app.query(".chat-user"))
        assert pane.conversation("qwen3:8b").messages == []
        assert len(pane.conversation("support").turns) == 1


async def test_ctrl_r_regenerates_the_last_answer(demo_runner):
    session = demo_runner.session
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "first question")
        await answered(app)
        await ask(pilot, "name a colour")
        await answered(app, 2)
        before = session.ledger.records()[-1]
        await pilot.press("ctrl+r")
        await wait_for(lambda: len(session.ledger.records()) == 3)
        await answered(app, 2)
        await wait_for(lambda: not pane.streaming)
        turns = pane.conversation().turns
        assert [t.prompt for t in turns] == ["first question", "name a colour"]
        assert len(app.query(TurnView)) == 2
        again = session.ledger.records()[-1]
        assert again.id != before.id and again.status == "ok"
        assert again.prompt_tokens == before.prompt_tokens  # the same context was sent again
        assert turns[-1].request_id == again.id


async def test_conversations_are_saved_reopened_and_exported_in_process(demo_runner, tmp_path):
    session = demo_runner.session
    path = session.store.path
    app = ClawApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_chat(pilot)
        await ask(pilot, "why is the sky blue?")
        await answered(app)
        await ask(pilot, "and at sunset?")
        await answered(app, 2)
        conversation_id = pane.conversation().id
        saved = await wait_for(lambda: [c for c in store.list_conversations(path) if c["turns"] == 2])
        assert saved[0]["id"] == conversation_id and saved[0]["title"] == "why is the sky blue?"
        assert saved[0]["model"] == "qwen3:8b" and saved[0]["session_id"] == session.id
        answer = pane.conversation().turns[1].answer

        await pilot.press("ctrl+l")
        await wait_for(lambda: not app.query(".chat-user"))
        await pilot.press("ctrl+o")
        screen = await wait_for(lambda: isinstance(app.screen, ConversationsScreen) and app.screen)
        table = screen.query_one("#conversations-table", DataTable)
        await wait_for(lambda: table.row_count == 1)
        assert "why is the sky blue?" in str(table.get_row_at(0))
        await pilot.press("enter")
        await wait_for(
            lambda: [text_of(w) for w in app.query(".chat-user")] == ["why is the sky blue?", "and at sunset?"]
        )
        assert pane.conversation().id == conversation_id and pane.conversation().turns[1].answer == answer
        assert "2 turns" in status_text(app)

        # The reopened conversation goes on, with its earlier turns as context, and is saved under the same id.
        await ask(pilot, "and on Mars?")
        await answered(app, 3)
        await wait_for(lambda: store.load_conversation(path, conversation_id)["turns"][2:3])
        assert len(pane.history) == 6

        # ctrl+s writes it as Markdown and says where.
        await pilot.press("ctrl+s")
        note = await wait_for(lambda: written_note(app))
        written = tmp_path / "exports"
        markdown = (written / note.message.rsplit("/", 1)[-1]).read_text()
        assert note.message.startswith(str(written))
        assert markdown.startswith("# why is the sky blue?")
        assert "## You\n\nand on Mars?" in markdown and answer in markdown
        assert "<summary>thought for" in markdown and "TTFT" in markdown


async def test_a_conversation_outlives_its_session_and_can_be_deleted(tmp_path):
    first = start_demo_session(tmp_path)
    try:
        app = ClawApp(first.session)
        async with app.run_test(size=(120, 40)) as pilot:
            await open_chat(pilot)
            await ask(pilot, "remember me")
            await answered(app)
            await wait_for(lambda: store.list_conversations(first.session.store.path))
    finally:
        first.stop()
    second = start_demo_session(tmp_path)  # the same store, a new session
    try:
        assert second.session.id != first.session.id
        app = ClawApp(second.session)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await open_chat(pilot)
            await pilot.press("ctrl+o")
            screen = await wait_for(lambda: isinstance(app.screen, ConversationsScreen) and app.screen)
            table = screen.query_one("#conversations-table", DataTable)
            await wait_for(lambda: table.row_count == 1)
            await pilot.press("enter")
            await wait_for(lambda: [text_of(w) for w in app.query(".chat-user")] == ["remember me"])
            assert pane.conversation().session_id == first.session.id

            await pilot.press("ctrl+o")
            screen = await wait_for(lambda: isinstance(app.screen, ConversationsScreen) and app.screen)
            table = screen.query_one("#conversations-table", DataTable)
            await wait_for(lambda: table.row_count == 1)
            await pilot.press("d")
            await pilot.press("y")
            await wait_for(lambda: table.row_count == 0)
            assert store.list_conversations(second.session.store.path) == []
            await pilot.press("escape")
            assert not isinstance(app.screen, ConversationsScreen)
    finally:
        second.stop()


async def test_without_a_store_the_chat_goes_on_and_says_it_is_not_saved(tmp_path):
    runner = start_demo_session(tmp_path, use_store=False)
    try:
        app = ClawApp(runner.session)
        async with app.run_test(size=(120, 40)) as pilot:
            await open_chat(pilot)
            await ask(pilot, "hello")
            await answered(app)
            await wait_for(lambda: any("not saved" in n and "session store" in n for n in notifications(app)))
            await pilot.press("ctrl+o")
            screen = await wait_for(lambda: isinstance(app.screen, ConversationsScreen) and app.screen)
            hint = screen.query_one("#conversations-hint", Static)
            await wait_for(lambda: "cannot list the conversations" in text_of(hint))
    finally:
        runner.stop()


# ---- attached to a `claw serve --demo` on another process ----------------------------------------------------------
async def test_conversations_go_through_an_attached_service(tmp_path):
    from tests.test_console_attach import Service, attached_app

    service = Service(tmp_path)
    service.start()
    try:
        app = attached_app(service)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await open_chat(pilot)
            await ask(pilot, "why is the sky blue?")
            await answered(app)
            conversation_id = pane.conversation().id
            listed = await wait_for(
                lambda: httpx.get(f"{service.url}/claw/v1/conversations").json()["conversations"], timeout=20
            )
            assert listed[0]["id"] == conversation_id and listed[0]["turns"] == 1
            service_session = httpx.get(f"{service.url}/claw/v1/status").json()["session"]["id"]
            assert listed[0]["session_id"] == service_session

            await pilot.press("ctrl+l")
            await wait_for(lambda: not app.query(".chat-user"))
            await pilot.press("ctrl+o")
            screen = await wait_for(lambda: isinstance(app.screen, ConversationsScreen) and app.screen)
            table = screen.query_one("#conversations-table", DataTable)
            await wait_for(lambda: table.row_count == 1)
            await pilot.press("enter")
            await wait_for(lambda: [text_of(w) for w in app.query(".chat-user")] == ["why is the sky blue?"])
            await ask(pilot, "and at sunset?")
            await answered(app, 2)
            await wait_for(
                lambda: len(httpx.get(f"{service.url}/claw/v1/conversations/{conversation_id}").json()["turns"]) == 2,
                timeout=20,
            )
            await pilot.press("ctrl+s")
            note = await wait_for(lambda: written_note(app))
            markdown = await asyncio.to_thread(Path(note.message).read_text)
            assert "## You\n\nand at sunset?" in markdown
    finally:
        service.stop()
