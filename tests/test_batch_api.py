"""The Batch API through the real `openai` SDK against a demo session: files, batches, results, errors, events."""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest

from tests.conftest import demo_config, start_demo_session, wait_until

END = ("completed", "failed", "expired", "cancelled")


def chat_line(i: int, model: str = "qwen3:8b", max_tokens: int = 12) -> dict:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"Summarise item {i}"}],
            "max_tokens": max_tokens,
        },
    }


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def client_for(session) -> openai.OpenAI:
    return openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="unused", max_retries=0)


def wait_for_end(client: openai.OpenAI, batch_id: str, timeout: float = 30.0):
    return wait_until(lambda: (b := client.batches.retrieve(batch_id)).status in END and b, timeout=timeout)


def wait_for_final_energy(client: openai.OpenAI, batch_id: str):
    return wait_until(lambda: (b := client.batches.retrieve(batch_id)).model_extra["claw"]["energy_final"] and b)


@pytest.fixture
def session(tmp_path):
    runner = start_demo_session(tmp_path)
    try:
        yield runner.session
    finally:
        runner.stop()


def test_the_openai_sdk_batch_workflow_runs_end_to_end(session):
    client = client_for(session)
    subscription = session.bus.subscribe(lambda: None)
    upload = client.files.create(
        file=("jobs.jsonl", io.BytesIO(jsonl([chat_line(i) for i in range(5)]))), purpose="batch"
    )
    assert upload.object == "file" and upload.purpose == "batch" and upload.filename == "jobs.jsonl"
    assert client.files.retrieve(upload.id).bytes == upload.bytes

    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"team": "docs"}
    )
    assert batch.status == "validating" and batch.request_counts.total == 5 and batch.metadata == {"team": "docs"}
    done = wait_for_end(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.completed == 5 and done.request_counts.failed == 0
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.error_file_id is None
    assert [b.id for b in client.batches.list()] == [batch.id]
    with pytest.raises(openai.ConflictError, match="only a job validating or in progress can be cancelled"):
        client.batches.cancel(batch.id)

    output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(5)]
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["usage"]["completion_tokens"] > 0

    final = wait_for_final_energy(client, batch.id)
    claw = final.model_extra["claw"]
    assert claw["energy_j"] > 0 and claw["joules_per_token"] == pytest.approx(
        claw["energy_j"] / final.usage.output_tokens, rel=1e-2
    )
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0

    # Every line went through the gateway, metered like any request and marked as a batch line.
    records = httpx.get(session.gateway_url + "/claw/v1/requests").json()["requests"]
    batch_records = [r for r in records if r["client"] == "batch"]
    assert len(batch_records) == 5
    assert {r["batch"] for r in batch_records} == {f"{batch.id}/req-{i}" for i in range(5)}
    assert sum(r["energy_j"] for r in batch_records) == pytest.approx(claw["energy_j"], abs=0.01)

    kinds: list[str] = []

    def ended() -> bool:
        kinds.extend(e.kind for e in subscription.drain() if e.kind.startswith("batch."))
        return "batch.completed" in kinds

    wait_until(ended)
    subscription.close()
    assert kinds[0] == "batch.created" and "batch.status" in kinds and kinds[-1] == "batch.completed"


def test_failed_lines_go_to_the_error_file_and_embeddings_work(session):
    client = client_for(session)
    lines = [
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "nomic-embed-text", "input": "x"},
        },
        {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {"model": "no-such-model", "input": "y"}},
    ]
    upload = client.files.create(file=("e.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="1h")
    done = wait_for_end(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 1 and done.request_counts.failed == 1
    [ok] = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert ok["custom_id"] == "a" and ok["response"]["body"]["data"][0]["embedding"]
    [failed] = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert failed["custom_id"] == "b" and failed["response"]["status_code"] == 404
    assert "no-such-model" in json.dumps(failed["response"]["body"])


def test_a_line_whose_url_is_not_the_endpoint_fails_the_job_with_errors(session):
    client = client_for(session)
    upload = client.files.create(file=("m.jsonl", io.BytesIO(jsonl([chat_line(1)]))), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors.data[0].code == "invalid_url" and batch.errors.data[0].line == 1


def test_cancel_keeps_the_answers_already_given(tmp_path):
    runner = start_demo_session(tmp_path, sim_speed=2.0)
    try:
        client = client_for(runner.session)
        upload = client.files.create(
            file=("c.jsonl", io.BytesIO(jsonl([chat_line(i, max_tokens=40) for i in range(30)]))), purpose="batch"
        )
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 2, timeout=30)
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at is not None
        done = wait_for_end(client, batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        answered = done.request_counts.completed
        assert 2 <= answered < 30
        output = client.files.content(done.output_file_id).text.splitlines()
        assert len(output) == answered
        assert client.batches.cancel(batch.id).status == "cancelled"  # cancelling again changes nothing
    finally:
        runner.stop()


def test_bad_input_gets_clear_openai_errors_and_nothing_is_kept(tmp_path):
    config = demo_config()
    config.batch.max_file_bytes = 2000
    config.batch.max_queued_lines = 3
    runner = start_demo_session(tmp_path, config)
    try:
        client = client_for(runner.session)
        broken = jsonl([chat_line(0)]) + b'{"custom_id": "x", "method": "POST"\n'
        with pytest.raises(openai.BadRequestError, match="line 2: not valid JSON"):
            client.files.create(file=("bad.jsonl", io.BytesIO(broken)), purpose="batch")
        duplicate = jsonl([chat_line(0), chat_line(0)])
        with pytest.raises(openai.BadRequestError, match="custom_id 'req-0' is used twice"):
            client.files.create(file=("dup.jsonl", io.BytesIO(duplicate)), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="purpose must be 'batch'"):
            client.files.create(file=("x.jsonl", io.BytesIO(jsonl([chat_line(0)]))), purpose="fine-tune")
        big = jsonl([chat_line(i, max_tokens=10) for i in range(20)])
        with pytest.raises(openai.APIStatusError, match="the limit is 2,000") as too_big:
            client.files.create(file=("big.jsonl", io.BytesIO(big)), purpose="batch")
        assert too_big.value.status_code == 413
        assert client.files.list().data == []

        with pytest.raises(openai.NotFoundError, match="No such File object"):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.NotFoundError, match="No such Batch object"):
            client.batches.retrieve("batch_nope")
        upload = client.files.create(
            file=("ok.jsonl", io.BytesIO(jsonl([chat_line(i) for i in range(4)]))), purpose="batch"
        )
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="soon")
        with pytest.raises(openai.RateLimitError, match="max_queued_lines"):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert client.batches.list().data == []
        answer = httpx.get(runner.session.gateway_url + "/v1/batches?limit=0")
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "limit"
    finally:
        runner.stop()


def test_files_list_pages_with_after(session):
    client = client_for(session)
    ids = [
        client.files.create(file=(f"{i}.jsonl", io.BytesIO(jsonl([chat_line(i)]))), purpose="batch").id
        for i in range(3)
    ]
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[:0:-1] and first.has_more
    rest = client.files.list(limit=2, after=first.data[-1].id)
    assert [f.id for f in rest.data] == ids[:1] and not rest.has_more
