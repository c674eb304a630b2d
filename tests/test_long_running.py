"""A service that runs for months: the summary counts every request of the session (not the newest N kept in
memory), `/claw/v1/requests` is paged with a cursor and filters and reaches into the store, `/metrics` labels stay
bounded whatever clients send, percentiles stay within 1% in constant memory."""

from __future__ import annotations

import math
import random
import re

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claw_tui.quantiles import Quantiles, percentile
from claw_tui.sim.server import SIM_TOKENS_OPTION
from claw_tui.store import SessionStore
from tests.conftest import demo_config, start_demo_session, wait_until

RING = 40


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A demo session that keeps only 40 requests in memory and has served 100 (40 + 50 ok on two models, 10 errors)."""
    config = demo_config()
    config.store.memory_records = RING
    runner = start_demo_session(tmp_path_factory.mktemp("busy"), config)
    session = runner.session
    url = session.gateway_url
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(100):
            model = "no-such-model" if i % 10 == 9 else ("qwen3:8b" if i % 2 else "llama3.2:3b")
            body = {"model": model, "prompt": f"q{i}", "stream": False, "options": {SIM_TOKENS_OPTION: 3}}
            client.post("/api/generate", json=body)
    wait_until(lambda: session.tally.whole.total == 100, timeout=30)
    yield session
    runner.stop()


def test_the_summary_counts_every_request_of_the_session_not_the_newest_kept_in_memory(busy):
    url = busy.gateway_url
    assert len(busy.ledger.records()) == RING
    summary = httpx.get(url + "/claw/v1/summary", timeout=30).json()
    assert summary["requests"]["total"] == 100
    assert summary["requests"]["by_status"] == {"error": 10, "ok": 90}
    rows = {row["model"]: row for row in summary["by_model"]}
    assert rows["qwen3:8b"]["requests"]["total"] == 40 and rows["llama3.2:3b"]["requests"]["total"] == 50
    metrics = httpx.get(url + "/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("claw_requests_total{")
    )
    assert counted == summary["requests"]["total"]  # the summary's totals equal /metrics' counters
    completion = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("claw_tokens_total{") and 'kind="completion"' in line
    )
    assert completion == summary["tokens"]["completion"]


def test_requests_are_paged_newest_first_past_memory_into_the_store(busy):
    url = busy.gateway_url
    seen: list[dict] = []
    params: dict = {"limit": 15}
    while True:
        page = httpx.get(url + "/claw/v1/requests", params=params).json()
        assert len(page["requests"]) <= 15
        seen += page["requests"]
        if not page["next_before"]:
            break
        params = {"limit": 15, "before": page["next_before"]}
    assert len(seen) == 100 and len({r["id"] for r in seen}) == 100  # the ring holds 40: 60 came from the store
    arrivals = [r["times"]["arrival"] for r in seen]
    assert arrivals == sorted(arrivals, reverse=True)
    assert all(r["kind"] == "request" for r in seen)


def test_request_filters_run_over_the_whole_session(busy):
    url = busy.gateway_url
    errors = httpx.get(url + "/claw/v1/requests", params={"status": "error", "limit": 1000}).json()["requests"]
    assert len(errors) == 10 and {r["model"] for r in errors} == {"no-such-model"}
    qwen = httpx.get(url + "/claw/v1/requests", params={"model": "qwen3:8b", "limit": 1000}).json()["requests"]
    assert len(qwen) == 40
    newest = httpx.get(url + "/claw/v1/requests", params={"limit": 1}).json()["requests"][0]
    since = httpx.get(url + "/claw/v1/requests", params={"since": newest["times"]["arrival"]}).json()
    assert [r["id"] for r in since["requests"]] == [newest["id"]] and since["next_before"] is None


@pytest.mark.parametrize(
    "query", [{"limit": "many"}, {"limit": "-1"}, {"status": "weird"}, {"since": "yesterday"}], ids=str
)
def test_bad_request_queries_are_400(busy, query):
    response = httpx.get(busy.gateway_url + "/claw/v1/requests", params=query)
    assert response.status_code == 400 and response.json()["error"]


def test_limit_is_capped(busy):
    page = httpx.get(busy.gateway_url + "/claw/v1/requests", params={"limit": 50_000}).json()
    assert len(page["requests"]) == 100 and page["next_before"] is None


def test_metrics_labels_stay_bounded_whatever_model_names_clients_send(tmp_path):
    runner = start_demo_session(tmp_path)
    try:
        url = runner.session.gateway_url
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(300):
                client.post("/api/chat", json={"model": f"made-up-{i}", "messages": [{"role": "user", "content": "x"}]})
            client.post("/api/chat", json={"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}]})
        wait_until(lambda: runner.session.tally.whole.total == 301, timeout=30)
        text = httpx.get(url + "/metrics").text
        models = set(re.findall(r'model="([^"]*)"', text))
        assert "made-up-7" not in text and "other" in models and "qwen3:8b" in models
        assert len(models) <= 3  # qwen3:8b, other, and "" for rows without a model
        series = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert len(series) < 1000
        assert 'claw_requests_total{agent="",model="other",status="error"} 300.0' in text
        summary = httpx.get(url + "/claw/v1/summary").json()  # nor the summary's rows: a 404 opens none
        rows = {row["model"]: row["requests"] for row in summary["by_model"]}
        assert set(rows) == {"qwen3:8b", "other"} and rows["other"]["total"] == rows["other"]["errors"] == 300
    finally:
        runner.stop()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2_100, 20_000), pct=st.sampled_from([50, 90, 95, 99]))
def test_percentiles_stay_within_one_percent_in_constant_memory(seed, n, pct):
    rng = random.Random(seed)
    values = [rng.lognormvariate(5, 1.5) for _ in range(n)]
    sketch = Quantiles()
    sketch.extend(values)
    assert not sketch.exact
    ordered = sorted(values)
    rank = (n - 1) * pct / 100
    exact_low, exact_high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    estimate = sketch.percentile(pct)
    assert exact_low * 0.99 <= estimate <= exact_high * 1.01
    assert len(sketch._buckets) < 2_000  # log buckets: a few hundred whatever n is


def test_small_samples_are_exact():
    values = [5.0, 1.0, 3.0, 2.0]
    sketch = Quantiles()
    sketch.extend(values)
    assert sketch.percentile(95) == percentile(values, 95) and sketch.percentile(50) == 2.5


def test_a_session_longer_than_the_retention_sheds_its_oldest_rows_and_still_counts_them(tmp_path):
    from claw_tui.records import RequestRecord
    from claw_tui.store import load_session
    from claw_tui.summary import summary_from_stored
    from claw_tui.tally import SessionTally

    day = 86_400.0
    now = [1_000_000.0]
    store = SessionStore(tmp_path / "s.db", flush_interval_s=0.01, clock=lambda: now[0])
    store.start(demo=True, retention_days=2, started_at=now[0])
    tally = SessionTally()
    for i in range(30):  # one request a day for 30 days
        record = RequestRecord(id=f"r{i:03d}", model="m", endpoint="/api/chat", status="ok", t_arrival=now[0])
        record.t_end = now[0] + 1.0
        record.completion_tokens = 10
        tally.add(record)
        store.save_request(record)
        store.save_stats({"energy": {"total_j": 1.0, "idle_j": 1.0, "active_j": 0.0}, "tally": tally.to_json()})
        now[0] += day
        wait_until(lambda at=now[0]: store._pruned_rows_at == at, timeout=5)
    store.stop(now[0])
    stored = load_session(tmp_path / "s.db")
    assert len(stored.records) <= 3  # only the last two days' rows are left
    summary = summary_from_stored(stored)
    assert summary["requests"]["total"] == 30 and summary["tokens"]["completion"] == 300
