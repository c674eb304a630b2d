"""Logging per face, through the command line: -v / -vv on stderr, `claw serve`'s logfmt lines with the request id
(journald's form under systemd), and the console's log file (written, never shown on the terminal)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import httpx
import pytest
from textual.widgets import Static

from claw_tui import logs
from claw_tui.ui.app import ClawApp
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parent.parent
LOGFMT_LINE = re.compile(
    r"^(<\d>)?(ts=\S+ )?level=(debug|info|warning|error|critical) logger=\S+ (request_id=\S+ )?msg="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claw_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.05\n')
    return dict(os.environ, CLAW_CONFIG=str(config), XDG_STATE_HOME=str(tmp_path / "state"), **extra)


# ---- one-shot faces: warnings only, more with each -v -----------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "shown", "hidden"),
    [
        ([], [], ["INFO", "DEBUG"]),
        (["-vv"], ["DEBUG claw_tui.cli: claw ", ": gpu (pid ", "DEBUG claw_tui.cli: options: ", "'demo': True"], []),
    ],
    ids=["quiet", "-vv"],
)
def test_each_v_shows_more_of_a_faces_log_on_stderr(tmp_path, flags, shown, hidden):
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", *flags, "gpu", "--demo", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=claw_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gpus"], "the face's own output stays on stdout, whole"
    if not shown:
        assert result.stderr == ""
    for text in shown:
        assert text in result.stderr
    for text in hidden:
        assert text not in result.stderr


# ---- claw serve: logfmt on stderr with request ids ---------------------------------------------------------------
def run_serve_and_chat(tmp_path: Path, *flags: str, stderr, env: dict[str, str]) -> str:
    """Start `claw serve --demo`, send one chat request, stop it with SIGTERM; the request id the gateway gave."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port), "--sim-speed", "20", *flags],
        stderr=stderr,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return httpx.get(url + "/api/version", timeout=1).status_code == 200
            except httpx.HTTPError:
                return process.poll() is not None

        wait_until(up, timeout=30)
        assert process.poll() is None
        body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        response = httpx.post(url + "/api/chat", json=body, timeout=30)
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        return response.headers["x-claw-request-id"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_logs_one_logfmt_line_per_record_and_names_the_request(tmp_path):
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        request_id = run_serve_and_chat(tmp_path, "-v", stderr=stderr, env=claw_env(tmp_path))
    lines = err.read_text().splitlines()
    records = [line for line in lines if not line.startswith("claw: ")]  # the one plain line: where it listens
    assert records and all(LOGFMT_LINE.match(line) for line in records), lines
    assert all(line.startswith("ts=") for line in records)
    answered = [line for line in records if f"request_id={request_id} " in line]
    assert any('msg="POST /api/chat answered 200"' in line for line in answered), lines
    assert any('logger=claw.serve msg="stopped cleanly"' in line for line in records)
    assert any('level=debug logger=claw_tui.commands.common msg="config: ' in line for line in records)


def test_serve_without_v_keeps_the_request_lines_out(tmp_path):
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        run_serve_and_chat(tmp_path, stderr=stderr, env=claw_env(tmp_path))
    text = err.read_text()
    assert "level=info logger=claw.serve" in text
    assert "request_id=" not in text and "level=debug" not in text


def test_serve_under_systemd_leaves_the_time_to_the_journal_and_prefixes_the_priority(tmp_path):
    err = tmp_path / "journal.txt"
    with err.open("w") as stderr:
        status = os.fstat(stderr.fileno())
        env = claw_env(tmp_path, JOURNAL_STREAM=f"{status.st_dev}:{status.st_ino}")
        run_serve_and_chat(tmp_path, stderr=stderr, env=env)
    records = [line for line in err.read_text().splitlines() if not line.startswith("claw: ")]
    assert records and all(line.startswith("<6>level=info ") for line in records), records


def test_a_logged_exception_stays_on_its_line_and_names_the_request_being_handled():
    handler = logs.StderrHandler()
    handler.setFormatter(logs.LogfmtFormatter(journald=False))
    handler.addFilter(logs.RequestIdFilter())
    captured: list[str] = []
    handler.emit = lambda record: captured.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("claw_tui.test.request")
    logger.addHandler(handler)
    logger.propagate = False
    token = logs.REQUEST_ID.set("abc123")
    try:
        try:
            raise ValueError('bad "value"\nsecond line')
        except ValueError:
            logger.exception("POST %s failed", "/api/chat")
    finally:
        logs.REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    (line,) = captured
    assert "\n" not in line
    assert " level=error logger=claw_tui.test.request request_id=abc123 " in line
    assert 'msg="POST /api/chat failed" exc="Traceback' in line
    assert '\\"value\\"\\nsecond line' in line


# ---- the console: a log file, never the terminal -----------------------------------------------------------------
class Terminal:
    """A pseudo-terminal for a real `claw` process: everything it draws is drained (and kept) by a thread."""

    def __init__(self, command: list[str], env: dict[str, str], size: tuple[int, int] = (100, 30)) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the process closed its side
                return
            if not chunk:
                return
            self.output += chunk

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        os.close(self.master)


def test_the_console_writes_its_log_file_and_nothing_on_the_terminal(tmp_path):
    env = claw_env(tmp_path, TERM="xterm-256color")
    log_file = tmp_path / "state" / "claw" / "log" / "console.log"
    terminal = Terminal([sys.executable, "-m", "claw_tui", "--demo"], env)
    try:
        wait_until(lambda: log_file.exists() and "gateway listening on" in log_file.read_text(), timeout=30)
        terminal.press(b"\x11")  # ctrl+q
        assert terminal.process.wait(timeout=30) == 0
    finally:
        terminal.close()
    text = log_file.read_text()
    assert re.search(r"^\S+ \S+ INFO claw_tui\.cli: claw \S+: console \(pid \d+", text, re.MULTILINE), text
    assert "INFO claw_tui.session: gateway listening on http://" in text
    screen = terminal.output.decode("utf-8", "replace")
    assert "gateway listening on" not in screen and "claw_tui.cli" not in screen and "Traceback" not in screen


def test_doctor_names_the_console_log_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n[store]\npath = "{tmp_path / "s.db"}"\n'
        f'[governor]\nstate_file = "{tmp_path / "locked.json"}"\n'
    )
    env = dict(os.environ, CLAW_CONFIG=str(config), XDG_STATE_HOME=str(tmp_path / "state"))
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "doctor", "--demo", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["console log"] == {
        "name": "console log",
        "status": "pass",
        "detail": str(tmp_path / "state" / "claw" / "log" / "console.log"),
        "hint": "",
    }


@pytest.fixture
def console_logging(tmp_path, monkeypatch):
    """This test process logs the way the console does, into a folder of the test's own; undone afterwards."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    logs.configure("console", 0)
    yield logs.console_log_file()
    logs.uninstall()
    logging.getLogger().setLevel(logging.WARNING)


async def test_help_shows_where_the_console_log_is(demo, console_logging):
    assert console_logging == logs.console_log_path()
    app = ClawApp(demo)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("question_mark")
        hint = app.screen.query_one(".dialog-hint", Static)
        assert str(hint.content).startswith("Esc closes") and str(hint.content).endswith(f"\nlog: {console_logging}")
    logging.getLogger("claw_tui.test").info("a line from the console's process")
    assert "INFO claw_tui.test: a line from the console's process" in console_logging.read_text()
