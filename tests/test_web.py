"""`claw web`: the console in a real headless Chromium, attached to a running `claw serve`; the page asks for the
service's token off loopback; with no service it refuses to start its own gateway."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.conftest import wait_until
from tests.test_console_attach import Service
from tests.test_serve import free_port

ESCAPES = re.compile(r"\x1b\[[0-9;?$<>=]*[A-Za-z~]")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
]
# Everything the page's terminal receives, as text: what it draws is in there.
RECORD_TERMINAL = """
window.__terminalText = "";
const decoder = new TextDecoder();
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = protocols ? new NativeWebSocket(url, protocols) : new NativeWebSocket(url);
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") { window.__terminalText += event.data; return; }
    const add = (buffer) => { window.__terminalText += decoder.decode(buffer, {stream: true}); };
    if (event.data instanceof ArrayBuffer) { add(event.data); } else { event.data.arrayBuffer().then(add); }
  });
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
"""


def start_web(service_url: str, listen: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "web", "--connect", service_url, "--listen", listen, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or dict(os.environ),
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def page_answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 401)
    except httpx.HTTPError:
        return False


class Browser:
    """Headless Chromium driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.process: subprocess.Popen | None = None
        self._next_id = 0

    def start(self) -> str:
        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30)
        port = int(port_file.read_text().split()[0])
        pages = wait_until(
            lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        )
        return pages[0]["webSocketDebuggerUrl"]

    async def call(self, ws, method: str, **params) -> dict:
        self._next_id += 1
        await ws.send_json({"id": self._next_id, "method": method, "params": params})
        while True:
            message = json.loads((await ws.receive()).data)
            if message.get("id") == self._next_id:
                return message.get("result", {})

    async def evaluate(self, ws, expression: str):
        result = await self.call(ws, "Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path)
    service.start()
    yield service
    stop(service.process)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
async def test_the_console_in_a_real_browser(service, tmp_path):
    port = free_port()
    web = start_web(service.url, f"127.0.0.1:{port}")
    browser = Browser(tmp_path / "profile")
    try:
        wait_until(lambda: page_answers(f"http://127.0.0.1:{port}/") or web.poll() is not None, timeout=30)
        assert web.poll() is None, web.stderr.read()
        debugger = await asyncio.to_thread(browser.start)
        async with aiohttp.ClientSession() as http, http.ws_connect(debugger, max_msg_size=0) as ws:
            await browser.call(ws, "Page.enable")
            await browser.call(ws, "Page.addScriptToEvaluateOnNewDocument", source=RECORD_TERMINAL)
            await browser.call(ws, "Page.navigate", url=f"http://127.0.0.1:{port}/")
            deadline = time.monotonic() + 60
            text = ""
            while time.monotonic() < deadline:
                text = ESCAPES.sub("", await browser.evaluate(ws, "window.__terminalText || ''") or "")
                if "attached · claw serve 127.0.0.1:" in text and "Power W · GPU 0" in text:
                    break
                await asyncio.sleep(0.5)
            assert "attached · claw serve 127.0.0.1:" in text, text[-2000:]
            assert "Power W · GPU 0" in text and "F1 Power" in text
            assert await browser.evaluate(ws, "document.body.classList.contains('-first-byte')")
            shot = await browser.call(ws, "Page.captureScreenshot", format="png")
            (tmp_path / "claw-web.png").write_bytes(base64.b64decode(shot["data"]))
        # The browser's console is a client of the service: it started no gateway of its own.
        status = httpx.get(service.url + "/claw/v1/status").json()
        assert status["face"] == "serve"
    finally:
        browser.stop()
        stop(web)


def test_off_loopback_the_page_asks_for_the_services_token(tmp_path):
    service = Service(tmp_path)
    service.config.write_text(service.config.read_text().replace("[gateway]\n", '[gateway]\ntokens = ["t0ken"]\n'))
    service.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CLAW_TOKEN"}
    refused = start_web(service.url, f"0.0.0.0:{port}", env=env)
    try:
        assert refused.wait(timeout=30) == 1
        assert "needs a token" in refused.stderr.read()
        web = start_web(service.url, f"0.0.0.0:{port}", "--token", "t0ken", env=env)
        try:
            wait_until(lambda: page_answers(f"http://127.0.0.1:{port}/") or web.poll() is not None, timeout=30)
            assert web.poll() is None, web.stderr.read()
            assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 401
            assert httpx.get(f"http://127.0.0.1:{port}/", params={"token": "wrong"}).status_code == 401
            page = httpx.get(f"http://127.0.0.1:{port}/", params={"token": "t0ken"})
            assert page.status_code == 200 and "claw_web" in page.cookies
            assert httpx.get(f"http://127.0.0.1:{port}/", cookies=page.cookies).status_code == 200
        finally:
            stop(web)
    finally:
        stop(service.process)


def test_with_no_service_the_web_face_does_not_start(tmp_path):
    port = free_port()
    web = start_web(f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{port}")
    assert web.wait(timeout=30) == 1
    assert "no claw service answers" in web.stderr.read()
