"""Configuration: defaults, resolution, TOML round trips, located errors, agents update, `claw config`."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import tomllib
from pathlib import Path

import platformdirs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claw_tui import cli
from claw_tui.config import (
    AgentConfig,
    BackendConfig,
    Config,
    ConfigError,
    GatewayConfig,
    GovernorConfig,
    StoreConfig,
    TelemetryConfig,
    UIConfig,
    config_to_dict,
    default_config_text,
    load_config,
    load_config_for_cli,
    parse_config_text,
    parse_listen,
    resolve_config_path,
    save_config,
    update_agents,
    update_ui,
)
from claw_tui.ollama.parameters import PARAMETERS
from claw_tui.theme_files import TEXTUAL_THEMES, claw_theme_names


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAW_CONFIG", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


# --- defaults ----------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = Config()
    assert config.gateway.listen == "127.0.0.1:18789"
    assert config.gateway.host_port() == ("127.0.0.1", 18789)
    assert config.gateway.max_body_bytes == 8 * 1024 * 1024
    assert config.gateway.first_token_timeout_s == 300.0
    assert config.backends == [BackendConfig(name="ollama", kind="ollama", url="http://127.0.0.1:11434")]
    assert config.telemetry.source == "auto"
    assert config.governor.enabled is False and config.governor.idle_after_s == 10.0
    assert config.agents == []
    assert config.ui.theme == "claw-dark" and config.ui.refresh_hz == 4.0
    assert config.store.retention_days == 30
    assert config.store.resolved_path() == platformdirs.user_data_path("claw") / "sessions.db"


@pytest.mark.parametrize(
    ("ollama_host", "url"),
    [
        ("0.0.0.0:11434", "http://0.0.0.0:11434"),
        ("http://gpu-box:8080/", "http://gpu-box:8080"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("gpu-box", "http://gpu-box:11434"),
        ("", "http://127.0.0.1:11434"),
    ],
)
def test_default_backend_follows_ollama_host(monkeypatch: pytest.MonkeyPatch, ollama_host: str, url: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ollama_host)
    assert Config().backends == [BackendConfig(name="ollama", url=url)]


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert config == Config()
    assert config.path == tmp_path / "nope.toml"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", must_exist=True)
    assert str(caught.value) == f"{tmp_path / 'nope.toml'}: no such config file"


def test_default_config_text_loads_to_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", default_config_text())
    assert load_config(path) == Config()


def test_default_config_text_mentions_every_key_with_a_comment() -> None:
    text = default_config_text()
    lines = text.splitlines()
    for section in (GatewayConfig(), TelemetryConfig(), GovernorConfig(), UIConfig(), StoreConfig()):
        for key in vars(section):
            line_index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert lines[line_index - 1].startswith("# "), key
    for key in vars(BackendConfig(name="x")) | vars(AgentConfig(name="x", model="y")):
        assert any(line.startswith(f"# {key} = ") for line in lines), key
    assert "# [[agents]]" in lines and "# [[backends]]" in lines


def uncomment_examples(text: str) -> str:
    """The default text with its commented-out example tables enabled (pairs only, trailing help dropped)."""
    lines, in_example = [], False
    for line in text.splitlines():
        in_example = line.startswith("# [[") or (in_example and line.startswith("# "))
        lines.append(line[2:].split("  #")[0] if in_example else line)
    return "\n".join(lines)


def test_uncommented_examples_are_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "config.toml", uncomment_examples(default_config_text())))
    assert [backend.name for backend in config.backends] == ["ollama"]
    assert config.backends[0].gpu == 0
    assert [agent.name for agent in config.agents] == ["coder"]
    assert config.agents[0].options == {"temperature": 0.2, "num_ctx": 8192}


# --- paths -------------------------------------------------------------------------------------------------------


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = platformdirs.user_config_path("claw") / "config.toml"
    assert resolve_config_path(None) == default
    monkeypatch.setenv("CLAW_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path(None) == tmp_path / "env.toml"
    assert resolve_config_path(str(tmp_path / "flag.toml")) == tmp_path / "flag.toml"


def test_resolution_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_config_path("~/claw.toml") == tmp_path / "claw.toml"


def test_env_named_file_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config_for_cli(None)


def test_cli_flag_is_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAW_CONFIG", str(write(tmp_path / "env.toml", "[ui]\ntheme = 'claw-light'\n")))
    flag = write(tmp_path / "flag.toml", "[ui]\ntheme = 'nord'\n")
    assert load_config_for_cli(str(flag)).ui.theme == "nord"
    assert load_config_for_cli(None).ui.theme == "claw-light"


# --- round trips -------------------------------------------------------------------------------------------------

NON_DEFAULT_SECTIONS = {
    "gateway": GatewayConfig(
        listen="[::1]:9000",
        tokens=["t1", "t2"],
        admin_tokens=["root"],
        max_body_bytes=1024,
        rate_limit_rpm=60,
        rate_limit_burst=5,
        max_in_flight=2,
        queue_size=3,
        queue_timeout_s=1.5,
        connect_timeout_s=2.0,
        first_token_timeout_s=60.0,
        idle_timeout_s=10.0,
        total_timeout_s=100.0,
        retries=0,
        vram_admission_pct=92.5,
        warmup_prompt="hi",
        cache_ttl_s=5.0,
        singleflight=True,
        supersede=True,
        static_reply="busy",
        error_rate_threshold=0.25,
    ),
    "backends": [
        BackendConfig(name="a", kind="ollama", url="http://10.0.0.1:11434", weight=2.0, gpu=0),
        BackendConfig(name="b", kind="openai", url="https://vllm:8000/v1", api_key="sk-x", health_interval_s=3.0),
    ],
    "telemetry": TelemetryConfig(
        source="replay",
        replay_file="/traces/h200.jsonl",
        poll_interval_s=0.1,
        energy_interval_s=2.0,
        power_alert_w=600.0,
        temp_alert_c=80.0,
        history_minutes=2.0,
    ),
    "governor": GovernorConfig(
        enabled=True,
        idle_after_s=3.0,
        unload_after_s=600.0,
        allow_clock_control=True,
        idle_sm_clock_mhz=345,
        state_file="/run/claw/state.json",
    ),
    "agents": [
        AgentConfig(
            name="coder",
            model="qwen3:8b",
            system="Be terse.\nUse code.",
            options={"temperature": 0.2, "stop": ["x"]},
            max_context_tokens=4096,
            max_tokens=512,
            fallback="qwen3:1.7b",
            tools=["search"],
            description="code",
        ),
        AgentConfig(name="plain", model="llama3.2"),
    ],
    "ui": UIConfig(theme="claw-light", refresh_hz=2.0),
    "store": StoreConfig(path="/var/lib/claw/sessions.db", retention_days=0),
}


@pytest.mark.parametrize("section", list(NON_DEFAULT_SECTIONS))
def test_each_section_round_trips(tmp_path: Path, section: str) -> None:
    config = Config(**{section: NON_DEFAULT_SECTIONS[section]})
    assert config != Config()
    save_config(config, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == config


def test_saved_file_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    save_config(Config(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["config.toml"]


def test_save_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = Config(backends=[BackendConfig(name="a", kind="grpc")])
    with pytest.raises(ConfigError) as caught:
        save_config(config, tmp_path / "config.toml")
    assert caught.value.key == "backends[0].kind"
    assert not (tmp_path / "config.toml").exists()


def test_agent_options_as_inline_table_or_subtable(tmp_path: Path) -> None:
    inline = load_config(
        write(
            tmp_path / "a.toml",
            """
        [[agents]]
        name = "a"
        model = "m"
        options = { temperature = 0.1, num_ctx = 2048 }
    """,
        )
    )
    subtable = load_config(
        write(
            tmp_path / "b.toml",
            """
        [[agents]]
        name = "a"
        model = "m"
        [agents.options]
        temperature = 0.1
        num_ctx = 2048
    """,
        )
    )
    assert inline.agents == subtable.agents
    assert inline.agents[0].options == {"temperature": 0.1, "num_ctx": 2048}


def test_integers_are_accepted_for_floats(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "config.toml", "[gateway]\nqueue_timeout_s = 10\n"))
    assert config.gateway.queue_timeout_s == 10.0 and isinstance(config.gateway.queue_timeout_s, float)


@pytest.mark.parametrize(
    ("listen", "host_port"),
    [
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:18789", ("::1", 18789)),
        (":9000", ("127.0.0.1", 9000)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_addresses(listen: str, host_port: tuple[str, int]) -> None:
    assert parse_listen(listen) == host_port
    assert GatewayConfig(listen=listen).host_port() == host_port


@pytest.mark.parametrize("listen", ["18789", "::1:80", "host:", "host:99999", "[::1]80", "ho st:80", "host:x"])
def test_bad_listen_addresses(listen: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(listen)


# --- errors: file, key and line ----------------------------------------------------------------------------------


def test_unknown_key_in_the_second_backend(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        [[backends]]
        name = "a"
        url = "http://127.0.0.1:11434"

        [[backends]]
        name = "b"
        urll = "http://127.0.0.1:11435"
    """,
    )
    assert error.path == tmp_path / "config.toml"
    assert (error.key, error.line) == ("backends[1].urll", 7)
    assert error.message == "unknown key 'urll' (did you mean 'url'?)"
    assert str(error) == f"{tmp_path / 'config.toml'}:7: backends[1].urll: unknown key 'urll' (did you mean 'url'?)"


