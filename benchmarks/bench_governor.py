"""TTFT added by a wake from downclocked (target: < 5 ms), measured in the demo through the real gateway.

    python benchmarks/bench_governor.py [--pairs 40] [--sim-speed 20]

Pairs of requests, interleaved so that drift hits both sides alike: one arrives while the governor holds the GPU
downclocked (the gateway resets the clocks before forwarding it), the other with the governor off after the same
idle time. Both are streamed; TTFT is measured by the client and by the gateway. Also reported: the wake itself as
the governor timed it (the clock reset inside the request's path), for the simulated GPU and for the NVML path
(a fake NVML whose setters return at once: what claw adds around the driver call, a thread hop and a lock).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claw_tui.config import load_config
from claw_tui.governor import NvmlClockControl
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.summary import percentile
from tests.fake_nvml.pynvml import FakeNvml

MODEL = "qwen3:8b"
IDLE_AFTER_S = 0.05
GAP_S = 0.4


def start(tmp: Path, sim_speed: float, clock_control=None) -> SessionThread:
    config = load_config(None)
    config.telemetry.poll_interval_s = 0.05
    config.governor.idle_after_s = IDLE_AFTER_S
    config.governor.state_file = str(tmp / "governor.json")
    options = SessionOptions(
        demo=True,
        listen=("127.0.0.1", 0),
        store_path=tmp / "sessions.db",
        sim_speed=sim_speed,
        clock_control=clock_control,
    )
    runner = SessionThread(Session(config, options))
    runner.start()
    return runner


def stream_ttft(client: httpx.Client) -> tuple[float, str]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "options": {"num_predict": 16},
    }
    started = time.perf_counter()
    ttft = None
    with client.stream("POST", "/api/chat", json=body) as response:
        request_id = response.headers["x-claw-request-id"]
        for line in response.iter_lines():
            message = json.loads(line).get("message") or {} if line.strip() else {}
            if ttft is None and (message.get("content") or message.get("thinking")):
                ttft = (time.perf_counter() - started) * 1000
    return ttft, request_id


def run_pairs(runner: SessionThread, pairs: int) -> dict:
    session = runner.session
    client = httpx.Client(base_url=session.gateway_url, timeout=60)
    stream_ttft(client)  # load the model once
    sides: dict[str, dict[str, list[float]]] = {k: {"client": [], "gateway": [], "wake": []} for k in ("woken", "off")}
    for i in range(pairs):
        order = ("woken", "off") if i % 2 == 0 else ("off", "woken")
        for side in order:
            client.post("/claw/v1/governor", json={"enabled": side == "woken"})
            deadline = time.monotonic() + 5
            time.sleep(GAP_S)
            if side == "woken":
                while session.governor_json()["state"] != "downclocked" and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert session.governor_json()["state"] == "downclocked"
            ttft, request_id = stream_ttft(client)
            time.sleep(0.1)
            record = session.ledger.get(request_id)
            sides[side]["client"].append(ttft)
            sides[side]["gateway"].append(record.ttft_ms)
            if record.wake_ms is not None:
                sides[side]["wake"].append(record.wake_ms)
    client.close()
    return sides


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):7.2f}  p95 {percentile(values, 95):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--sim-speed", type=float, default=20.0)
    args = parser.parse_args()
    results = {}
    for label, make_control in (
        ("simulated GPU", lambda: None),
        ("NVML path (fake driver)", lambda: NvmlClockControl(FakeNvml())),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            runner = start(Path(tmp), args.sim_speed, make_control())
            try:
                results[label] = run_pairs(runner, args.pairs)
            finally:
                runner.stop()
    print(
        f"TTFT added by a wake from downclocked — {args.pairs} interleaved pairs per clock control, "
        f"sim speed {args.sim_speed:g}, model {MODEL}"
    )
    for label, sides in results.items():
        woken, off = sides["woken"], sides["off"]
        print(f"\n{label}")
        for kind in ("client", "gateway"):
            added = statistics.median(woken[kind]) - statistics.median(off[kind])
            paired = [w - o for w, o in zip(woken[kind], off[kind])]
            print(f"  {kind:7} TTFT ms  after wake: {describe(woken[kind])}   governor off: {describe(off[kind])}")
            print(
                f"          added by the wake: {added:+.2f} ms (difference of medians), "
                f"median of paired differences {statistics.median(paired):+.2f} ms, "
                f"ratio {statistics.median(woken[kind]) / statistics.median(off[kind]):.3f}"
            )
        print(
            f"  the wake itself (clock reset in the request's path): {describe(woken['wake'])} ms "
            f"over {len(woken['wake'])} wakes"
        )
        verdict = "meets" if statistics.median(woken["gateway"]) - statistics.median(off["gateway"]) < 5 else "MISSES"
        print(f"  target < 5 ms added: {verdict}")


if __name__ == "__main__":
    main()
