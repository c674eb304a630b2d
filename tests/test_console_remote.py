"""The attached console's source against a server that is not a well-behaved claw: what it answers is checked
before the console uses it."""

from __future__ import annotations

import pytest

from claw_tui.console.remote import RemoteSource
from claw_tui.console.source import SourceError
from claw_tui.httpserver import AppServer


async def proxy_page(scope, receive, send) -> None:
    """Every request answered 200 with an HTML page, as a misconfigured reverse proxy does."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<html>welcome to the proxy</html>"})


async def test_commands_answered_without_json_are_a_clear_source_error():
    server = AppServer(proxy_page)
    await server.start()
    source = RemoteSource(server.url)
    try:
        with pytest.raises(SourceError, match="not JSON"):
            await source.set_governor(True)
        with pytest.raises(SourceError, match="not JSON"):
            await source.save_conversation({"id": "c1", "model": "qwen3:8b", "turns": []})
    finally:
        await source.stop()
        await server.stop()
