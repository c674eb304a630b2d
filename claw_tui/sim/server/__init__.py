"""The simulated Ollama server: the Ollama HTTP API (and its OpenAI-compatible /v1 surface) over simulated GPUs.

It follows Ollama's wire formats (field names and order, NDJSON streams, nanosecond durations, error texts and
status codes) and its scheduling: the first use of a model loads it (delay, VRAM residency, parking power),
keep_alive expiry unloads it, at most `num_parallel` requests per model generate at once and the rest wait in a
bounded queue (503 beyond `max_queue`). While a request runs, the simulated GPU sees prefill then decode work,
so power follows the traffic. Answers are deterministic (see `claw_tui.sim.text`).

`speed` multiplies every rate and divides every delay: tests use speed=20 or more, the demo uses 1.0.
Tests reach the state and its fault hooks through `SimServer.state` (see `SimState`).
"""