@pytest.mark.parametrize(
    ("text", "key", "line", "message"),
    [
        (
            '[gateway]\nliten = "0.0.0.0:1"\n',
            "gateway.liten",
            2,
            "unknown key 'liten' (did you mean 'listen'?)",
        ),
        (
            "[gatway]\nlisten = ':1'\n",
            "gatway",
            1,
            "unknown key 'gatway' (did you mean 'gateway'?)",
        ),
        (
            '# comment\n\n[gateway]\nlisten = "127.0.0.1:1"\nrate_limit_rpm = "10"\n',
            "gateway.rate_limit_rpm",
            5,
            'expected an integer, got a string ("10")',
        ),
        (
            "[gateway]\nmax_in_flight = true\n",
            "gateway.max_in_flight",
            2,
            "expected an integer, got a boolean (true)",
        ),
        (
            "[gateway]\nretries = 1.5\n",
            "gateway.retries",
            2,
            "expected an integer, got a float (1.5)",
        ),
        (
            '[gateway]\nqueue_timeout_s = "30"\n',
            "gateway.queue_timeout_s",
            2,
            'expected a number, got a string ("30")',
        ),
        (
            "[gateway]\nsingleflight = 1\n",
            "gateway.singleflight",
            2,
            "expected true or false, got an integer (1)",
        ),
        (
            '[gateway]\ntokens = ["a",\n  5]\n',
            "gateway.tokens[1]",
            2,
            "expected a string, got an integer (5)",
        ),
        (
            "[gateway]\ntokens = 'abc'\n",
            "gateway.tokens",
            2,
            'expected an array of strings, got a string ("abc")',
        ),
        (
            '[gateway]\ntokens = [""]\n',
            "gateway.tokens[0]",
            2,
            "a token must not be empty",
        ),
        (
            '[gateway]\nlisten = "18789"\n',
            "gateway.listen",
            2,
            'invalid listen address "18789": expected HOST:PORT, [IPv6]:PORT or :PORT',
        ),
        (
            "[gateway]\n\nmax_body_bytes = 0\n",
            "gateway.max_body_bytes",
            3,
            "must be more than 0, got 0",
        ),
        (
            "[gateway]\nrate_limit_rpm = -5\n",
            "gateway.rate_limit_rpm",
            2,
            "must be at least 0, got -5",
        ),
        (
            "[gateway]\nvram_admission_pct = 150\n",
            "gateway.vram_admission_pct",
            2,
            "must be at most 100, got 150.0",
        ),
        (
            "[gateway]\nidle_timeout_s = nan\n",
            "gateway.idle_timeout_s",
            2,
            "expected a finite number, got a float (nan)",
        ),
        (
            '[[backends]]\nname = "a"\nkind = "olama"\n',
            "backends[0].kind",
            3,
            'must be one of "ollama", "openai", got "olama"',
        ),
        (
            '[[backends]]\nname = "a"\nurl = "localhost:11434"\n',
            "backends[0].url",
            3,
            'expected an http:// or https:// URL, got "localhost:11434"',
        ),
        (
            '[[backends]]\nname = "a"\ngpu = -1\n',
            "backends[0].gpu",
            3,
            "must be at least 0, got -1",
        ),
        (
            '[[backends]]\nname = "a"\n\n[[backends]]\nname = "b"\n\n[[backends]]\nname = "a"\n',
            "backends[2].name",
            8,
            "duplicate backend name 'a' (also backends[0])",
        ),
        (
            '[[backends]]\nurl = "http://x:1"\n',
            "backends[0].name",
            1,
            "missing required key 'name'",
        ),
        (
            '[backends]\nname = "a"\n',
            "backends",
            1,
            "expected an array of tables ([[backends]]), got a table ([backends])",
        ),
        (
            "backends = []\n",
            "backends",
            1,
            "at least one backend is needed",
        ),
        (
            '[[gateway]]\nlisten = ":1"\n',
            "gateway",
            1,
            "expected a table ([gateway]), got an array",
        ),
        (
            '[telemetry]\nsource = "nvidia"\n',
            "telemetry.source",
            2,
            'must be one of "auto", "nvml", "sim", "replay", "none", got "nvidia"',
        ),
        (
            '[telemetry]\nsource = "replay"\n',
            "telemetry.replay_file",
            1,
            'source = "replay" needs a replay_file',
        ),
        (
            "[governor]\nidle_after_s = -1\n",
            "governor.idle_after_s",
            2,
            "must be at least 0, got -1.0",
        ),
        (
            "[ui]\nrefresh_hz = 0\n",
            "ui.refresh_hz",
            2,
            "must be more than 0, got 0.0",
        ),
        (
            "[store]\nretention_days = -1\n",
            "store.retention_days",
            2,
            "must be at least 0, got -1",
        ),
        (
            '[[agents]]\nname = "a"\nmodel = "m"\n\n[[agents]]\nname = "b"\n',
            "agents[1].model",
            5,
            "missing required key 'model'",
        ),
        (
            '[[agents]]\nname = "a"\nmodel = "m"\n[[agents]]\nname = "a"\nmodel = "n"\n',
            "agents[1].name",
            5,
            "duplicate agent name 'a' (also agents[0])",
        ),
        (
            '[[agents]]\nname = "a"\nmodel = "m"\noptions = 3\n',
            "agents[0].options",
            4,
            "expected a table, got an integer (3)",
        ),
        (
            '[[agents]]\nname = "a"\nmodel = "m"\nmax_tokens = -1\n',
            "agents[0].max_tokens",
            4,
            "must be at least 0, got -1",
        ),
        (
            '[[agents]]\nname = "a"\nmodel = ""\n',
            "agents[0].model",
            3,
            "the model must not be empty",
        ),
        (
            'gateway.listen = ":1"\ngateway.retries = -2\n',
            "gateway.retries",
            2,
            "must be at least 0, got -2",
        ),
    ],
)
def test_errors_name_key_and_line(tmp_path: Path, text: str, key: str, line: int, message: str) -> None:
    error = load_error(tmp_path, text)
    assert (error.key, error.line, error.message) == (key, line, message)
    assert str(error) == f"{tmp_path / 'config.toml'}:{line}: {key}: {message}"


