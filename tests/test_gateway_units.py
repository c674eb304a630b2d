"""The gateway's policy units on their own: token bucket, rate limiter, auth, admission queue, VRAM gate, router,
health states, error-rate window, ladder, cache, singleflight, context trimming, supersede, meters and relays."""

from __future__ import annotations

import asyncio
import json

import pytest

from claw_tui.gateway.backends import Backend
from claw_tui.gateway.cache import AnswerCache, Singleflight, StoredAnswer, request_key
from claw_tui.gateway.context import estimate_tokens, trim_messages
from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.ladder import DegradationLadder, ErrorRateWindow
from claw_tui.gateway.metering import NdjsonMeter, SseMeter
from claw_tui.gateway.openai_compat import ChunkWriter
from claw_tui.gateway.policies import (
    AdmissionQueue,
    Authenticator,
    RateLimiter,
    TokenBucket,
    UnsafeListenError,
    VramGate,
    bearer_token,
    check_listen_is_safe,
)
from claw_tui.gateway.relay import NdjsonToOpenAI, OpenAIToNdjson, static_answer
from claw_tui.gateway.router import GpuView, NoBackend, Router, gpu_class_factor, score, temperature_factor
from claw_tui.gateway.supersede import Superseder, Turn, conversation_key
from claw_tui.ledger import Ledger


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- rate limits --------------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate():
    bucket = TokenBucket.full(rate_per_s=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token refilled; nothing taken
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # capped at capacity


def test_rate_limiter_keys_and_retry_after():
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, burst=2, clock=clock)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(GatewayError) as caught:
        limiter.check("a")
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "1"
    limiter.check("b")  # its own bucket
    clock.now += 1.0
    limiter.check("a")


def test_rate_limiter_off_and_bounded():
    assert not RateLimiter(rpm=0).enabled
    RateLimiter(rpm=0).check("x")
    limiter = RateLimiter(rpm=60, max_keys=3, clock=FakeClock())
    for key in "abcdef":
        limiter.check(key)
    assert len(limiter._buckets) == 3


# ---- auth ------------------------------------------------------------------------------------------------------


def test_authenticator_roles():
    auth = Authenticator(["user-1", "user-2"], ["admin-1"])
    assert auth.role_of("user-2") == "user" and auth.role_of("admin-1") == "admin"
    assert auth.role_of("user-") is None and auth.role_of("") is None and auth.role_of(None) is None
    auth.check("/api/chat", "user-1")
    auth.check("/", None)
    with pytest.raises(GatewayError) as caught:
        auth.check("/api/chat", None)
    assert caught.value.status == 401
    with pytest.raises(GatewayError) as caught:
        auth.check("/api/pull", "user-1")
    assert caught.value.status == 403
    auth.check("/api/pull", "admin-1")
    only_users = Authenticator(["u"])
    only_users.add_token("internal", admin=True)
    only_users.check("/api/pull", "u")  # without admin tokens configured, any token may manage models
    only_users.check("/claw/v1/governor", "internal")
    Authenticator().check("/api/chat", None)  # no tokens: no auth


def test_bearer_token_from_header_or_query():
    assert bearer_token([(b"authorization", b"Bearer abc")], b"") == "abc"
    assert bearer_token([(b"authorization", b"bearer  abc ")], b"") == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")], b"") is None
    assert bearer_token([], b"a=1&token=xyz") == "xyz"
    assert bearer_token([], b"") is None


def test_listen_safety():
    check_listen_is_safe("127.0.0.1", 1, [])
    check_listen_is_safe("::1", 1, [])
    check_listen_is_safe("localhost", 1, [])
    check_listen_is_safe("0.0.0.0", 1, ["t"])
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(UnsafeListenError):
            check_listen_is_safe(host, 1, [])


# ---- admission ---------------------------------------------------------------------------------------------------


