"""A real decode server behind Ollama's API: a Llama-shaped transformer with random weights, decoding with a KV cache.

It stands in for Ollama on a GPU box so that claw's per-request energy can be checked against the GPU's own energy
counter. The default shape is an 8B Llama (hidden 4096, 32 layers, 32 heads, 8 KV heads, FFN 14336, vocab 128256,
RoPE) in bf16 on CUDA; `--tiny` is a small shape for the CPU. Token ids are the bytes of the prompt; generation is
greedy; the text of a token is a short printable word made from its id.

    python3 benchmarks/device/decode_backend.py --port 11434 --truth /tmp/truth.jsonl            # serial
    python3 benchmarks/device/decode_backend.py --port 11434 --batched 4 --truth /tmp/truth.jsonl  # batched

Scheduling, as Ollama's runner: `--parallel 1` computes one request at a time, the others wait in a FIFO queue
(OLLAMA_NUM_PARALLEL=1); `--batched N` decodes up to N requests as one batch (one forward over all active sequences
per step), a new request is prefilled alone and then joins the batch.

Endpoints: GET / ("Ollama is running"), GET /api/version, GET /api/tags, GET /api/ps, POST /api/show, POST /api/chat
and /api/generate (streamed NDJSON or one JSON object, the final chunk with real timings in nanoseconds), and
POST /burn {"seconds": s}: bf16 matrix products outside any request, for work that no gateway sees.

Timings follow Ollama: load_duration runs from arrival until the request is handed to the runner (the model is
resident, so it is short); the wait for a free slot is in none of the durations (total − load − prompt_eval − eval);
prompt_eval_duration is the prefill up to the first token, eval_duration from the first token to the last.

Ground truth (`--truth FILE`, one JSON line each): for every request the GPU energy counter
(nvmlDeviceGetTotalEnergyConsumption) at its prefill start and after its last token (after the GPU finished); for
every busy period ("batch": from the engine leaving idle until it is idle again) its energy and the token counts of
the requests in it; for every burn its energy. The counter moves in steps (about every 100 ms on Hopper), so a
reader thread polls it back to back, notes when each step happens, and places an instant between two steps in
proportion to the instant power read alongside: good to a few joules at each end. The lines are written by
another thread once the counter has moved past the request's end, off the decode loop's path. In batched mode each
request also gets `share_j`: every forward step's energy split equally among the sequences it decoded, a prefill's
energy to its own request.

Never changes any GPU setting: it only reads NVML.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import itertools
import json
import multiprocessing
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from aiohttp import web

VERSION = "0.32.15"
JSON_SEPARATORS = (",", ":")


# ---- model ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    rope_theta: float = 500_000.0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def parameters(self) -> int:
        d = self.head_dim
        per_layer = self.hidden * (self.heads + 2 * self.kv_heads) * d + self.heads * d * self.hidden
        per_layer += 3 * self.hidden * self.ffn + 2 * self.hidden
        return self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden


LLAMA_8B = Shape(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256)
TINY = Shape(hidden=256, layers=2, heads=8, kv_heads=2, ffn=512, vocab=1024)


class Llama:
    """Llama-shaped decoder with random weights and a KV cache of `slots` sequences of up to `max_seq` tokens."""

    def __init__(self, shape: Shape, device: torch.device, dtype: torch.dtype, slots: int, max_seq: int) -> None:
        self.shape = shape
        self.device = device
        self.max_seq = max_seq
        torch.manual_seed(0)

        def weight(*size: int) -> torch.Tensor:
            return torch.empty(*size, device=device, dtype=dtype).normal_(0.0, 0.02)

        d, kv = shape.head_dim, shape.kv_heads
        self.embed = weight(shape.vocab, shape.hidden)
        self.layers = [
            {
                "attn_norm": torch.ones(shape.hidden, device=device, dtype=dtype),
                "wqkv": weight((shape.heads + 2 * kv) * d, shape.hidden),
                "wo": weight(shape.hidden, shape.heads * d),
                "mlp_norm": torch.ones(shape.hidden, device=device, dtype=dtype),
                "w13": weight(2 * shape.ffn, shape.hidden),
                "w2": weight(shape.hidden, shape.ffn),
            }
            for _ in range(shape.layers)
        ]
        self.norm = torch.ones(shape.hidden, device=device, dtype=dtype)
        self.lm_head = weight(shape.vocab, shape.hidden)
        self.k_cache = [torch.zeros(slots, kv, max_seq, d, device=device, dtype=dtype) for _ in range(shape.layers)]
        self.v_cache = [torch.zeros(slots, kv, max_seq, d, device=device, dtype=dtype) for _ in range(shape.layers)]
        inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
        angles = torch.outer(torch.arange(max_seq, device=device, dtype=torch.float32), inv_freq)
        self.cos = angles.cos().to(dtype)
        self.sin = angles.sin().to(dtype)
        self.positions = torch.arange(max_seq, device=device)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (B, T, heads, D); cos/sin: (B, T, D/2), rotating the two halves of each head
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def _layer(self, x: torch.Tensor, layer: int, attend) -> torch.Tensor:
        w = self.layers[layer]
        s = self.shape
        b, t, _ = x.shape
        h = F.rms_norm(x, (s.hidden,), w["attn_norm"])
        q, k, v = F.linear(h, w["wqkv"]).split(
            (s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim), -1
        )
        q = q.view(b, t, s.heads, s.head_dim)
        k = k.view(b, t, s.kv_heads, s.head_dim)
        v = v.view(b, t, s.kv_heads, s.head_dim)
        out = attend(layer, q, k, v)  # (B, heads, T, D)
        x = x + F.linear(out.transpose(1, 2).reshape(b, t, s.heads * s.head_dim), w["wo"])
        h = F.rms_norm(x, (s.hidden,), w["mlp_norm"])
        gate, up = F.linear(h, w["w13"]).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w["w2"])

    def _next_tokens(self, x: torch.Tensor) -> torch.Tensor:
        h = F.rms_norm(x[:, -1], (self.shape.hidden,), self.norm)
        return F.linear(h, self.lm_head).argmax(dim=-1)

    @torch.inference_mode()
    def prefill(self, slot: int, tokens: list[int]) -> int:
        """Fill the slot's cache with the prompt; returns the first generated token."""
        t = len(tokens)
        ids = torch.tensor([tokens], device=self.device)
        cos, sin = self.cos[:t].unsqueeze(0), self.sin[:t].unsqueeze(0)

        def attend(layer, q, k, v):
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # (1, kv, T, D)
            self.k_cache[layer][slot, :, :t] = k[0]
            self.v_cache[layer][slot, :, :t] = v[0]
            return F.scaled_dot_product_attention(q.transpose(1, 2), k, v, is_causal=True, enable_gqa=True)

        x = self.embed[ids]
        for layer in range(self.shape.layers):
            x = self._layer(x, layer, attend)
        return int(self._next_tokens(x).item())

    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int], positions: list[int]) -> list[int]:
        """One step for several sequences: token i sits at position i of slot i; returns each one's next token."""
        length = max(positions) + 1
        slot_ids = torch.tensor(slots, device=self.device)
        pos = torch.tensor(positions, device=self.device)
        ids = torch.tensor(tokens, device=self.device).unsqueeze(1)  # (B, 1)
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # (B, 1, D/2)
        mask = (self.positions[:length].unsqueeze(0) <= pos.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, L)

        def attend(layer, q, k, v):
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            self.k_cache[layer][slot_ids, :, pos] = k[:, 0]
            self.v_cache[layer][slot_ids, :, pos] = v[:, 0]
            keys = self.k_cache[layer][slot_ids, :, :length]
            values = self.v_cache[layer][slot_ids, :, :length]
            return F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask, enable_gqa=True)

        x = self.embed[ids]
        for layer in range(self.shape.layers):
            x = self._layer(x, layer, attend)
        return self._next_tokens(x).tolist()


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "po", "da", "fe", "gu", "ha", "ji", "ko", "la"]


