"""The simulated Ollama server: the Ollama HTTP API (and its OpenAI-compatible /v1 surface) over simulated GPUs.

It follows Ollama's wire formats (field names and order, NDJSON streams, nanosecond durations, error texts and
status codes) and its scheduling: the first use of a model loads it (delay, VRAM residency, parking power),
keep_alive expiry unloads it, at most `num_parallel` requests per model generate at once and the rest wait in a
bounded queue (503 beyond `max_queue`). While a request runs, the simulated GPU sees prefill then decode work,
so power follows the traffic. Answers are deterministic (see `claw_tui.sim.text`).

`speed` multiplies every rate and divides every delay: tests use speed=20 or more, the demo uses 1.0.
Tests reach the state and its fault hooks through `SimServer.state` (see `SimState`). The parts: `wire` (Go-style
JSON, durations, errors), `options`, `faults`, `scheduler` (runners and scheduling), `responses`, `ollama_api`,
`openai_api`, and `app` (the front door and `SimServer`).
"""

from claw_tui.sim.server.app import SimServer, build_app, create_sim_app
from claw_tui.sim.server.faults import Faults, StreamPlan, default_failure_message
from claw_tui.sim.server.ollama_api import OllamaApi
from claw_tui.sim.server.openai_api import OpenAIApi
from claw_tui.sim.server.options import DEFAULT_OPTIONS, SIM_TOKENS_OPTION, apply_options
from claw_tui.sim.server.scheduler import Final, GenRequest, Runner, SimState
from claw_tui.sim.server.wire import (
    BUSY_MESSAGE,
    OLLAMA_VERSION,
    RUNNER_CRASH_MESSAGE,
    STREAM_ERROR_MESSAGE,
    RequestError,
    go_json,
    parse_go_duration,
    parse_keep_alive,
)

__all__ = [
    "BUSY_MESSAGE",
    "DEFAULT_OPTIONS",
    "OLLAMA_VERSION",
    "RUNNER_CRASH_MESSAGE",
    "SIM_TOKENS_OPTION",
    "STREAM_ERROR_MESSAGE",
    "Faults",
    "Final",
    "GenRequest",
    "OllamaApi",
    "OpenAIApi",
    "RequestError",
    "Runner",
    "SimServer",
    "SimState",
    "StreamPlan",
    "apply_options",
    "build_app",
    "create_sim_app",
    "default_failure_message",
    "go_json",
    "parse_go_duration",
    "parse_keep_alive",
]
