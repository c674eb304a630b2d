"""Request options, the way Ollama's api.Options.FromMap takes them: known keys type-checked, unknown keys ignored."""

from __future__ import annotations

from typing import Any

from claw_tui.sim.server.wire import RequestError

INT_OPTIONS = frozenset(
    {
        "num_ctx",
        "repeat_last_n",
        "seed",
        "num_predict",
        "draft_num_predict",
        "top_k",
        "num_keep",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
FLOAT_OPTIONS = frozenset(
    {
        "repeat_penalty",
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "presence_penalty",
        "frequency_penalty",
    }
)
BOOL_OPTIONS = frozenset({"use_mmap"})
LIST_OPTIONS = frozenset({"stop"})
DEFAULT_OPTIONS: dict[str, Any] = {
    "num_predict": -1,
    "temperature": 0.8,
    "seed": -1,
    "top_k": 40,
    "top_p": 0.9,
    "stop": [],
    "num_batch": 512,
    "num_gpu": -1,
    "repeat_penalty": 1.0,
}
SIM_TOKENS_OPTION = "sim_tokens"  # claw-only: force the answer length (ignored by a real Ollama as unknown)


def apply_options(options: dict[str, Any], values: Any) -> None:
    """api.Options.FromMap: known keys are type-checked, unknown keys ignored, null skipped."""
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        if value is None:
            continue
        if key == SIM_TOKENS_OPTION and isinstance(value, (int, float)) and not isinstance(value, bool):
            options[key] = int(value)
        elif key in INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(500, f'option "{key}" must be of type integer')
            options[key] = int(value)
        elif key in FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(500, f'option "{key}" must be of type float32')
            options[key] = float(value)
        elif key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise RequestError(500, f'option "{key}" must be of type boolean')
            options[key] = value
        elif key in LIST_OPTIONS:
            if not isinstance(value, list):
                raise RequestError(500, f'option "{key}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise RequestError(500, f'option "{key}" must be of an array of strings')
            options[key] = list(value)