async def test_admission_queue_order_limit_and_503():
    queue = AdmissionQueue(limit=2, queue_size=2, timeout_s=5, name="b0")
    await queue.acquire()
    await queue.acquire()
    order = []

    async def waiter(name):
        await queue.acquire()
        order.append(name)

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    assert queue.waiting == 2
    with pytest.raises(GatewayError) as caught:
        await queue.acquire()
    assert caught.value.status == 503 and "Retry-After" in caught.value.headers and caught.value.retryable
    queue.release(held_s=2.0)
    queue.release(held_s=2.0)
    await asyncio.gather(first, second)
    assert order == ["first", "second"] and queue.active == 2 and queue.waiting == 0
    queue.release()
    queue.release()
    assert queue.active == 0


async def test_admission_queue_timeout_and_cancellation():
    queue = AdmissionQueue(limit=1, queue_size=5, timeout_s=0.05)
    await queue.acquire()
    with pytest.raises(GatewayError) as caught:
        await queue.acquire()
    assert "within 0.05s" in caught.value.message
    waiter = asyncio.create_task(queue.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.waiting == 0
    queue.release()
    assert queue.active == 0  # the cancelled waiter did not keep a slot


async def test_vram_gate_waits_for_pressure_to_drop():
    readings = [95.0, 95.0, 40.0]
    gate = VramGate(80.0, lambda gpu: readings.pop(0) if readings else 40.0, timeout_s=1.0, poll_s=0.01)
    await gate.wait(0)
    assert readings == []
    stuck = VramGate(80.0, lambda gpu: 99.0, timeout_s=0.05, poll_s=0.01)
    with pytest.raises(GatewayError) as caught:
        await stuck.wait(0)
    assert caught.value.status == 503 and "99%" in caught.value.message
    assert VramGate(80.0, lambda gpu: None, timeout_s=1).over(0) is None  # unknown: never held
    assert VramGate(0.0, lambda gpu: 99.0, timeout_s=1).over(0) is None  # off


# ---- routing and health -----------------------------------------------------------------------------------------


def backend(name: str, weight: float = 1.0, gpu: int | None = None, models=("m",)) -> Backend:
    b = Backend(name=name, kind="ollama", url=f"http://{name}", weight=weight, gpu=gpu)
    b.set_models([{"name": m, "model": m} for m in models])
    return b


def test_router_spreads_by_weight():
    a, b = backend("a", 3.0), backend("b", 1.0)
    router = Router([a, b])
    picks = [router.pick("m").name for _ in range(40)]
    assert picks.count("a") == 30 and picks.count("b") == 10
    assert "bbb" not in "".join(picks)  # smooth: never a run of the lighter one


def test_router_scores_gpu_type_utilisation_temperature_and_in_flight():
    assert (
        gpu_class_factor("NVIDIA H200")
        > gpu_class_factor("NVIDIA H100 80GB HBM3")
        > gpu_class_factor("NVIDIA A100-SXM4-80GB")
        > gpu_class_factor("NVIDIA L4")
    )
    assert gpu_class_factor(None) == gpu_class_factor("Mystery GPU") == 1.0
    assert temperature_factor(60) == 1.0 and temperature_factor(85) < 1.0 and temperature_factor(95) == 0.1
    b = backend("b")
    cool = score(b, GpuView("NVIDIA H200", 10, 50))
    assert score(b, GpuView("NVIDIA H200", 90, 50)) < cool
    assert score(b, GpuView("NVIDIA H200", 10, 88)) < cool
    b.admission.active = 3
    assert score(b, GpuView("NVIDIA H200", 10, 50)) == pytest.approx(cool / 4)


def test_router_uses_gpu_views():
    h200, a100 = backend("h200", gpu=0), backend("a100", gpu=1)
    views = {0: GpuView("NVIDIA H200", 0, 40), 1: GpuView("NVIDIA A100-SXM4-80GB", 0, 40)}
    router = Router([h200, a100], views.get)
    picks = [router.pick("m").name for _ in range(41)]
    assert picks.count("h200") > 2 * picks.count("a100") > 0


def test_router_skips_unhealthy_excluded_and_pressured_backends():
    a, b, c = backend("a"), backend("b"), backend("c", models=("other",))
    router = Router([a, b, c])
    for _ in range(3):
        a.record_failure("boom")
    assert a.state == "degraded"
    assert {router.pick("m").name for _ in range(5)} == {"b"}
    assert router.pick("m", exclude=[b]).name == "b"  # only a degraded one left: retry the healthy one
    for _ in range(3):
        b.record_failure("refused", unreachable=True)
    assert b.state == "down"
    assert router.pick("m").name in ("a", "b")  # nothing healthy: the least failing is still tried
    b.record_success()
    assert b.state == "up" and b.consecutive_failures == 0
    with pytest.raises(NoBackend):
        router.pick("missing")
    pressured = Router([backend("x", gpu=0), backend("y", gpu=1)], pressure=lambda gpu: gpu == 0)
    assert {pressured.pick("m").name for _ in range(4)} == {"y"}


def test_backend_with_unknown_models_is_tried():
    never_listed = Backend(name="n", kind="ollama", url="http://n")
    assert never_listed.has_model("m") is None
    assert Router([never_listed]).pick("m") is never_listed


def test_weight_zero_takes_a_backend_out_of_rotation():
    a, b = backend("a"), backend("b", weight=0)
    assert {Router([a, b]).pick("m").name for _ in range(5)} == {"a"}


# ---- ladder, cache, singleflight -----------------------------------------------------------------------------


def test_error_rate_window():
    clock = FakeClock()
    window = ErrorRateWindow(window_s=10, min_samples=4, clock=clock)
    for ok in (False, False, False):
        window.add(ok)
    assert window.rate() == 0.0  # too few outcomes to judge
    window.add(True)
    assert window.rate() == 0.75
    clock.now += 11
    assert window.rate() == 0.0 and window.counts() == (0, 0)


def test_error_rate_window_keeps_counts_not_outcomes():
    """Thousands of outcomes a second cost the same memory as a few: the window holds slices with counts."""
    clock = FakeClock()
    window = ErrorRateWindow(window_s=60, min_samples=10, clock=clock)
    for step in range(60_000):  # 1,000 outcomes a second for a minute, every tenth one failed
        clock.now = 1000.0 + step / 1000
        window.add(step % 10 != 0)
    assert window.counts() == (6_000, 60_000) and window.rate() == 0.1
    assert len(window._buckets) <= ErrorRateWindow.BUCKETS + 1
    clock.now += 30  # the older half of the minute has left the window (to within one 1 s slice)
    errors, total = window.counts()
    assert 29_000 <= total <= 31_000 and errors == total // 10
    clock.now += 31
    assert window.counts() == (0, 0)


def test_ladder_needs_a_step_and_a_high_rate_of_that_model():
    off = DegradationLadder(0.5, cache=False, fallback=False, static_reply="", min_samples=1)
    off.add("m", False)
    assert not off.active("m")
    ladder = DegradationLadder(0.5, cache=True, fallback=False, static_reply="", min_samples=1)
    ladder.add("m", False)
    assert ladder.active("m")
    assert not ladder.active("other")  # one model's failures never degrade another's answers
    ladder.add("m", True)
    ladder.add("m", True)
    assert not ladder.active("m")
    assert ladder.to_json()["steps"] == ["cache"]


def test_error_rates_need_their_minimum_sample_within_the_window():
    clock = FakeClock()
    ladder = DegradationLadder(
        0.5, cache=True, fallback=False, static_reply="", window_s=60, min_samples=10, clock=clock
    )
    for _ in range(9):
        ladder.add("m", False)
    assert not ladder.active("m")  # nine failures in a row are too few to judge
    ladder.add("m", False)
    assert ladder.active("m") and ladder.to_json()["degraded_models"] == ["m"]
    clock.now += 61
    assert not ladder.active("m")  # the window moved on
    assert ladder.to_json()["models"] == {}


def test_answer_cache_ttl_and_size():
    clock = FakeClock()
    cache = AnswerCache(ttl_s=5, max_entries=2, clock=clock)

    def answer() -> StoredAnswer:
        return StoredAnswer(200, b"application/json", [b"{}"], "m", "b0")

    cache.put("a", answer())
    cache.put("b", answer())
    cache.put("c", answer())
    assert cache.get("a") is None and cache.get("b") is not None and len(cache) == 2
    clock.now += 6
    assert cache.get("b") is None
    assert not AnswerCache(ttl_s=0).enabled


def test_request_key_ignores_key_order():
    assert request_key("/api/chat", {"a": 1, "b": [1, 2]}) == request_key("/api/chat", {"b": [1, 2], "a": 1})
    assert request_key("/api/chat", {"a": 1}) != request_key("/api/generate", {"a": 1})
    assert request_key("/api/chat", {"a": 1}) != request_key("/api/chat", {"a": 2})


async def test_singleflight_fans_out_and_cancels_when_everyone_leaves():
    flights = Singleflight()
    release = asyncio.Event()

    async def produce(flight):
        flight.head.set_result("head")
        flight.publish(b"one ")
        await release.wait()
        flight.publish(b"two")
        flight.finish()

    flight = flights.lead("k", "r1", produce)
    assert flights.join("k") is flight and flight.subscribers == 2
    assert await asyncio.shield(flight.head) == "head"
    reader = asyncio.create_task(_read_all(flight))
    await asyncio.sleep(0.01)
    release.set()
    assert await reader == b"one two"
    assert flights.join("k") is None  # a finished flight takes no one

    stuck = flights.lead("s", "r2", lambda f: asyncio.sleep(10))
    flights.leave(stuck)
    await asyncio.sleep(0)
    assert stuck.task.cancelled() or stuck.task.cancelling()


async def _read_all(flight) -> bytes:
    return b"".join([chunk async for chunk in flight.read()])


# ---- context trimming and supersede --------------------------------------------------------------------------


def test_trim_keeps_system_and_newest_turns():
    messages = [{"role": "system", "content": "s" * 40}]
    for i in range(10):
        messages += [{"role": "user", "content": f"u{i} " + "x" * 36}, {"role": "assistant", "content": "y" * 40}]
    kept, dropped = trim_messages(messages, budget=60)
    assert kept[0]["role"] == "system" and kept[-1] == messages[-1]
    assert kept[1]["role"] == "user"  # never starts with an assistant turn cut from its question
    assert sum(estimate_tokens(m) for m in kept) <= 60 and dropped == len(messages) - len(kept)
    assert trim_messages(messages, budget=0) == (messages, 0)
    assert trim_messages(messages[:3], budget=10_000) == (messages[:3], 0)
    huge = [{"role": "user", "content": "z" * 10_000}]
    assert trim_messages(huge, budget=10) == (huge, 0)  # the question itself is never dropped


def test_conversation_key():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    one = conversation_key("me", "m", {"messages": history + [{"role": "user", "content": "c"}]}, None)
    two = conversation_key("me", "m", {"messages": history + [{"role": "user", "content": "d"}]}, None)
    assert one == two and one is not None
    assert conversation_key("you", "m", {"messages": history + [{"role": "user", "content": "c"}]}, None) != one
    assert conversation_key("me", "m", {"messages": [{"role": "user", "content": "first"}]}, None) is None
    assert conversation_key("me", "m", {"messages": []}, "conv-7") == "h:me:conv-7"


def test_superseder_interrupts_only_a_turn_without_a_first_token():
    superseder = Superseder()
    interrupted = []
    old = Turn("k", "r1", interrupted.append)
    superseder.begin(old)
    superseder.begin(Turn("k", "r2", interrupted.append))
    assert len(interrupted) == 1 and "r2" in interrupted[0] and old.superseded_by == "r2"
    answering = Turn("j", "r3", interrupted.append, answering=True)
    superseder.begin(answering)
    superseder.begin(Turn("j", "r4", interrupted.append))
    assert len(interrupted) == 1


# ---- meters and relays ---------------------------------------------------------------------------------------


def ollama_lines(n: int) -> list[bytes]:
    lines = [
        json.dumps(
            {"model": "m", "message": {"role": "assistant", "content": f"t{i}"}, "done": False}, separators=(",", ":")
        ).encode()
        + b"\n"
        for i in range(n)
    ]
    final = {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "prompt_eval_count": 7,
        "eval_count": n,
        "eval_duration": 5_000_000,
        "prompt_eval_duration": 1_000_000,
    }
    return lines + [json.dumps(final).encode() + b"\n"]


@pytest.mark.parametrize("cut", [1, 7, 13, 64])
def test_ndjson_meter_reads_split_chunks(cut):
    firsts = []
    meter = NdjsonMeter(lambda: firsts.append(1))
    data = b"".join(ollama_lines(5))
    for start in range(0, len(data), cut):
        meter.feed(data[start : start + cut])
    meter.close()
    assert meter.content_chunks == 5 and firsts == [1]
    assert meter.final["eval_count"] == 5 and meter.error is None


def test_ndjson_meter_error_line():
    meter = NdjsonMeter(lambda: None)
    meter.feed(ollama_lines(2)[0] + b'{"error":"runner died"}\n')
    assert meter.error == "runner died" and meter.content_chunks == 1


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def openai_events(include_tool: bool = False) -> bytes:
    events = [sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    for word in ("Hello", " world"):
        events.append(sse({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
    if include_tool:
        events.append(
            sse(
                {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "c",
                                        "type": "function",
                                        "function": {"name": "get", "arguments": '{"a":'},
                                    }
                                ]
                            },
                        }
                    ]
                }
            )
        )
        events.append(
            sse({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}}]})
        )
    events.append(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
    return b"".join(events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("keep_usage", [True, False])
def test_sse_meter_passes_events_and_strips_usage_unless_asked(keep_usage):
    firsts = []
    meter = SseMeter(lambda: firsts.append(1), keep_usage_event=keep_usage)
    data = openai_events()
    out = b"".join(meter.feed(data[i : i + 9]) for i in range(0, len(data), 9)) + meter.rest()
    assert firsts == [1] and meter.usage["completion_tokens"] == 2 and meter.finish_reason == "stop"
    assert (b'"usage"' in out) is keep_usage
    assert out.endswith(b"data: [DONE]\n\n") and out.count(b"data: ") == data.count(b"data: ") - (not keep_usage)


def test_openai_answer_as_ollama_chunks():
    firsts = []
    relay = OpenAIToNdjson(lambda: firsts.append(1), "m", chat=True, stream=True)
    out = relay.feed(openai_events(include_tool=True)) + relay.end()
    chunks = [json.loads(line) for line in out.splitlines()]
    assert [c["message"]["content"] for c in chunks[:2]] == ["Hello", " world"]
    assert chunks[2]["message"]["tool_calls"] == [{"function": {"name": "get", "arguments": {"a": 1}}}]
    final = chunks[-1]
    assert final["done"] and final["done_reason"] == "stop" and final["eval_count"] == 2
    assert final["prompt_eval_count"] == 5 and final["total_duration"] > 0
    assert firsts == [1]
    whole = OpenAIToNdjson(lambda: None, "m", chat=False, stream=False)
    answer = json.loads(whole.feed(openai_events()) + whole.end())
    assert answer["response"] == "Hello world" and answer["done"]


def test_ollama_answer_as_openai_events():
    relay = NdjsonToOpenAI(lambda: None, ChunkWriter("chatcmpl-1", "m", include_usage=True), stream=True)
    out = relay.feed(b"".join(ollama_lines(3))) + relay.end()
    events = [json.loads(line[6:]) for line in out.decode().split("\n\n") if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "t0"}
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert out.endswith(b"data: [DONE]\n\n")
    whole = NdjsonToOpenAI(lambda: None, ChunkWriter("chatcmpl-2", "m", include_usage=False), stream=False)
    completion = json.loads(whole.feed(b"".join(ollama_lines(2))) + whole.end())
    assert completion["choices"][0]["message"]["content"] == "t0t1" and completion["usage"]["completion_tokens"] == 2


def test_static_answers_in_every_shape():
    media, body = static_answer("ollama", "generate", "m", "sorry", False, "r")
    assert media.startswith(b"application/json") and json.loads(body)["response"] == "sorry"
    media, body = static_answer("openai", "chat", "m", "sorry", True, "r")
    assert media == b"text/event-stream" and body.endswith(b"data: [DONE]\n\n") and b"sorry" in body


def test_ledger_is_used_by_meters_only_through_records():
    ledger = Ledger()
    record = ledger.open_request(model="m", endpoint="/api/chat")
    meter = NdjsonMeter(lambda: ledger.mark_first_token(record))
    meter.feed(b"".join(ollama_lines(2)))
    meter.apply_to(record)
    assert record.t_first_token is not None and record.completion_tokens == 2 and record.prompt_tokens == 7
