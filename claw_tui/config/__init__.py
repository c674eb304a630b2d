"""claw's configuration: the settings as dataclasses, loaded from TOML (tomllib), edited with tomlkit.

- `schema`: one dataclass per section, each field with its help, range or choices;
- `load` and `validate`: the TOML document turned into those dataclasses, then checked; every error is a
  `ConfigError` naming the file, the line and the dotted key (`errors`, `locate`);
- `edit`: saving a whole config, or rewriting one section of an existing file with its comments kept;
- `default_file`: the commented file `claw config init` writes; `paths`: where the file is.
"""

from claw_tui.config.default_file import default_config_text
from claw_tui.config.edit import (
    check_document,
    config_to_dict,
    config_to_toml,
    redact_secrets,
    save_config,
    update_agents,
    update_ui,
    write_text_atomically,
)
from claw_tui.config.errors import ConfigError
from claw_tui.config.load import NO_SUCH_FILE, config_from_document, load_config, load_config_for_cli, parse_config_text
from claw_tui.config.paths import config_path_and_source, new_demo_state_dir, resolve_config_path
from claw_tui.config.schema import (
    APP_NAME,
    CONFIG_ENV_VAR,
    DEFAULT_OLLAMA_URL,
    OLLAMA_DEFAULT_PORT,
    OLLAMA_HOST_ENV_VAR,
    AgentConfig,
    BackendConfig,
    BatchConfig,
    Config,
    DoctorConfig,
    GatewayConfig,
    GovernorConfig,
    StoreConfig,
    TelemetryConfig,
    UIConfig,
    ollama_url_from_env,
    parse_listen,
)
from claw_tui.config.validate import check_telemetry_source, validate_config

__all__ = [
    "APP_NAME",
    "CONFIG_ENV_VAR",
    "DEFAULT_OLLAMA_URL",
    "NO_SUCH_FILE",
    "OLLAMA_DEFAULT_PORT",
    "OLLAMA_HOST_ENV_VAR",
    "AgentConfig",
    "BackendConfig",
    "BatchConfig",
    "Config",
    "ConfigError",
    "DoctorConfig",
    "GatewayConfig",
    "GovernorConfig",
    "StoreConfig",
    "TelemetryConfig",
    "UIConfig",
    "check_document",
    "check_telemetry_source",
    "config_from_document",
    "config_path_and_source",
    "config_to_dict",
    "config_to_toml",
    "default_config_text",
    "load_config",
    "load_config_for_cli",
    "new_demo_state_dir",
    "ollama_url_from_env",
    "parse_config_text",
    "parse_listen",
    "redact_secrets",
    "resolve_config_path",
    "save_config",
    "update_agents",
    "update_ui",
    "validate_config",
    "write_text_atomically",
]
