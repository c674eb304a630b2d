"""claw's configuration: dataclasses, TOML load (tomllib) and save (tomli-w).

Loading is two steps: the TOML document is turned into typed dataclasses (unknown keys, wrong types and missing
keys are refused), then the values are checked (ranges, choices, addresses, duplicate names). Every error becomes a
ConfigError that names the file, the dotted key and the line where that key is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tempfile
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
import tomli_w

from claw_tui.ollama.parameters import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    ParameterError,
    coerce_option,
    suggest_for_unknown,
)
from claw_tui.theme_files import TEXTUAL_THEMES, claw_theme_names, themes_dir

APP_NAME = "claw"
CONFIG_ENV_VAR = "CLAW_CONFIG"
OLLAMA_HOST_ENV_VAR = "OLLAMA_HOST"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
OLLAMA_DEFAULT_PORT = 11434

KeyPath = tuple[str | int, ...]
NO_SUCH_FILE = "no such config file"


class ConfigError(Exception):
    """A configuration problem, located: `str()` is "{path}:{line}: {key}: {message}".

    `line` is None when the problem has no place in a file (a missing file, a value built in code); `key` is ""
    for problems of the file as a whole (a TOML syntax error); either part is then left out of `str()`.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        key: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


# ---------------------------------------------------------------------------------------------------------------
# Schema


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
        "requests a backend generates at once per model (Ollama's OLLAMA_NUM_PARALLEL): batch lines fill these",
        at_least=1,
    )
    preempt: bool = setting(
        True,
        "an interactive request that finds every slot taken by batch lines cancels the newest one, which runs again "
        "later; false = batch lines in flight finish first (no new one starts while interactive work waits)",
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


# ---------------------------------------------------------------------------------------------------------------
# Paths


def resolve_config_path(cli_path: str | None) -> Path:
    """--config, else $CLAW_CONFIG, else the platform's user config folder / claw / config.toml."""
    return config_path_and_source(cli_path)[0]


def config_path_and_source(cli_path: str | None) -> tuple[Path, str]:
    """The config path and what chose it: "--config", "$CLAW_CONFIG" or "default"."""
    if cli_path:
        return Path(cli_path).expanduser(), "--config"
    env_path = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if env_path:
        return Path(env_path).expanduser(), f"${CONFIG_ENV_VAR}"
    return platformdirs.user_config_path(APP_NAME) / "config.toml", "default"


def load_config_for_cli(cli_path: str | None) -> Config:
    """The configuration the command line asks for: a file named by --config or $CLAW_CONFIG must exist."""
    path, source = config_path_and_source(cli_path)
    try:
        return load_config(path, must_exist=source != "default")
    except ConfigError as exc:
        if exc.message == NO_SUCH_FILE:
            exc.message = f"{NO_SUCH_FILE} (named by {source}; `claw config init` writes one there)"
        raise


# ---------------------------------------------------------------------------------------------------------------
# Loading


class _SchemaError(Exception):
    """A problem at a key path, before it is given a file and a line."""

    def __init__(self, key_path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key_path = key_path
        self.message = message


def load_config(path: Path | None, *, must_exist: bool = False) -> Config:
    """Load and check a config file. A missing file gives the defaults, or a ConfigError when `must_exist`."""
    if path is None:
        path = resolve_config_path(None)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(NO_SUCH_FILE, path=path) from None
        return Config(path=path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    return parse_config_text(text, path=path)


def parse_config_text(text: str, *, path: Path | None = None) -> Config:
    document = parse_toml(text, path=path)
    try:
        config = config_from_document(document)
        validate_config(config)
    except _SchemaError as exc:
        raise ConfigError(
            exc.message, path=path, key=format_key_path(exc.key_path), line=find_key_line(text, exc.key_path)
        ) from None
    config.path = path
    return config


_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def parse_toml(text: str, *, path: Path | None = None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = column = None
        position = _TOML_POSITION.search(message)
        if position:
            message = message[: position.start()]
            if position.group(1):
                line, column = int(position.group(1)), int(position.group(2))
            else:
                line = text.count("\n") + 1
        detail = f"invalid TOML: {message[:1].lower()}{message[1:]}"
        if column is not None:
            detail += f" (column {column})"
        raise ConfigError(detail, path=path, line=line, column=column) from None


def config_from_document(document: dict[str, Any]) -> Config:
    sections: dict[str, Any] = {}
    for name, value in document.items():
        if name in TABLE_SECTIONS:
            if not isinstance(value, dict):
                raise _SchemaError((name,), f"expected a table ([{name}]), got {describe_value(value)}")
            sections[name] = build_dataclass(TABLE_SECTIONS[name], value, (name,))
        elif name in ARRAY_SECTIONS:
            if isinstance(value, dict):
                raise _SchemaError((name,), f"expected an array of tables ([[{name}]]), got a table ([{name}])")
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise _SchemaError((name,), f"expected an array of tables ([[{name}]]), got {describe_value(value)}")
            cls = ARRAY_SECTIONS[name]
            sections[name] = [build_dataclass(cls, item, (name, index)) for index, item in enumerate(value)]
        else:
            raise _SchemaError((name,), unknown_key_message(name, [*TABLE_SECTIONS, *ARRAY_SECTIONS]))
    return Config(**sections)


def build_dataclass(cls: type, table: dict[str, Any], key_path: KeyPath) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise _SchemaError((*key_path, key), unknown_key_message(key, list(fields)))
        values[key] = check_type(value, hints[key], (*key_path, key))
    for name, f in fields.items():
        required = f.default is MISSING and f.default_factory is MISSING
        if required and name not in values:
            raise _SchemaError((*key_path, name), f"missing required key '{name}'")
    return cls(**values)


def unknown_key_message(key: str, known: list[str]) -> str:
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def check_type(value: Any, hint: Any, key_path: KeyPath) -> Any:
    """Return the value as the field's type (an integer becomes a float), or raise a _SchemaError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # Only "X | None" is used: None cannot be written in TOML, so a present value must be an X.
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return check_type(value, inner, key_path)
    if origin is list:
        if not isinstance(value, list):
            raise _SchemaError(key_path, f"expected an array of strings, got {describe_value(value)}")
        (item_hint,) = typing.get_args(hint)
        return [check_type(item, item_hint, (*key_path, index)) for index, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _SchemaError(key_path, f"expected a table, got {describe_value(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _SchemaError(key_path, f"expected true or false, got {describe_value(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _SchemaError(key_path, f"expected an integer, got {describe_value(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _SchemaError(key_path, f"expected a number, got {describe_value(value)}")
        if not math.isfinite(value):
            raise _SchemaError(key_path, f"expected a finite number, got {describe_value(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _SchemaError(key_path, f"expected a string, got {describe_value(value)}")
        return value
    raise TypeError(f"no type check for {hint!r}")


def describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown, ensure_ascii=False)})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a date/time ({value})"


# ---------------------------------------------------------------------------------------------------------------
# Checking values


def validate_config(config: Config) -> None:
    """Check ranges, choices, addresses and names; raise a _SchemaError at the first problem."""
    for name in TABLE_SECTIONS:
        check_field_limits(getattr(config, name), (name,))
    for name in ARRAY_SECTIONS:
        for index, item in enumerate(getattr(config, name)):
            check_field_limits(item, (name, index))
    check_listen(config.gateway)
    check_tokens(config.gateway)
    if not config.backends:
        raise _SchemaError(("backends",), "at least one backend is needed")
    for index, backend in enumerate(config.backends):
        check_backend(backend, ("backends", index))
    for index, agent in enumerate(config.agents):
        check_agent(agent, ("agents", index))
    check_unique_names(config.backends, "backends", "backend")
    check_unique_names(config.agents, "agents", "agent")
    check_theme(config.ui.theme)
    if config.telemetry.source == "replay" and not config.telemetry.replay_file:
        raise _SchemaError(("telemetry", "replay_file"), 'source = "replay" needs a replay_file')


def check_telemetry_source(config: Config, *, demo: bool, replay: bool = False) -> None:
    """`[telemetry] source = "sim"` is the simulated GPU of --demo: a run without --demo (or --replay, which
    brings its own trace) refuses it rather than quietly reading NVML instead."""
    if config.telemetry.source != "sim" or demo or replay:
        return
    line = None
    if config.path is not None:
        try:
            line = find_key_line(config.path.read_text(encoding="utf-8"), ("telemetry", "source"))
        except (OSError, UnicodeDecodeError):
            pass
    raise ConfigError(
        '"sim" is the simulated GPU of --demo, which this run is not: run with --demo, '
        'or set source = "auto" (NVML when there is a GPU), "nvml" or "none"',
        path=config.path,
        key="telemetry.source",
        line=line,
    )


def check_field_limits(section: Any, key_path: KeyPath) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        limits = f.metadata
        if limits.get("choices") and value not in limits["choices"]:
            allowed = ", ".join(f'"{choice}"' for choice in limits["choices"])
            raise _SchemaError((*key_path, f.name), f"must be one of {allowed}, got {json.dumps(value)}")
        if value is None or isinstance(value, (bool, str, list, dict)):
            continue
        if limits.get("at_least") is not None and value < limits["at_least"]:
            raise _SchemaError((*key_path, f.name), f"must be at least {limits['at_least']}, got {value}")
        if limits.get("above") is not None and value <= limits["above"]:
            raise _SchemaError((*key_path, f.name), f"must be more than {limits['above']}, got {value}")
        if limits.get("at_most") is not None and value > limits["at_most"]:
            raise _SchemaError((*key_path, f.name), f"must be at most {limits['at_most']}, got {value}")


def check_listen(gateway: GatewayConfig) -> None:
    try:
        gateway.host_port()
    except ValueError as exc:
        raise _SchemaError(
            ("gateway", "listen"), f"invalid listen address {json.dumps(gateway.listen)}: {exc}"
        ) from None


def check_tokens(gateway: GatewayConfig) -> None:
    for key in ("tokens", "admin_tokens"):
        for index, token in enumerate(getattr(gateway, key)):
            if not token.strip():
                raise _SchemaError(("gateway", key, index), "a token must not be empty")
    for model, fallback in gateway.fallback_models.items():
        if not isinstance(fallback, str) or not fallback.strip():
            raise _SchemaError(
                ("gateway", "fallback_models", model), f"expected the name of a model, got {describe_value(fallback)}"
            )


def check_backend(backend: BackendConfig, key_path: KeyPath) -> None:
    if not backend.name.strip():
        raise _SchemaError((*key_path, "name"), "the name must not be empty")
    parts = urlsplit(backend.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _SchemaError((*key_path, "url"), f"expected an http:// or https:// URL, got {json.dumps(backend.url)}")
    try:
        _ = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        raise _SchemaError((*key_path, "url"), f"invalid port in {json.dumps(backend.url)}") from None


def check_agent(agent: AgentConfig, key_path: KeyPath) -> None:
    if not agent.name.strip():
        raise _SchemaError((*key_path, "name"), "the name must not be empty")
    if not agent.model.strip():
        raise _SchemaError((*key_path, "model"), "the model must not be empty")
    for name, value in agent.options.items():
        check_agent_option(name, value, (*key_path, "options", name))


# How a TOML value of each Ollama parameter type is written, for error messages.
OPTION_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string"}


def check_agent_option(name: str, value: Any, key_path: KeyPath) -> None:
    """An agent option must be one of Ollama's parameters, with a value of its type: Ollama refuses a wrong type
    (every chat to the agent fails) and ignores an unknown name (the setting silently does nothing)."""
    spec = PARAMETERS.get(name)
    if spec is None:
        if name in DEPRECATED_PARAMETERS:
            raise _SchemaError(key_path, f"'{name}' is a deprecated Ollama option that Ollama ignores; remove it")
        hint = suggest_for_unknown(name)
        raise _SchemaError(key_path, f"unknown Ollama option '{name}'" + (f" ({hint})" if hint else ""))
    expected = "an array of strings" if spec.repeatable else OPTION_TYPE_WORDS[spec.type]
    if spec.type == "int" and isinstance(value, float):
        raise _SchemaError(key_path, f"expected {expected}, got {describe_value(value)}")
    try:
        coerce_option(name, value)
    except ParameterError as exc:
        if exc.code != "invalid-type":
            raise _SchemaError(key_path, exc.message) from None
        example = "" if spec.default is None else f" (e.g. {toml_pair(name, spec.default)})"
        raise _SchemaError(key_path, f"expected {expected}, got {describe_value(value)}{example}") from None


def check_theme(theme: str) -> None:
    """The theme must be one of the themes folder's or one of Textual's own ("" = Textual's default)."""
    claw_themes = claw_theme_names()
    if not theme or not claw_themes or theme in claw_themes or theme in TEXTUAL_THEMES:
        return  # with no theme files found there is nothing to check against: the console says so when it starts
    message = f"unknown theme '{theme}'"
    close = difflib.get_close_matches(theme, [*claw_themes, *TEXTUAL_THEMES], n=1, cutoff=0.6)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    message += (
        f": the themes folder ({themes_dir()}) has {', '.join(claw_themes)}; Textual's own, such as nord, work too"
    )
    raise _SchemaError(("ui", "theme"), message)


def check_unique_names(items: list[Any], section: str, noun: str) -> None:
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in first_index:
            raise _SchemaError(
                (section, index, "name"),
                f"duplicate {noun} name '{item.name}' (also {section}[{first_index[item.name]}])",
            )
        first_index[item.name] = index


def format_key_path(key_path: KeyPath) -> str:
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# ---------------------------------------------------------------------------------------------------------------
# Where keys are written (tomllib reports no positions for valid documents)


@dataclass
class TomlStatement:
    """A table header or a key/value pair of a TOML text, with the lines it spans (1-based, inclusive)."""

    kind: str  # "table", "array_table" or "key_value"
    keys: tuple[str, ...]  # as written: the header's keys, or the dotted key of a pair
    path: KeyPath  # full path in the document, with array-of-tables indexes
    first_line: int
    last_line: int


def find_key_line(text: str, key_path: KeyPath) -> int | None:
    """The line of the key (or, failing that, of its closest enclosing key or table) in a valid TOML text."""
    lines: dict[KeyPath, int] = {}
    try:
        statements = scan_toml_statements(text)
    except (IndexError, tomllib.TOMLDecodeError):
        return None  # a layout the scanner misreads must not hide the error being reported
    for statement in statements:
        path = statement.path
        first = 1 if statement.kind != "key_value" else len(path) - len(statement.keys) + 1
        for end in range(first, len(path) + 1):
            lines.setdefault(path[:end], statement.first_line)
    for end in range(len(key_path), 0, -1):
        if key_path[:end] in lines:
            return lines[key_path[:end]]
    return None


def scan_toml_statements(text: str) -> list[TomlStatement]:
    return _TomlScanner(text).scan()


_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _TomlScanner:
    """Walks a TOML text that tomllib has accepted, noting each header and key/value pair with its lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.table: KeyPath = ()
        self.last_array_index: dict[KeyPath, int] = {}

    def scan(self) -> list[TomlStatement]:
        statements: list[TomlStatement] = []
        while True:
            self.skip_blank_lines_and_comments()
            if self.pos >= len(self.text):
                return statements
            first_line = self.line
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                keys = self.read_key()
                self.pos += 2
                self.table = self.open_array_table(keys)
                statements.append(TomlStatement("array_table", keys, self.table, first_line, first_line))
            elif self.text.startswith("[", self.pos):
                self.pos += 1
                keys = self.read_key()
                self.pos += 1
                self.table = self.resolve(keys)
                statements.append(TomlStatement("table", keys, self.table, first_line, first_line))
            else:
                keys = self.read_key()
                self.pos += 1  # "="
                self.skip_value()
                statements.append(TomlStatement("key_value", keys, (*self.table, *keys), first_line, self.line))

    def resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's path, each array of tables in it standing for its latest element."""
        path: list[str | int] = []
        for key in keys:
            path.append(key)
            if tuple(path) in self.last_array_index:
                path.append(self.last_array_index[tuple(path)])
        return tuple(path)

    def open_array_table(self, keys: tuple[str, ...]) -> KeyPath:
        array_path = (*self.resolve(keys[:-1]), keys[-1])
        index = self.last_array_index.get(array_path, -1) + 1
        self.last_array_index[array_path] = index
        return (*array_path, index)

    def skip_blank_lines_and_comments(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\n":
                self.line += 1
                self.pos += 1
            elif char in " \t\r":
                self.pos += 1
            elif char == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def read_key(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            self.skip_spaces()
            char = self.text[self.pos]
            if char in "\"'":
                start = self.pos
                self.skip_string()
                keys.append(tomllib.loads(f"k = {self.text[start : self.pos]}")["k"])
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE_KEY_CHARS:
                    self.pos += 1
                keys.append(self.text[start : self.pos])
            self.skip_spaces()
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(keys)

    def skip_value(self) -> None:
        """Move to the end of a value: the first newline outside strings, arrays and inline tables."""
        depth = 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in "\"'":
                self.skip_string()
                continue
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "#":
                self.skip_comment()
                continue
            elif char == "\n":
                if depth == 0:
                    return
                self.line += 1
            self.pos += 1

    def skip_string(self) -> None:
        quote = self.text[self.pos]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        start = self.pos
        self.pos += len(delimiter)
        while not self.text.startswith(delimiter, self.pos):
            if self.pos >= len(self.text):
                raise IndexError("unterminated string")
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 1
            self.pos += 1
        self.pos += len(delimiter)
        if len(delimiter) == 3:
            # Up to two quotes may sit right before a closing delimiter; they belong to the string.
            extra = 0
            while extra < 2 and self.text.startswith(quote, self.pos):
                self.pos += 1
                extra += 1
        self.line += self.text.count("\n", start, self.pos)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def config_to_dict(config: Config) -> dict[str, Any]:
    """Every setting as plain TOML-ready data (no None values; `path` is not a setting)."""
    data: dict[str, Any] = {}
    for name in ("gateway", "backends", "telemetry", "governor", "agents", "ui", "store", "doctor"):
        value = getattr(config, name)
        data[name] = [section_to_dict(item) for item in value] if isinstance(value, list) else section_to_dict(value)
    return data


def section_to_dict(section: Any, *, skip_defaults: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            continue
        if skip_defaults and value == field_default(f):
            continue
        data[f.name] = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
    return data


def field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def config_to_toml(config: Config) -> str:
    return dumps_toml({name: value for name, value in config_to_dict(config).items() if value != []})


def dumps_toml(document: dict[str, Any]) -> str:
    """TOML text of a document, like tomli_w, except that arrays of tables are always [[tables]].

    (tomli_w writes short ones as inline arrays, which is valid but not what people write or expect.)
    """
    literals = {key: value for key, value in document.items() if not is_table_or_array_of_tables(value)}
    chunks = [readable_toml(literals)] if literals else []
    for key, value in document.items():
        if isinstance(value, dict):
            chunks.append(readable_toml({key: value}))
        elif is_table_or_array_of_tables(value):
            chunks.extend(array_table_text(key, item) for item in value)
    return "\n".join(chunks)


def is_table_or_array_of_tables(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
    )


def array_table_text(key: str, table: dict[str, Any]) -> str:
    scalars = {name: value for name, value in table.items() if not isinstance(value, dict)}
    text = f"[[{key}]]\n" + readable_toml(scalars)
    for name, value in table.items():
        if isinstance(value, dict) and value:
            # Written under the parent's name, a sub-table belongs to the array's latest element.
            text += "\n" + readable_toml({key: {name: value}})
    return text


def readable_toml(document: dict[str, Any]) -> str:
    """Multi-line strings where they help reading, unless a carriage return would be normalised away by parsers."""
    return tomli_w.dumps(document, multiline_strings=not has_carriage_return(document))


def has_carriage_return(value: Any) -> bool:
    if isinstance(value, str):
        return "\r" in value
    if isinstance(value, dict):
        return any(has_carriage_return(v) for v in value.values())
    if isinstance(value, list):
        return any(has_carriage_return(v) for v in value)
    return False


REDACTED = "<redacted>"


def redact_secrets(config: Config) -> Config:
    """A copy with the gateway tokens, backend API keys and the webhook secret replaced, for printing."""
    gateway = dataclasses.replace(
        config.gateway,
        tokens=[REDACTED for _ in config.gateway.tokens],
        admin_tokens=[REDACTED for _ in config.gateway.admin_tokens],
    )
    backends = [
        dataclasses.replace(backend, api_key=REDACTED if backend.api_key else "") for backend in config.backends
    ]
    batch = dataclasses.replace(config.batch, webhook_secret=REDACTED if config.batch.webhook_secret else "")
    return dataclasses.replace(config, gateway=gateway, backends=backends, batch=batch)


def save_config(config: Config, path: Path) -> None:
    """Write every setting of a (checked) config to `path`, atomically."""
    data = config_to_dict(config)
    check_document(data, path)
    write_text_atomically(path, dumps_toml(data))


def check_document(document: dict[str, Any], path: Path | None) -> None:
    try:
        validate_config(config_from_document(document))
    except _SchemaError as exc:
        raise ConfigError(exc.message, path=path, key=format_key_path(exc.key_path)) from None


def update_agents(path: Path, agents: list[AgentConfig]) -> None:
    """Rewrite only the [[agents]] tables of the config file with tomlkit: every other line stays, and so do the
    comments of agents that are kept (a changed value is rewritten, an unchanged one is left as it was)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    wanted = [section_to_dict(agent, skip_defaults=True) for agent in agents]
    if not wanted:  # nothing to edit in place: the splice drops the tables and keeps what followed them
        replace_top_level_key(path, "agents", wanted)
        return
    check_document({"agents": wanted}, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    expected = {name: item for name, item in parse_toml(text, path=path).items() if name != "agents"}
    try:
        document = tomlkit.parse(text)
        kept = {}
        old = document.get("agents")
        trailing = []
        if isinstance(old, list) and old:
            kept = {table.get("name"): table for table in old if hasattr(table, "get")}
            trailing = _trailing_trivia(old[-1])  # the comments that introduce whatever follows the agents
        tables = tomlkit.aot()
        for data in wanted:
            table = kept.get(data["name"])
            if table is None:
                table = tomlkit.table()
            for key in [k for k in table if k not in data]:
                del table[key]
            for key, value in data.items():
                if table.get(key) != value:
                    table[key] = value
            tables.append(table)
        if trailing:
            tables[-1].value.body.extend(trailing)
        document["agents"] = tables
        new_text = tomlkit.dumps(document)
    except (TOMLKitError, ValueError, TypeError):
        new_text = None
    expected["agents"] = wanted
    if new_text is None or tomllib.loads(new_text) != expected:
        replace_top_level_key(path, "agents", wanted)  # a layout tomlkit could not edit: the plain splice
        return
    write_text_atomically(path, new_text)


def _trailing_trivia(table) -> list:
    """Take the comments and blank lines after a table's last key out of it (tomlkit keeps them in the table)."""
    body = table.value.body
    cut = len(body)
    while cut and body[cut - 1][0] is None:
        cut -= 1
    trailing = body[cut:]
    del body[cut:]
    return trailing


def update_ui(path: Path, ui: UIConfig) -> None:
    """Rewrite only the [ui] table of the config file (e.g. to persist the theme), keeping the rest of it."""
    replace_top_level_key(path, "ui", section_to_dict(ui))


def replace_top_level_key(path: Path, key: str, value: Any) -> None:
    """Replace one top-level key of a config file (a missing file is created), writing atomically."""
    check_document({key: value}, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    document = parse_toml(text, path=path)
    expected = {name: item for name, item in document.items() if name != key}
    if value:
        expected[key] = value

    block = dumps_toml({key: value}) if value else ""
    new_text = splice_top_level_key(text, key, block)
    if tomllib.loads(new_text) != expected:
        # The text edit met a layout it does not handle: keep every value, lose the comments.
        new_text = dumps_toml(expected)
    write_text_atomically(path, new_text)


def splice_top_level_key(text: str, key: str, block: str) -> str:
    """Remove the tables and root pairs under top-level `key` from the text; put `block` where the first table was."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    removed, first_header_line = lines_under_top_level_key(scan_toml_statements(text), key)
    insert_at = first_header_line - 1 if first_header_line is not None else len(lines)
    removed |= blank_lines_between(lines, removed)

    kept_before = [line for number, line in enumerate(lines[:insert_at], 1) if number not in removed]
    kept_after = [line for number, line in enumerate(lines[insert_at:], insert_at + 1) if number not in removed]
    if block:
        # A comment right above the first table stays attached to the new tables.
        if kept_before and kept_before[-1].strip() and not kept_before[-1].lstrip().startswith("#"):
            block = "\n" + block
        if kept_after and kept_after[0].strip():
            block += "\n"
    return "".join(kept_before) + block + "".join(kept_after)


def lines_under_top_level_key(statements: list[TomlStatement], key: str) -> tuple[set[int], int | None]:
    """The lines of the tables under `key` (headers and pairs) and of root pairs `key = ...`, and the first
    such table's header line."""
    removed: set[int] = set()
    first_header_line = None
    inside = False
    for statement in statements:
        if statement.kind != "key_value":
            inside = statement.keys[0] == key
            if inside and first_header_line is None:
                first_header_line = statement.first_line
        is_root_pair = statement.kind == "key_value" and statement.path == statement.keys and statement.keys[0] == key
        if inside or is_root_pair:
            removed.update(range(statement.first_line, statement.last_line + 1))
    return removed, first_header_line


def blank_lines_between(lines: list[str], removed: set[int]) -> set[int]:
    """Blank lines between two removed lines, and one right after the last, so that no gap is left behind."""
    blank: set[int] = set()
    if not removed:
        return blank
    last_removed = max(removed)
    gap: list[int] = []
    for number in range(min(removed), last_removed + 1):
        if number in removed:
            blank.update(gap)
            gap = []
        elif not lines[number - 1].strip():
            gap.append(number)
        else:
            gap = []
    if last_removed < len(lines) and not lines[last_removed].strip():
        blank.add(last_removed + 1)
    return blank


def write_text_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, keeping the mode of the file replaced (new files: 0600)."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600  # tokens and API keys live in this file
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------------------------------------------------
# The commented default file


def default_config_text() -> str:
    """A config file that sets every key to its default, each with a one-line comment."""
    parts = [
        (
            "# claw configuration. Every key below is set to its default value; change what you need.\n"
            "# `claw config show` prints the configuration in effect; `claw config path` says where this file is.\n"
        )
    ]
    for name in ("gateway", "telemetry", "governor"):
        parts.append(commented_table(f"[{name}]", TABLE_SECTIONS[name]()))
    parts.append(
        "# Backends that answer requests. With no [[backends]] table, claw uses one Ollama backend\n"
        f"# at $OLLAMA_HOST, else {DEFAULT_OLLAMA_URL}. One table per backend, for example:\n"
        + example_table("[[backends]]", BackendConfig(name="ollama"))
    )
    example_agent = AgentConfig(
        name="coder",
        model="qwen3:8b",
        system="You are a careful senior programmer.",
        options={"temperature": 0.2, "num_ctx": 8192},
    )
    parts.append(
        "# Agents: a model with a system prompt and options, offered to clients as a model of its own.\n"
        "# The Agents pane (F4) edits these tables. For example:\n" + example_table("[[agents]]", example_agent)
    )
    for name in ("ui", "store", "batch"):
        parts.append(commented_table(f"[{name}]", TABLE_SECTIONS[name]()))
    parts.append(
        "# Budgets of `claw doctor`, the readiness checklist (`claw doctor --load N` sends N requests at once).\n"
        + commented_table("[doctor]", DoctorConfig())
    )
    return "\n".join(parts)


def commented_table(header: str, section: Any) -> str:
    lines = [header]
    for f in dataclasses.fields(section):
        lines.append(f"# {f.metadata['help']}")
        lines.append(toml_pair(f.name, getattr(section, f.name)))
    return "\n".join(lines) + "\n"


def example_table(header: str, section: Any) -> str:
    """A table commented out, each pair followed by its help."""
    pairs = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            pairs.append((toml_pair(f.name, 0), f.metadata["help"] + " (default: not set)"))
        else:
            pairs.append((toml_pair(f.name, value), f.metadata["help"]))
    width = max(len(pair) for pair, _ in pairs)
    lines = [f"# {header}"] + [f"# {pair.ljust(width)}  # {help}" for pair, help in pairs]
    return "\n".join(lines) + "\n"


def toml_pair(key: str, value: Any) -> str:
    if isinstance(value, dict):
        inline = ", ".join(toml_pair(item_key, item) for item_key, item in value.items())
        return f"{key} = {{ {inline} }}" if inline else f"{key} = {{}}"
    return tomli_w.dumps({key: value}).strip()


DEMO_KEEP_S = 24 * 3600


def new_demo_state_dir() -> Path:
    """A fresh folder for one demo run (its config with the theme and agents, its session store, its exports), under
    the user state folder's `demo/`. Folders of earlier runs are removed once they are a day old."""
    import shutil
    import time

    base = platformdirs.user_state_path(APP_NAME) / "demo"
    base.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in base.glob("run-*"):
        try:
            if now - old.stat().st_mtime > DEMO_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))