def token_text(token: int) -> str:
    """A short printable word for a token id (the model's weights are random, so is its text)."""
    return SYLLABLES[token % 16] + SYLLABLES[(token // 16) % 16] + ("\n" if token % 29 == 0 else " ")


def encode(text: str, vocab: int) -> list[int]:
    return [b % vocab for b in text.encode("utf-8")] or [0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the GPU energy counter ----------------------------------------------------------------------------------------
class EnergyMeter:
    """The GPU energy counter, read back to back by a process of its own; `energy_mj(t)` places it at instant t.

    The counter (mJ) moves in steps; each step is dated midway between the last read that saw the old value and the
    first that saw the new one. Between two steps the energy is spread in proportion to the instant power read in the
    same loop (linearly where there is none). The reads run in another process so that their timestamps are not held
    up by this one's decode loop (the GIL); a thread here takes them in.
    """

    KEEP_S = 1800.0

    def __init__(self, gpu: int) -> None:
        self.available = False
        self.error = ""
        self._steps_t: list[float] = []  # when the counter moved
        self._steps_mj: list[float] = []  # its value from then on
        self._power_t: list[float] = []
        self._power_w: list[float] = []
        self._last_mj: float | None = None
        self._last_mid = 0.0
        self._reads = 0
        self._read_s = 0.0
        self._lock = threading.Lock()
        self._moved = threading.Condition(self._lock)
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=poll_counter, args=(gpu, sender), name="energy-counter", daemon=True)
        self._process.start()
        sender.close()
        hello = receiver.recv() if receiver.poll(60) else {"error": "the counter reader did not start"}
        if hello.get("error"):
            self.error = hello["error"]
            self._process.join(5)
            return
        self.available = True
        self._receiver = receiver
        self._thread = threading.Thread(target=self._run, name="energy-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                reads = self._receiver.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                for before, after, mj, watts in reads:
                    self._add(before, after, mj, watts)
                self._trim(reads[-1][1])
                self._moved.notify_all()

    def _add(self, before: float, after: float, mj: float, watts: float | None) -> None:
        mid = (before + after) / 2
        self._reads += 1
        self._read_s += after - before
        if watts is not None:
            self._power_t.append(after)
            self._power_w.append(watts)
        if mj != self._last_mj:
            self._steps_t.append(mid if self._last_mj is None else (self._last_mid + mid) / 2)
            self._steps_mj.append(mj)
            self._last_mj = mj
        self._last_mid = mid

    def _trim(self, now: float) -> None:
        if self._steps_t and self._steps_t[0] < now - self.KEEP_S - 60:
            cut = bisect.bisect_left(self._steps_t, now - self.KEEP_S)
            del self._steps_t[:cut], self._steps_mj[:cut]
            cut = bisect.bisect_left(self._power_t, now - self.KEEP_S)
            del self._power_t[:cut], self._power_w[:cut]

    def wait_past(self, t: float, timeout: float = 5.0) -> bool:
        """Wait until the counter has moved at least once after instant t."""
        if not self.available:
            return False
        deadline = time.time() + timeout
        with self._lock:
            while not (self._steps_t and self._steps_t[-1] > t):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._moved.wait(left)
        return True

    def energy_mj(self, t: float) -> float | None:
        """The counter at instant t (interpolated between its steps), or None when t is outside what was read."""
        if not self.available:
            return None
        with self._lock:
            i = bisect.bisect_right(self._steps_t, t) - 1
            if i < 0 or i + 1 >= len(self._steps_t):
                return None
            t0, t1 = self._steps_t[i], self._steps_t[i + 1]
            e0, e1 = self._steps_mj[i], self._steps_mj[i + 1]
            fraction = self._power_fraction(t0, t1, t)
        return e0 + (e1 - e0) * fraction

    def _power_fraction(self, t0: float, t1: float, t: float) -> float:
        """Share of the energy of [t0, t1] spent before t, from the power read meanwhile (linear without any)."""
        linear = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        lo = bisect.bisect_left(self._power_t, t0)
        hi = bisect.bisect_right(self._power_t, t1)
        if hi - lo < 2:
            return linear
        before = self._integral(lo, hi, t0, t)
        whole = self._integral(lo, hi, t0, t1)
        return before / whole if whole > 0 else linear

    def _integral(self, lo: int, hi: int, a: float, b: float) -> float:
        """∫ power over [a, b], each reading held from its time until the next (the first one back to a)."""
        total = 0.0
        for k in range(lo, hi):
            start = a if k == lo else max(a, self._power_t[k])
            end = b if k + 1 == hi else min(b, self._power_t[k + 1])
            if end > start:
                total += self._power_w[k] * (end - start)
        return total

    def stats(self) -> dict[str, Any]:
        with self._lock:
            steps = self._steps_t[-200:]
            gaps = [b - a for a, b in itertools.pairwise(steps)]
            return {
                "available": self.available,
                "error": self.error,
                "reads": self._reads,
                "read_ms_mean": round(1000 * self._read_s / self._reads, 3) if self._reads else None,
                "step_ms_median": round(1000 * sorted(gaps)[len(gaps) // 2], 1) if gaps else None,
                "power_w_last": self._power_w[-1] if self._power_w else None,
            }

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()


def poll_counter(gpu: int, out) -> None:
    """In a process of its own: read the energy counter and the instant power back to back, send them in batches."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # no driver, no NVML: the truth file then says so
        out.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    out.send({"error": ""})
    field_id = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", 186)
    value_kinds = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal"}

    def power_w() -> float | None:
        try:
            value = pynvml.nvmlDeviceGetFieldValues(handle, [field_id])[0]
            if value.nvmlReturn == 0:
                return float(getattr(value.value, value_kinds.get(value.valueType, "uiVal"))) / 1000.0
        except Exception:
            pass
        try:
            return pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except Exception:
            return None

    batch: list[tuple] = []
    sent = time.time()
    while True:
        before = time.time()
        try:
            mj = float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:
            time.sleep(0.01)
            continue
        after = time.time()
        batch.append((before, after, mj, power_w()))
        if after - sent >= 0.02:
            try:
                out.send(batch)
            except (BrokenPipeError, OSError):
                return
            batch, sent = [], after
        time.sleep(max(0.0005, 0.002 - (after - before)))  # ~3 ms a read on a GPU; a fake one is instant


# ---- requests and the engine ---------------------------------------------------------------------------------------
_ids = itertools.count(1)


@dataclass
class Job:
    tag: str
    prompt: list[int]
    num_predict: int
    stream: bool
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    kind: str = "request"  # or "burn"
    burn_s: float = 0.0
    id: int = field(default_factory=lambda: next(_ids))
    t_arrival: float = 0.0
    t_assigned: float = 0.0
    t_prefill_start: float | None = None
    t_first_token: float | None = None
    t_last_token: float | None = None
    t_done: float | None = None
    prompt_tokens: int = 0
    batch: int | None = None
    slot: int = -1
    position: int = 0
    last_token: int = 0
    generated: int = 0
    share_j: float = 0.0
    cancelled: bool = False
    done_reason: str = "length"

    def send(self, item: tuple) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class Engine:
    """The runner: a thread that prefills and decodes; up to `parallel` sequences decode together."""

    def __init__(self, model: Llama, parallel: int, meter: EnergyMeter, truth: TruthLog, pace_s: float = 0.0) -> None:
        self.model = model
        self.pace_s = pace_s
        self.parallel = parallel
        self.meter = meter
        self.truth = truth
        self.pending: queue.Queue[Job] = queue.Queue()
        self.waiting: deque[Job] = deque()  # taken from `pending`, not yet admitted
        self.active: list[Job] = []
        self.free_slots = list(range(parallel))
        self.batches = itertools.count(1)
        self.batch: dict[str, Any] | None = None
        self.segments: list[tuple[float, float, list[Job]]] = []  # (start, end, jobs sharing it) of this batch
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)

    def submit(self, job: Job) -> None:
        job.t_assigned = time.time()
        self.pending.put(job)

    def _run(self) -> None:
        while True:
            self._take_pending(block=not self.active and not self.waiting)
            while self.waiting and len(self.active) < self.parallel:
                job = self.waiting[0]
                if job.kind == "burn":
                    if self.active:
                        break  # work outside requests runs alone
                    self.waiting.popleft()
                    self._burn(job)
                    continue
                self.waiting.popleft()
                self._admit(job)
            if self.active:
                self._step()
            if not self.active and not self.waiting:
                self._end_batch()

    def _take_pending(self, block: bool) -> None:
        try:
            if block:
                self.waiting.append(self.pending.get())
            while True:
                self.waiting.append(self.pending.get_nowait())
        except queue.Empty:
            pass

    def _start_batch(self, t: float) -> None:
        if self.batch is None:
            self.batch = {"batch": next(self.batches), "t_start": t, "jobs": []}
            self.segments = []

    def _end_batch(self) -> None:
        if self.batch is not None:
            self.batch["t_end"] = max(j.t_last_token or j.t_prefill_start or 0 for j in self.batch["jobs"])
            self.truth.batch_done(self.batch, self.segments)
            self.batch = None

    def _admit(self, job: Job) -> None:
        if job.cancelled:
            job.send(("cancelled",))
            return
        sync(self.model.device)
        job.t_prefill_start = time.time()
        self._start_batch(job.t_prefill_start)
        job.batch = self.batch["batch"]
        self.batch["jobs"].append(job)
        job.slot = self.free_slots.pop(0)
        room = self.model.max_seq - 1
        prompt = job.prompt[-max(1, room - job.num_predict) :]
        token = self.model.prefill(job.slot, prompt)  # .item() waits for the GPU
        self._pace(job.t_prefill_start)
        job.t_first_token = time.time()
        self.segments.append((job.t_prefill_start, job.t_first_token, [job]))
        job.position = len(prompt)
        job.prompt_tokens = len(prompt)
        self._emit(job, token, job.t_first_token)
        if job.generated >= job.num_predict or job.position >= room:
            self._finish(job)
        else:
            self.active.append(job)

    def _step(self) -> None:
        jobs = list(self.active)
        start = time.time()
        tokens = self.model.decode([j.slot for j in jobs], [j.last_token for j in jobs], [j.position for j in jobs])
        self._pace(start)
        now = time.time()  # .tolist() waited for the GPU
        self.segments.append((start, now, jobs))
        for job, token in zip(jobs, tokens):
            job.position += 1
            if job.cancelled:
                job.t_last_token = now
                job.done_reason = "cancelled"
                self._finish(job)
                continue
            self._emit(job, token, now)
            if job.generated >= job.num_predict or job.position >= self.model.max_seq - 1:
                self._finish(job)

    def _pace(self, start: float) -> None:
        """With --pace-ms, a forward step lasts at least that long (the tiny CPU model is far quicker than a GPU's)."""
        left = start + self.pace_s - time.time()
        if left > 0:
            time.sleep(left)

    def _emit(self, job: Job, token: int, t: float) -> None:
        job.generated += 1
        job.last_token = token
        job.t_last_token = t
        job.send(("token", token_text(token)))

    def _finish(self, job: Job) -> None:
        if job in self.active:
            self.active.remove(job)
        self.free_slots.append(job.slot)
        self.free_slots.sort()
        job.send(("done",))

    def _burn(self, job: Job) -> None:
        device = self.model.device
        n = 8192 if device.type == "cuda" else 256
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        sync(device)
        start = time.time()
        products = 0
        while time.time() - start < job.burn_s:
            for _ in range(10):
                a @ b
            products += 10
            sync(device)
        end = time.time()
        del a, b
        line = {"type": "burn", "tag": job.tag, "t_start": start, "t_end": end, "products": products, "n": n}
        self.truth.burn_done(line, job)


# ---- the truth log -------------------------------------------------------------------------------------------------
class TruthLog:
    """Writes the ground-truth lines from a thread of its own, once the counter has moved past each end."""

    SETTLE_S = 0.15  # a read or two past the counter's next step

    def __init__(self, path: str | None, meter: EnergyMeter, mode: str) -> None:
        self.path = path
        self.meter = meter
        self.mode = mode
        self.items: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="truth", daemon=True)
        self.thread.start()

    def request_done(self, job: Job, durations: dict[str, int]) -> None:
        self.items.put(("request", job, durations))

    def batch_done(self, batch: dict, segments: list) -> None:
        self.items.put(("batch", batch, segments))

    def burn_done(self, line: dict, job: Job) -> None:
        self.items.put(("burn", line, job))

    def write(self, line: dict) -> None:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")

    def _energy(self, start: float, end: float) -> tuple[float | None, float | None, float | None]:
        self.meter.wait_past(end + self.SETTLE_S)
        e0, e1 = self.meter.energy_mj(start), self.meter.energy_mj(end)
        joules = None if e0 is None or e1 is None else (e1 - e0) / 1000.0
        return e0, e1, joules

    def _run(self) -> None:
        while True:
            kind, first, second = self.items.get()
            try:
                if kind == "request":
                    self._request(first, second)
                elif kind == "batch":
                    self._batch(first, second)
                else:
                    self._burn(first, second)
            except Exception as exc:  # a broken truth line must not stop the server
                print(f"truth: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _request(self, job: Job, durations: dict[str, int]) -> None:
        start, end = job.t_prefill_start, job.t_last_token
        e0 = e1 = joules = None
        if start is not None and end is not None:
            e0, e1, joules = self._energy(start, end)
        self.write(
            {
                "type": "request",
                "tag": job.tag,
                "id": job.id,
                "mode": self.mode,
                "batch": job.batch,
                "stream": job.stream,
                "num_predict": job.num_predict,
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": job.generated,
                "done_reason": job.done_reason,
                "t_arrival": job.t_arrival,
                "t_assigned": job.t_assigned,
                "t_prefill_start": start,
                "t_first_token": job.t_first_token,
                "t_last_token": end,
                "t_done": job.t_done,
                "counter_start_mj": e0,
                "counter_end_mj": e1,
                "energy_j": joules,
                "durations_ns": durations,
            }
        )

    def _batch(self, batch: dict, segments: list) -> None:
        e0, e1, joules = self._energy(batch["t_start"], batch["t_end"])
        shares: dict[int, float] = {}
        split = True
        for start, end, jobs in segments:
            a, b = self.meter.energy_mj(start), self.meter.energy_mj(end)
            if a is None or b is None:
                split = False
                break
            for job in jobs:
                shares[job.id] = shares.get(job.id, 0.0) + (b - a) / 1000.0 / len(jobs)
        busy_j = sum(shares.values()) if split else None
        self.write(
            {
                "type": "batch",
                "batch": batch["batch"],
                "mode": self.mode,
                "t_start": batch["t_start"],
                "t_end": batch["t_end"],
                "counter_start_mj": e0,
                "counter_end_mj": e1,
                "energy_j": joules,
                "compute_j": busy_j,  # the energy of the forward steps alone, without the gaps between them
                "requests": [
                    {
                        "tag": j.tag,
                        "id": j.id,
                        "prompt_tokens": j.prompt_tokens,
                        "completion_tokens": j.generated,
                        "t_prefill_start": j.t_prefill_start,
                        "t_last_token": j.t_last_token,
                        "share_j": shares.get(j.id) if split else None,
                    }
                    for j in batch["jobs"]
                ],
            }
        )

    def _burn(self, line: dict, job: Job) -> None:
        e0, e1, joules = self._energy(line["t_start"], line["t_end"])
        line.update(counter_start_mj=e0, counter_end_mj=e1, energy_j=joules)
        if joules is not None:
            line["mean_w"] = joules / (line["t_end"] - line["t_start"])
        self.write(line)
        job.send(("burned", line))


# ---- HTTP ----------------------------------------------------------------------------------------------------------
def rfc3339_nano(unix_ns: int) -> str:
    secs, frac = divmod(unix_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=JSON_SEPARATORS).encode()


def error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=dumps({"error": message}), content_type="application/json")


class Server:
    def __init__(self, args: argparse.Namespace, engine: Engine, meter: EnergyMeter, shape: Shape) -> None:
        self.args = args
        self.engine = engine
        self.meter = meter
        self.shape = shape
        self.model_name = args.model
        self.started = time.time()
        self.digest = hashlib.sha256(f"{args.model} {shape}".encode()).hexdigest()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self.root)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/burn", self.burn)
        app.router.add_get("/meter", self.meter_stats)
        return app

    def details(self) -> dict[str, Any]:
        billions = self.shape.parameters() / 1e9
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": f"{billions:.1f}B" if billions >= 1 else f"{self.shape.parameters() / 1e6:.0f}M",
            "quantization_level": "BF16" if self.args.dtype == "bfloat16" else "F32",
        }

    def size_bytes(self) -> int:
        return self.shape.parameters() * (2 if self.args.dtype == "bfloat16" else 4)

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def tags(self, request: web.Request) -> web.Response:
        model = {
            "name": self.model_name,
            "model": self.model_name,
            "modified_at": rfc3339_nano(int(self.started * 1e9)),
            "size": self.size_bytes(),
            "digest": self.digest,
            "details": self.details(),
        }
        return web.json_response({"models": [model]})

    async def ps(self, request: web.Request) -> web.Response:
        model = {
            "name": self.model_name,
            "model": self.model_name,
            "size": self.size_bytes(),
            "digest": self.digest,
            "details": self.details(),
            "expires_at": rfc3339_nano(int((time.time() + 86400 * 365) * 1e9)),
            "size_vram": self.size_bytes() if self.args.device == "cuda" else 0,
            "context_length": self.args.max_seq,
        }
        return web.json_response({"models": [model]})

    def _known(self, name: str) -> bool:
        return name in (self.model_name, self.model_name.split(":")[0])

    async def show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("model") or body.get("name") or ""
        if not name:
            return error(400, "model is required")
        if not self._known(name):
            return error(404, f"model '{name}' not found")
        return web.json_response(
            {
                "modelfile": f"FROM {self.model_name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": self.details(),
                "model_info": {},
                "capabilities": ["completion"],
                "modified_at": rfc3339_nano(int(self.started * 1e9)),
            }
        )

    async def meter_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.meter.stats())

    async def _body(self, request: web.Request) -> dict | web.Response:
        raw = await request.read()
        if not raw:
            return error(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return error(400, f"invalid JSON: {exc}")
        if not isinstance(body, dict):
            return error(400, "expected a JSON object")
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        t_arrival = time.time()
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("model") or ""
        if not name:
            return error(400, "model is required")
        if not self._known(name):
            return error(404, f"model '{name}' not found")
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                return error(400, "messages must be a list")
            text = "".join(
                f"{m.get('role', 'user')}: {m.get('content') or ''}\n" for m in messages if isinstance(m, dict)
            )
            users = [m.get("content") or "" for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            last_user = users[-1] if users else ""
        else:
            text = last_user = str(body.get("prompt") or "")
        if not text:  # a load (or, with keep_alive 0, an unload) of a model that never leaves
            reason = "unload" if body.get("keep_alive") in (0, "0") else "load"
            reply = {"model": name, "created_at": now_rfc3339(), "done": True, "done_reason": reason}
            if chat:
                reply["message"] = {"role": "assistant", "content": ""}
            else:
                reply["response"] = ""
            return web.Response(body=dumps(reply), content_type="application/json")
        options = body.get("options") or {}
        num_predict = options.get("num_predict", self.args.num_predict) if isinstance(options, dict) else None
        if isinstance(num_predict, bool) or not isinstance(num_predict, int):
            return error(500, 'option "num_predict" must be of type int')
        if num_predict < 0:
            num_predict = self.args.max_seq
        num_predict = max(1, min(num_predict, self.args.max_seq // 2))
        stream = body.get("stream", True) is not False
        tag = request.headers.get("X-Truth-Tag") or last_user[:16].strip()
        loop = asyncio.get_running_loop()
        job = Job(tag, encode(text, self.shape.vocab), num_predict, stream, loop, asyncio.Queue())
        job.t_arrival = t_arrival
        self.engine.submit(job)
        try:
            if stream:
                return await self._stream(request, job, name, chat)
            return await self._whole(job, name, chat)
        except (asyncio.CancelledError, ConnectionResetError):
            job.cancelled = True
            raise

    def _final(self, job: Job, name: str, chat: bool) -> tuple[dict, dict[str, int]]:
        job.t_done = time.time()
        first, last, start = job.t_first_token, job.t_last_token, job.t_prefill_start
        durations = {
            "total_duration": int((job.t_done - job.t_arrival) * 1e9),
            "load_duration": int((job.t_assigned - job.t_arrival) * 1e9),
            "prompt_eval_count": job.prompt_tokens,
            "prompt_eval_duration": int((first - start) * 1e9) if first and start else 0,
            "eval_count": job.generated,
            "eval_duration": int((last - first) * 1e9) if first and last else 0,
        }
        job.done_reason = "length" if job.generated >= job.num_predict else "stop"
        final: dict[str, Any] = {"model": name, "created_at": now_rfc3339()}
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        final.update(done=True, done_reason=job.done_reason)
        final.update({k: v for k, v in durations.items() if v})  # Ollama leaves out the zero metrics
        return final, durations

    async def _stream(self, request: web.Request, job: Job, name: str, chat: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        while True:
            item = await job.out.get()
            if item[0] == "token":
                chunk: dict[str, Any] = {"model": name, "created_at": now_rfc3339()}
                if chat:
                    chunk["message"] = {"role": "assistant", "content": item[1]}
                else:
                    chunk["response"] = item[1]
                chunk["done"] = False
                await response.write(dumps(chunk) + b"\n")
            elif item[0] == "done":
                final, durations = self._final(job, name, chat)
                await response.write(dumps(final) + b"\n")
                self.engine.truth.request_done(job, durations)
                break
            else:
                break
        await response.write_eof()
        return response

    async def _whole(self, job: Job, name: str, chat: bool) -> web.Response:
        parts: list[str] = []
        while True:
            item = await job.out.get()
            if item[0] == "token":
                parts.append(item[1])
            else:
                break
        final, durations = self._final(job, name, chat)
        if chat:
            final["message"]["content"] = "".join(parts)
        else:
            final["response"] = "".join(parts)
        self.engine.truth.request_done(job, durations)
        return web.Response(body=dumps(final), content_type="application/json")

    async def burn(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        seconds = body.get("seconds", 5)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 120:
            return error(400, "seconds must be a number in (0, 120]")
        job = Job(str(body.get("tag") or "burn"), [], 0, False, asyncio.get_running_loop(), asyncio.Queue())
        job.kind, job.burn_s = "burn", float(seconds)
        self.engine.submit(job)
        item = await job.out.get()
        return web.json_response(item[1])


def warm_up(model: Llama, parallel: int) -> None:
    """Compile the kernels of every batch size once, so the first request is not slower than the others."""
    model.prefill(0, list(range(1, 33)))
    for b in range(1, parallel + 1):
        model.decode(list(range(b)), [1] * b, [32] * b)
    sync(model.device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", default="llama8b:bf16", help="the one model name it answers to")
    parser.add_argument("--tiny", action="store_true", help="a small shape for the CPU (hidden 256, 2 layers)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--parallel", type=int, choices=[1], default=1, help="one request at a time (FIFO queue)")
    mode.add_argument("--batched", type=int, default=0, metavar="N", help="decode up to N requests as one batch")
    parser.add_argument(
        "--num-predict", type=int, default=128, help="tokens per answer when options.num_predict is unset"
    )
    parser.add_argument("--max-seq", type=int, default=4096, help="KV cache length of each sequence")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU whose counter is the truth")
    parser.add_argument("--pace-ms", type=float, default=0.0, help="each forward step lasts at least this long")
    parser.add_argument("--truth", default=None, metavar="FILE", help="append the ground-truth JSON lines here")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.001)  # the decode thread's timestamps wait less for the GIL
    args.dtype = "bfloat16" if args.device == "cuda" else "float32"
    shape = TINY if args.tiny else LLAMA_8B
    parallel = args.batched or 1
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    loaded = time.time()
    model = Llama(shape, device, getattr(torch, args.dtype), parallel, args.max_seq)
    warm_up(model, parallel)
    load_s = time.time() - loaded
    meter = EnergyMeter(args.gpu)
    mode_name = f"batched{parallel}" if args.batched else "serial"
    truth = TruthLog(args.truth, meter, mode_name)
    engine = Engine(model, parallel, meter, truth, args.pace_ms / 1000.0)
    engine.thread.start()
    server = Server(args, engine, meter, shape)
    truth.write(
        {
            "type": "start",
            "mode": mode_name,
            "model": args.model,
            "shape": shape.__dict__,
            "parameters": shape.parameters(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": args.dtype,
            "load_s": round(load_s, 3),
            "meter": meter.stats(),
            "t": time.time(),
        }
    )
    print(
        f"decode backend: {args.model} {shape.parameters() / 1e9:.2f}B params on {args.device} ({args.dtype}), "
        f"{mode_name}, loaded in {load_s:.1f} s; energy counter: {'yes' if meter.available else meter.error}; "
        f"listening on http://{args.host}:{args.port}",
        flush=True,
    )
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None, handle_signals=True)
    meter.stop()


if __name__ == "__main__":
    main()
