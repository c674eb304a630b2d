"""The settings: one dataclass per section of the config file, each field with its help, range or choices."""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

APP_NAME = "claw"
CONFIG_ENV_VAR = "CLAW_CONFIG"
OLLAMA_HOST_ENV_VAR = "OLLAMA_HOST"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
OLLAMA_DEFAULT_PORT = 11434


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Any = MISSING,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A dataclass field with its one-line help and the range or choices its value must respect."""
    metadata = {"help": help, "at_least": at_least, "above": above, "at_most": at_most, "choices": choices}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split a listen address: "host:port", "[::1]:port", or ":port" (loopback). Raises ValueError."""
    text = listen.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError("expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError("expected HOST:PORT, [IPv6]:PORT or :PORT")
        if ":" in host:
            raise ValueError("an IPv6 address needs brackets: [IPv6]:PORT")
        # ":PORT" means loopback, not every interface: listening beyond the box must be asked for explicitly.
        host = host or "127.0.0.1"
    if not host or any(ch.isspace() for ch in host):
        raise ValueError("the host is empty or contains spaces")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


@dataclass
class GatewayConfig:
    listen: str = setting("127.0.0.1:18789", "address of the gateway: HOST:PORT, [IPv6]:PORT or :PORT (loopback)")
    tokens: list[str] = setting(
        factory=list, help="client bearer tokens; empty = no auth (then only a loopback listen is allowed)"
    )
    admin_tokens: list[str] = setting(
        factory=list,
        help="when set, model management (/api/create, /api/delete, /api/pull, /api/copy) and switching the "
        "governor (POST /claw/v1/governor) need one of these",
    )
    max_body_bytes: int = setting(8 * 1024 * 1024, "largest request body accepted, in bytes", above=0)
    max_header_bytes: int = setting(
        64 * 1024, "largest request line and headers, in bytes (then 431 and the connection is closed)", at_least=1024
    )
    header_timeout_s: float = setting(
        10.0, "time a client has to send its request line and headers (then 408 and the connection is closed)", above=0
    )
    body_timeout_s: float = setting(
        30.0, "longest silence while a request body arrives (then 408 and the connection is closed)", above=0
    )
    keep_alive_timeout_s: float = setting(30.0, "an idle keep-alive connection is closed after this long", above=0)
    max_connections: int = setting(
        0,
        "open client connections at most; beyond it idle ones are closed first, then 503; "
        "0 = automatic, below the process's open-file limit",
        at_least=0,
    )
    rate_limit_rpm: int = setting(0, "requests per minute per token; 0 = off", at_least=0)
    rate_limit_burst: int = setting(0, "requests a token may send at once above the rate", at_least=0)
    max_in_flight: int = setting(16, "requests forwarded at once to one backend", at_least=1)
    queue_size: int = setting(256, "requests that may wait for a free slot (then 503)", at_least=0)
    queue_timeout_s: float = setting(30.0, "longest wait in the queue (then 503 + Retry-After)", at_least=0)
    connect_timeout_s: float = setting(5.0, "to connect to a backend", above=0)
    first_token_timeout_s: float = setting(300.0, "until the first token; long, loading a model is slow", above=0)
    idle_timeout_s: float = setting(120.0, "longest silence between two streamed chunks", above=0)
    total_timeout_s: float = setting(1800.0, "longest request from start to end", above=0)
    retries: int = setting(1, "retries of a failed request, only before its first byte reached the client", at_least=0)
    vram_admission_pct: float = setting(
        0.0, "queue new requests while GPU memory use is above this percentage; 0 = off", at_least=0, at_most=100
    )
    warmup_prompt: str = setting("", "prompt sent to each model at start to load it; empty = none")
    warmup_models: list[str] = setting(
        factory=list, help="models the warm-up prompt loads; empty = the models of the agents"
    )
    fallback_models: dict[str, Any] = setting(
        factory=dict, help='model that answers when another fails, e.g. { "qwen3:32b" = "qwen3:8b" }'
    )
    cache_ttl_s: float = setting(
        0.0, "while the error rate is high, serve identical recent answers this long; 0 = off", at_least=0
    )
    singleflight: bool = setting(False, "identical concurrent requests share one upstream request")
    supersede: bool = setting(False, "a conversation's newer turn cancels its older one still waiting (409)")
    degrade_to_fallback: bool = setting(
        False, "while the error rate is high, send requests straight to their fallback model"
    )
    static_reply: str = setting("", "last step of the degradation ladder: reply this text; empty = off")
    error_rate_threshold: float = setting(
        0.5,
        "error rate (0..1) of a model that starts its degradation ladder, and of a backend for a model that routes "
        "that model elsewhere; 0 = off",
        at_least=0,
        at_most=1,
    )
    error_rate_window_s: float = setting(60.0, "error rates count the outcomes of this many last seconds", above=0)
    error_rate_min_samples: int = setting(10, "outcomes an error rate needs in its window before it counts", at_least=1)

    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


@dataclass
class BackendConfig:
    name: str = setting(help="unique name of the backend")
    kind: str = setting(
        "ollama", "ollama, or openai for an OpenAI-compatible server (vLLM, llama.cpp)", choices=("ollama", "openai")
    )
    url: str = setting(DEFAULT_OLLAMA_URL, "base URL of the backend")
    weight: float = setting(1.0, "share of the traffic relative to the other backends", at_least=0)
    gpu: int | None = setting(None, "index of the GPU that serves this backend", at_least=0)
    api_key: str = setting("", "bearer token sent to the backend; empty = none")
    health_interval_s: float = setting(10.0, "seconds between two health checks", above=0)


@dataclass
class TelemetryConfig:
    source: str = setting(
        "auto",
        "auto (NVML if present, else none), nvml, sim (the simulated GPU; needs --demo), replay or none",
        choices=("auto", "nvml", "sim", "replay", "none"),
    )
    replay_file: str = setting("", 'recorded trace played when source = "replay"')
    poll_interval_s: float = setting(0.25, "seconds between two polls of clocks, util, temperature", above=0)
    energy_interval_s: float = setting(
        1.0, "seconds between two reads of the energy counter (each read costs ~3 ms of CPU)", above=0
    )
    power_alert_w: float = setting(0.0, "alert above this power; 0 = 95% of the power limit", at_least=0)
    temp_alert_c: float = setting(87.0, "alert above this GPU temperature", above=0)
    history_minutes: float = setting(10.0, "minutes of full-rate history kept in memory", above=0)


@dataclass
class GovernorConfig:
    enabled: bool = setting(False, "downclock the GPU when idle (toggle with F6)")
    idle_after_s: float = setting(10.0, "seconds without a request in flight before downclocking", at_least=0)
    unload_after_s: float = setting(0.0, "seconds idle before unloading resident models; 0 = never", at_least=0)
    allow_clock_control: bool = setting(False, "really lock clocks (needs root); false = dry run that only logs")
    idle_sm_clock_mhz: int = setting(0, "SM clock when idle; 0 = the lowest supported", at_least=0)
    state_file: str = setting("", "where locked clocks are noted to reset them after a crash; empty = default")


@dataclass
class AgentConfig:
    name: str = setting(help="unique name; clients use it as a model name")
    model: str = setting(help="model that answers")
    system: str = setting("", "system prompt")
    options: dict[str, Any] = setting(factory=dict, help="Ollama options, e.g. { temperature = 0.2 }")
    max_context_tokens: int = setting(0, "trim the conversation to this many tokens; 0 = no trimming", at_least=0)
    max_tokens: int = setting(0, "longest answer in tokens; 0 = the model's default", at_least=0)
    fallback: str = setting("", "model that answers when this one fails; empty = none")
    tools: list[str] = setting(factory=list, help="names of the tools the agent may call")
    description: str = setting("", "one line shown in the Agents pane")


@dataclass
class UIConfig:
    theme: str = setting("claw-dark", "theme name (from the themes folder)")
    refresh_hz: float = setting(4.0, "screen refreshes per second", above=0, at_most=60)


@dataclass
class DoctorConfig:
    max_vram_pct: float = setting(
        85.0,
        "GPU memory in use above this percentage fails the check (the models holding it are named)",
        above=0,
        at_most=100,
    )
    p95_latency_ms: float = setting(
        15000.0, "claw doctor --load N: budget for the 95th percentile of the requests' latency, in ms", above=0
    )
    max_error_rate: float = setting(
        0.005, "claw doctor --load N: the share of requests that may fail (0.005 = 0.5%)", at_least=0, at_most=1
    )
    load_model: str = setting(
        "", "model or agent claw doctor --load sends to; empty = a loaded chat model, else the first listed"
    )


@dataclass
class StoreConfig:
    path: str = setting("", "SQLite session store; empty = sessions.db in the user data folder")
    retention_days: int = setting(
        30, "days sessions are kept, and rows of a running session older than that; 0 = forever", at_least=0
    )
    memory_records: int = setting(
        10_000,
        "requests kept in memory (the console, the first pages of /claw/v1/requests); the store has all",
        above=0,
    )

    def resolved_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        return platformdirs.user_data_path(APP_NAME) / "sessions.db"


@dataclass
class BatchConfig:
    enabled: bool = setting(
        True, "serve the Batch API (/v1/files, /v1/batches) and drain batch jobs when the GPU idles"
    )
    slots: int = setting(
        2,
        "requests a backend generates at once per model (Ollama's OLLAMA_NUM_PARALLEL): batch lines start in groups "
        "that fill these, and an interactive request is owed one",
        at_least=1,
    )
    preempt: bool = setting(
        True,
        "just before an interactive request is forwarded, cancel the newest batch lines on its backend that would "
        "leave it no slot (they run again later); false = batch lines in flight always finish, and an interactive "
        "request may wait for one",
    )
    quiet_s: float = setting(
        0.0,
        "no batch line starts while the gateway holds an interactive request, nor until this many seconds after the "
        "last one ended (0 = at once)",
        at_least=0,
    )
    max_file_bytes: int = setting(64 * 1024 * 1024, "largest batch input file, in bytes", above=0)
    max_lines: int = setting(50_000, "most requests in one batch input file", at_least=1)
    max_queued_lines: int = setting(200_000, "most batch requests waiting over all jobs (then 429)", at_least=1)
    max_attempts: int = setting(3, "tries of a batch request that fails on the backend's side", at_least=1)
    webhook_secret: str = setting("", "key of the HMAC-SHA256 signature of webhook calls (X-Claw-Signature)")
    webhook_tries: int = setting(5, "tries of a webhook call (exponential backoff between them)", at_least=1)
    webhook_backoff_s: float = setting(1.0, "wait before the first retry of a webhook call; doubles each time", above=0)


def ollama_url_from_env() -> str:
    """The Ollama URL from $OLLAMA_HOST the way Ollama reads it ("0.0.0.0:11434" → "http://0.0.0.0:11434")."""
    host = os.environ.get(OLLAMA_HOST_ENV_VAR, "").strip().rstrip("/")
    if not host:
        return DEFAULT_OLLAMA_URL
    if "://" not in host:
        host = "http://" + host
    parts = urlsplit(host)
    if parts.scheme == "http" and parts.port is None and parts.hostname:
        host = f"{parts.scheme}://{parts.netloc}:{OLLAMA_DEFAULT_PORT}{parts.path}"
    return host


def default_backends() -> list[BackendConfig]:
    return [BackendConfig(name="ollama", kind="ollama", url=ollama_url_from_env())]


@dataclass
class Config:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    backends: list[BackendConfig] = field(default_factory=default_backends)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    governor: GovernorConfig = field(default_factory=GovernorConfig)
    agents: list[AgentConfig] = field(default_factory=list)
    ui: UIConfig = field(default_factory=UIConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    # The file this configuration belongs to; it may not exist yet (then every value is a default).
    path: Path | None = field(default=None, compare=False)


TABLE_SECTIONS: dict[str, type] = {
    "gateway": GatewayConfig,
    "telemetry": TelemetryConfig,
    "governor": GovernorConfig,
    "ui": UIConfig,
    "store": StoreConfig,
    "doctor": DoctorConfig,
    "batch": BatchConfig,
}
ARRAY_SECTIONS: dict[str, type] = {"backends": BackendConfig, "agents": AgentConfig}
