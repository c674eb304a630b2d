"""`claw` as a real process in a real terminal (tmux): in-process, a hang-up (the SSH session dropped), SIGTERM or
SIGINT ends it cleanly — exit 0, clocks reset, the session stored as ended, the terminal given back; with a
`claw serve` answering at the configured address, plain `claw` attaches to it; `claw --demo` never writes the
operator's config file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claw_tui.store import load_session
from tests.conftest import wait_until
from tests.test_governor_process import FAKE_NVML_DIR, LOCK, RESET, nvml_calls
from tests.test_serve import free_port
from tests.test_tmux_operator import REPO, TMUX, Tmux

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

USER_CONFIG = """\
# the operator's own config: a demo must leave it exactly as it is
[ui]
theme = "claw-dark"
"""


@pytest.fixture
def terminal():
    tmux = Tmux(width=120, height=36)
    yield tmux
    tmux.kill()


def wait_dead(terminal: Tmux, timeout: float = 30.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not terminal.pane_status()[0]:
        time.sleep(0.1)
    time.sleep(0.2)
    dead, status = terminal.pane_status()
    assert dead, terminal.screen()
    return status


def pane_pid(terminal: Tmux) -> int:
    return int(terminal.tmux("display-message", "-p", "-t", terminal.target, "#{pane_pid}").strip())


def base_env(tmp_path: Path, config: Path) -> dict[str, str]:
    return {
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "CLAW_CONFIG": str(config),
        **{k: v for k, v in os.environ.items() if k.startswith("XDG_")},
    }


@pytest.mark.parametrize("ending", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_ends_the_in_process_console_cleanly(terminal, tmp_path, ending):
    log = tmp_path / "nvml-calls.jsonl"
    store = tmp_path / "sessions.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n[store]\npath = "{store}"\n'
        f"[governor]\nenabled = true\nidle_after_s = 0.2\nallow_clock_control = true\n"
        f'state_file = "{tmp_path / "locked.json"}"\n'
        f'[[backends]]\nname = "ollama"\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    env = {
        **base_env(tmp_path, config),
        "FAKE_NVML_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(FAKE_NVML_DIR), str(REPO)]),
    }
    terminal.start(["exec", sys.executable, "-m", "claw_tui"], env, REPO)
    terminal.wait_for("in-process", "F1 Power", timeout=30)
    pid = pane_pid(terminal)
    wait_until(lambda: LOCK in nvml_calls(log, pid), timeout=30)  # idle: the governor locked the clocks
    os.kill(pid, ending)
    assert wait_dead(terminal) in (0, None)
    screen = terminal.screen(history=True)
    assert "Traceback" not in screen, screen[-3000:]
    assert "F1 Power" not in terminal.screen()  # the alternate screen is gone
    setters = [c for c in nvml_calls(log, pid) if c in (LOCK, RESET)]
    assert setters[-1] == RESET
    assert load_session(store).state() == "ended"


def test_plain_claw_attaches_to_the_service_at_the_configured_address(terminal, tmp_path):
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[gateway]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{tmp_path / "s.db"}"\n')
    service = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "--config", str(config), "serve", "--demo"],
        stderr=subprocess.DEVNULL,
    )
    try:
        from claw_tui.console.remote import probe

        wait_until(lambda: probe(f"http://127.0.0.1:{port}") is not None, timeout=30)
        terminal.start([sys.executable, "-m", "claw_tui"], base_env(tmp_path, config), REPO)
        terminal.wait_for(f"attached · claw serve 127.0.0.1:{port} · up", "F1 Power", timeout=30)
        terminal.send("C-q")
        wait_dead(terminal)
        assert service.poll() is None  # the service goes on
        assert probe(f"http://127.0.0.1:{port}")["face"] == "serve"
    finally:
        service.terminate()
        assert service.wait(timeout=20) == 0


def test_the_demo_never_writes_the_operators_config(terminal, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(USER_CONFIG)
    terminal.start([sys.executable, "-m", "claw_tui", "--demo"], base_env(tmp_path, config), REPO)
    terminal.wait_for("DEMO", "in-process", timeout=30)
    terminal.send("C-p")
    terminal.type("claw-light")
    time.sleep(0.5)
    terminal.send("Enter")
    terminal.wait_for("theme claw-light")
    terminal.send("C-q")
    wait_dead(terminal)
    assert config.read_text() == USER_CONFIG
    state = Path(os.environ["XDG_STATE_HOME"]) / "claw" / "demo"
    saved = sorted(state.glob("run-*/config.toml"), key=lambda p: p.stat().st_mtime)
    assert saved and 'theme = "claw-light"' in saved[-1].read_text()
    assert (saved[-1].parent / "sessions.db").exists()