def test_line_scanning_is_not_fooled_by_strings_and_subtables(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        '''
        [[agents]]
        name = "a"
        model = "m"
        system = """
        [[agents]]
        name = "not a table"
        """
        stop = 'x'  # unknown here
    ''',
    )
    assert (error.key, error.line) == ("agents[0].stop", 8)

    error = load_error(
        tmp_path,
        """
        [[agents]]
        name = "a"
        model = "m"
        tools = [
          "a",  # [[agents]]
          "b",
        ]
        [agents.options]
        temperature = 0.2

        [[agents]]  # the second
        name = "b"
        model = "m"
        [agents.options]
        num_ctx = 1
        [[agents]]
        name = "c"
        model = "m"
        max_tokens = "many"
    """,
    )
    assert (error.key, error.line) == ("agents[2].max_tokens", 19)


def test_line_scanning_follows_escaped_quotes(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        r"""
        [[agents]]
        name = "a"
        description = "say \" b"
        model = "m"
        bad = 1
    """,
    )
    assert (error.key, error.line) == ("agents[0].bad", 5)


def test_quoted_keys_are_located(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[gateway]\n"listen" = ":1"\n\'queue_size\' = -1\n')
    assert (error.key, error.line) == ("gateway.queue_size", 3)


def test_agents_written_apart_are_located(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        [[agents]]
        name = "a"
        model = "m"

        [ui]
        theme = "nord"

        [[agents]]
        name = "b"
        model = "m"
        max_tokens = -1
    """,
    )
    assert (error.key, error.line) == ("agents[1].max_tokens", 11)


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[gateway]\nlisten = "127.0.0.1:1"\nretries = \n')
    assert error.line == 3
    assert error.key == ""
    assert error.message.startswith("invalid TOML: invalid value")
    assert str(error).startswith(f"{tmp_path / 'config.toml'}:3: invalid TOML")


def test_duplicate_table_is_a_syntax_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[ui]\ntheme = 'a'\n[ui]\ntheme = 'b'\n")
    assert error.line == 3


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[ui]\ntheme = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- update_agents -----------------------------------------------------------------------------------------------

HAND_WRITTEN = """
# My GPU box.
[gateway]
listen = "0.0.0.0:18789"  # reachable from the LAN
tokens = ["secret"]

# the coding agent
[[agents]]
name = "old"
model = "llama3"
[agents.options]
temperature = 0.9

[[agents]]
name = "older"
model = "llama2"

# Looks
[ui]
theme = "claw-light"

[[backends]]
name = "box"
url = "http://127.0.0.1:11434"
"""


def test_update_agents_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    before = tomllib.loads(path.read_text())
    agents = [
        AgentConfig(name="coder", model="qwen3:8b", system="Line one.\nLine two.", options={"num_ctx": 8192}),
        AgentConfig(name="chat", model="llama3.2", tools=["search"]),
    ]
    update_agents(path, agents)

    text = path.read_text()
    after = tomllib.loads(text)
    assert {k: v for k, v in after.items() if k != "agents"} == {k: v for k, v in before.items() if k != "agents"}
    for comment in ("# My GPU box.", "# reachable from the LAN", "# the coding agent", "# Looks"):
        assert comment in text
    assert "old" not in text and "temperature" not in text
    config = load_config(path)
    assert config.agents == agents
    assert config.gateway.tokens == ["secret"]
    assert text.index("[[agents]]") < text.index("# Looks")
    assert "# the coding agent\n[[agents]]\n" in text
    assert "\n\n\n" not in text


def test_update_agents_with_no_agents_removes_them(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    update_agents(path, [])
    config = load_config(path)
    assert config.agents == []
    assert config.ui.theme == "claw-light" and config.backends[0].name == "box"
    assert "# Looks" in path.read_text()


def test_update_agents_appends_to_a_file_without_agents(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", default_config_text())
    update_agents(path, [AgentConfig(name="a", model="m")])
    text = path.read_text()
    assert text.startswith(default_config_text())
    assert load_config(path) == Config(agents=[AgentConfig(name="a", model="m")])


def test_update_agents_replaces_root_level_array(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'agents = [{ name = "x", model = "m" }]\n[ui]\ntheme = "nord"\n')
    update_agents(path, [AgentConfig(name="y", model="m")])
    config = load_config(path)
    assert [agent.name for agent in config.agents] == ["y"] and config.ui.theme == "nord"


def test_update_agents_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    update_agents(path, [AgentConfig(name="a", model="m", options={"temperature": 0.3})])
    assert load_config(path).agents == [AgentConfig(name="a", model="m", options={"temperature": 0.3})]


def test_update_agents_keeps_the_file_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    path.chmod(0o640)
    update_agents(path, [])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_update_agents_refuses_invalid_agents_and_broken_files(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    with pytest.raises(ConfigError) as caught:
        update_agents(path, [AgentConfig(name="a", model="m"), AgentConfig(name="a", model="n")])
    assert caught.value.key == "agents[1].name"
    assert path.read_text() == textwrap.dedent(HAND_WRITTEN).lstrip("\n")

    broken = write(tmp_path / "broken.toml", "[ui\n")
    with pytest.raises(ConfigError) as caught:
        update_agents(broken, [])
    assert caught.value.line == 1
    assert broken.read_text() == "[ui\n"


def test_update_ui_keeps_agents(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    update_ui(path, UIConfig(theme="nord", refresh_hz=2.0))
    config = load_config(path)
    assert config.ui == UIConfig(theme="nord", refresh_hz=2.0)
    assert [agent.name for agent in config.agents] == ["old", "older"]
    assert "# the coding agent" in path.read_text()


def test_update_ui_keeps_comments_and_unchanged_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", '# Looks\n[ui]\ntheme = "nord"\nrefresh_hz = 4.0  # fast enough\n\n# more\n')
    update_ui(path, UIConfig(theme="claw-light", refresh_hz=4.0))
    assert path.read_text() == '# Looks\n[ui]\ntheme = "claw-light"\nrefresh_hz = 4.0  # fast enough\n\n# more\n'


# --- claw config ---------------------------------------------------------------------------------------------------


@pytest.fixture
def claw():
    """`claw` through cli.main."""
    return cli.main


def test_config_init_writes_the_default_file(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dir" / "config.toml"
    assert claw(["--config", str(path), "config", "init"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert path.read_text() == default_config_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_config_init_refuses_to_overwrite(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "config.toml", "[ui]\ntheme = 'mine'\n")
    assert claw(["--config", str(path), "config", "init"]) == 1
    captured = capsys.readouterr()
    assert "already exists" in captured.err and "--force" in captured.err
    assert path.read_text() == "[ui]\ntheme = 'mine'\n"

    assert claw(["--config", str(path), "config", "init", "--force"]) == 0
    assert path.read_text() == default_config_text()


def test_config_init_uses_claw_config_env(
    claw, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLAW_CONFIG", str(tmp_path / "env.toml"))
    assert claw(["config", "init"]) == 0
    assert (tmp_path / "env.toml").exists()
    assert capsys.readouterr().out.strip() == str(tmp_path / "env.toml")


def test_config_show_prints_toml_that_loads_back(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(**{name: NON_DEFAULT_SECTIONS[name] for name in ("agents", "telemetry", "ui")})
    save_config(config, tmp_path / "config.toml")
    assert claw(["--config", str(tmp_path / "config.toml"), "config", "show"]) == 0
    shown = write(tmp_path / "shown.toml", capsys.readouterr().out)
    assert load_config(shown) == config


def test_config_show_of_defaults(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "config.toml", "")
    assert claw(["--config", str(tmp_path / "config.toml"), "config", "show"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["gateway"]["listen"] == "127.0.0.1:18789"


def test_config_show_hides_secrets_unless_asked(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        [gateway]
        tokens = ["s3cret"]
        [[backends]]
        name = "v"
        kind = "openai"
        url = "http://x:1"
        api_key = "sk-123"
    """,
    )
    assert claw(["--config", str(path), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "sk-123" not in out and "<redacted>" in out
    assert claw(["--config", str(path), "config", "show", "--json", "--show-secrets"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["gateway"]["tokens"] == ["s3cret"] and shown["backends"][0]["api_key"] == "sk-123"


def test_config_show_json(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(agents=NON_DEFAULT_SECTIONS["agents"])
    save_config(config, tmp_path / "config.toml")
    assert claw(["--config", str(tmp_path / "config.toml"), "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == config_to_dict(config)


def test_config_show_of_a_broken_file(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "config.toml", "[gateway]\nliten = ':1'\n")
    assert claw(["--config", str(path), "config", "show"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err == f"claw: config error: {path}:2: gateway.liten: unknown key 'liten' (did you mean 'listen'?)\n"
    )


def test_config_show_of_a_missing_explicit_file(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert claw(["--config", str(tmp_path / "nope.toml"), "config", "show"]) == 2
    assert capsys.readouterr().err == (
        f"claw: config error: {tmp_path / 'nope.toml'}: no such config file "
        "(named by --config; `claw config init` writes one there)\n"
    )


def test_config_path(claw, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    assert claw(["--config", str(path), "config", "path"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == str(path) and second.startswith("does not exist") and "--config" in second

    path.write_text("")
    assert claw(["--config", str(path), "config", "path"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == str(path) and second.startswith("exists")


def test_config_without_action_prints_help(claw, capsys: pytest.CaptureFixture[str]) -> None:
    assert claw(["config"]) == 2
    assert "init" in capsys.readouterr().err


# --- properties ----------------------------------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=12).filter(
    str.strip
)
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
OPTION_VALUES = {
    "int": st.integers(-(10**6), 10**6),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "bool": st.booleans(),
    "string": st.lists(any_text, max_size=3),  # the one string parameter, stop, is a list
}
# Agent options are Ollama parameters with values of their types (the config refuses anything else).
agent_options = st.lists(
    st.sampled_from(sorted(PARAMETERS)).flatmap(
        lambda name: st.tuples(st.just(name), OPTION_VALUES[PARAMETERS[name].type])
    ),
    max_size=3,
).map(dict)
agents_strategy = st.lists(
    st.builds(
        AgentConfig,
        name=names,
        model=names,
        system=any_text,
        options=agent_options,
        max_context_tokens=st.integers(0, 10**6),
        max_tokens=st.integers(0, 10**5),
        fallback=any_text,
        tools=st.lists(any_text, max_size=3),
        description=any_text,
    ),
    max_size=4,
    unique_by=lambda agent: agent.name,
)
property_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@property_settings
@given(agents=agents_strategy)
def test_any_agents_survive_update_agents(tmp_path: Path, agents: list[AgentConfig]) -> None:
    path = write(tmp_path / "config.toml", HAND_WRITTEN)
    update_agents(path, agents)
    config = load_config(path)
    assert config.agents == agents
    assert config.ui.theme == "claw-light" and config.gateway.tokens == ["secret"]
    assert "# Looks" in path.read_text()


@property_settings
@given(
    agents=agents_strategy,
    theme=st.sampled_from(claw_theme_names() + list(TEXTUAL_THEMES)),
    retries=st.integers(0, 5),
    listen_port=st.integers(0, 65535),
)
def test_any_config_round_trips(
    tmp_path: Path, agents: list[AgentConfig], theme: str, retries: int, listen_port: int
) -> None:
    config = Config(
        gateway=GatewayConfig(listen=f"[::1]:{listen_port}", retries=retries), agents=agents, ui=UIConfig(theme=theme)
    )
    save_config(config, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == config


TOML_FRAGMENTS = [
    "[gateway]",
    "[[backends]]",
    "[[agents]]",
    "[agents.options]",
    "[ui]",
    "[telemetry]",
    "[backends]",
    'name = "a"',
    'name = "b"',
    'model = "m"',
    "listen = 5",
    'listen = ":1"',
    'url = "http://x:1"',
    "kind = 'x'",
    "retries = -1",
    "tokens = [1, 'a']",
    'system = """',
    '"""',
    "temperature = 0.2",
    "liten = 1",
    "x.y = 2",
    "= 3",
    "[",
    '"quoted key" = 1',
    "options = { a = 1 }",
    "gpu = 1.5",
    "refresh_hz = inf",
    "# comment",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOML_FRAGMENTS), max_size=12))
def test_broken_configs_give_a_config_error_never_a_crash(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        parse_config_text(text, path=Path("fuzz.toml"))
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml")
        if error.key and error.line is not None:
            assert 1 <= error.line <= len(lines)


def test_carriage_returns_in_agent_text_survive_a_save(tmp_path):
    path = tmp_path / "config.toml"
    agents = [AgentConfig(name="crlf", model="m", system="line one\r\nline two", description="\r\n")]
    update_agents(path, agents)
    assert load_config(path).agents == agents
