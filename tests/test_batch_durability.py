"""A `kill -9` of `claw serve --demo` mid-batch: no accepted job is lost, no line is completed twice."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys

import httpx
import openai

from tests.conftest import wait_until
from tests.test_batch_api import chat_line, jsonl
from tests.test_serve import free_port

LINES = 40


def start_serve(tmp_path, port: int) -> subprocess.Popen:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.05\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port), "--sim-speed", "2"],
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, CLAW_CONFIG=str(config)),
    )

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/batches", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, "claw serve exited"
            return False

    wait_until(up, timeout=30)
    return process


def done_lines(db) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(
            conn.execute(
                "SELECT batch_id || '/' || custom_id, request_id FROM batch_lines WHERE state = 'done'"
            ).fetchall()
        )


def test_kill_9_mid_batch_loses_no_job_and_completes_no_line_twice(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    process = start_serve(tmp_path, port)
    try:
        upload = client.files.create(
            file=("big.jsonl", io.BytesIO(jsonl([chat_line(i, max_tokens=40) for i in range(LINES)]))),
            purpose="batch",
        )
        first = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        wait_until(lambda: client.batches.retrieve(first.id).request_counts.completed >= 5, timeout=60)
        # accepted just before the crash: it must survive too
        second = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        process.send_signal(signal.SIGKILL)
        process.wait(10)

        before = done_lines(tmp_path / "sessions.db")
        assert 5 <= len(before) < 2 * LINES

        process = start_serve(tmp_path, port)
        for batch_id in (first.id, second.id):
            done = wait_until(
                lambda b=batch_id: (j := client.batches.retrieve(b)).status == "completed" and j, timeout=90
            )
            assert done.request_counts.completed == LINES and done.request_counts.failed == 0
            output = client.files.content(done.output_file_id).text.splitlines()
            ids = [json.loads(line)["custom_id"] for line in output]
            assert sorted(ids) == sorted(f"req-{i}" for i in range(LINES)), "a line is missing or written twice"
        after = done_lines(tmp_path / "sessions.db")
        # Results written before the kill stayed as they were: those lines were not completed a second time.
        assert all(after[key] == rid for key, rid in before.items())
        assert client.batches.retrieve(first.id).model_extra["claw"]["attempts"] >= LINES
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
