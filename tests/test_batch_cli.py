"""`claw batch` against a running demo service: the native form (prompts, Ollama bodies), list, show, results."""

from __future__ import annotations

import json
import re

import pytest

from claw_tui.cli import main
from tests.conftest import start_demo_session, wait_until
from tests.test_serve import free_port


@pytest.fixture
def service(tmp_path):
    runner = start_demo_session(tmp_path)
    try:
        yield runner.session
    finally:
        runner.stop()


def claw(*argv: str) -> int:
    return main(list(argv))


def test_submit_prompts_and_ollama_bodies_then_read_the_results(service, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "Summarise the release notes.\n\n"
        "Write a haiku about GPUs.\n"
        + json.dumps(
            {"custom_id": "sys", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 8}}
        )
        + "\n"
    )
    url = service.gateway_url
    assert claw("batch", "--connect", url, "submit", str(prompts), "--model", "qwen3:8b", "--meta", "team=docs") == 0
    batch_id = re.search(r"(batch_\w+)\s+validating\s+3 requests", capsys.readouterr().out).group(1)

    wait_until(lambda: service.batch_jobs_json()[0]["status"] == "completed", timeout=30)
    wait_until(lambda: service.batch_jobs_json()[0]["claw"]["energy_final"], timeout=30)

    assert claw("--connect", url, "batch", "list") == 0
    listing = capsys.readouterr().out
    assert batch_id in listing and "completed" in listing and "3/3" in listing and "qwen3:8b" in listing

    assert claw("batch", "--connect", url, "show", batch_id) == 0
    shown = capsys.readouterr().out
    assert re.search(r"requests\s+3 done, 0 failed, 3 in all", shown)
    assert re.search(r"J/token\s+\d+\.\d{4}", shown) and re.search(r"energy final\s+yes", shown)

    out = tmp_path / "results.jsonl"
    assert claw("batch", "--connect", url, "results", batch_id, "-o", str(out)) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["line-1", "line-3", "sys"]
    for line in lines:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and body["done"] is True and body["model"] == "qwen3:8b"
    assert claw("batch", "--connect", url, "results", batch_id, "--errors") == 1
    assert "has no error file" in capsys.readouterr().err


def test_bad_files_and_a_missing_service_say_what_to_do(service, tmp_path, capsys):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"prompt": "complete this"}\nplain chat prompt\n')
    assert claw("batch", "--connect", service.gateway_url, "submit", str(mixed), "--model", "qwen3:8b") == 2
    assert "mix /api/chat and /api/generate" in capsys.readouterr().err

    no_model = tmp_path / "prompts.txt"
    no_model.write_text("a prompt\n")
    assert claw("batch", "--connect", service.gateway_url, "submit", str(no_model)) == 2
    assert "pass --model" in capsys.readouterr().err

    assert claw("batch", "--connect", service.gateway_url, "show", "batch_nope") == 1
    assert "No such Batch object: batch_nope (HTTP 404)" in capsys.readouterr().err

    nobody = f"127.0.0.1:{free_port()}"
    assert claw("batch", "--connect", nobody, "list") == 1
    err = capsys.readouterr().err
    assert f"no claw service answers at http://{nobody}" in err and "claw serve" in err
