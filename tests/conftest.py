"""Shared fixtures: a demo Session (simulated GPU + simulated Ollama) running in its own thread."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

# Tests never read or write the real user's config, data and state folders (a theme saved there, a session store,
# a governor state file): each test run gets folders of its own, inherited by the processes it starts.
_TEST_HOME = tempfile.mkdtemp(prefix="claw-test-home-")
for _var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[_var] = os.path.join(_TEST_HOME, _var.lower())
os.environ.pop("CLAW_CONFIG", None)
atexit.register(shutil.rmtree, _TEST_HOME, True)

import pytest

from claw_tui.config import Config
from claw_tui.session import Session, SessionOptions, SessionThread

# Times in the panes are local: fix the zone so snapshots read the same everywhere.
os.environ["TZ"] = "UTC"
time.tzset()

FAST_SIM = 20.0  # simulator speed factor: a whole answer in well under a second


def demo_config(**gateway) -> Config:
    # The defaults, with no file behind them: a test must neither read nor write the user's own config.
    config = Config()
    config.telemetry.poll_interval_s = 0.05
    for key, value in gateway.items():
        setattr(config.gateway, key, value)
    return config


def start_demo_session(tmp_path, config: Config | None = None, **options) -> SessionThread:
    opts = SessionOptions(
        demo=True,
        listen=("127.0.0.1", 0),
        store_path=tmp_path / "sessions.db",
        sim_speed=options.pop("sim_speed", FAST_SIM),
        **options,
    )
    runner = SessionThread(Session(config or demo_config(), opts))
    runner.start()
    return runner


@pytest.fixture
def demo(tmp_path) -> Iterator[Session]:
    runner = start_demo_session(tmp_path)
    try:
        yield runner.session
    finally:
        runner.stop()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
