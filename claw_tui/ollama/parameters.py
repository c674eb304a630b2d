"""Ollama's runner parameters: names, types and defaults, and the checks Ollama applies to their values.

Two places take parameters:
- a Modelfile `PARAMETER name value` line, where the value is text (`parse_value`, Ollama's FormatParams rules);
- an API `options` object or `/api/create` `parameters`, where values are JSON (`coerce_option`, Ollama's
  Options.FromMap rules). Ollama stores `/api/create` parameters unchecked and ignores unknown `options`
  silently, so claw checks both before sending.
"""

from __future__ import annotations

import difflib
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

ParamType = Literal["int", "float", "bool", "string"]
ParamValue = int | float | bool | str
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: ParamType
    default: ParamValue | None
    description: str
    repeatable: bool = False


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a Modelfile (line/column 1-based) or in an options dict (line 0, no column)."""

    line: int
    column: int | None
    severity: Severity
    message: str
    suggestion: str | None = None
    code: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        # The shape of Ollama's own parser errors.
        return f"(line {self.line}): {self.message}" if self.line > 0 else self.message


class ParameterError(ValueError):
    """A parameter name or value that Ollama would reject (or, with severity "warning", drop or ignore)."""

    def __init__(self, message: str, *, suggestion: str | None = None, code: str, severity: Severity = "error"):
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion
        self.code = code
        self.severity: Severity = severity

    def to_diagnostic(self, line: int = 0, column: int | None = None) -> Diagnostic:
        return Diagnostic(line, column, self.severity, self.message, self.suggestion, self.code)


def _spec(
    name: str, type_: ParamType, default: ParamValue | None, description: str, repeatable: bool = False
) -> ParamSpec:
    return ParamSpec(name, type_, default, description, repeatable)


PARAMETERS: dict[str, ParamSpec] = {
    spec.name: spec
    for spec in (
        _spec("num_ctx", "int", 4096, "context length in tokens; the server default comes from OLLAMA_CONTEXT_LENGTH"),
        _spec("repeat_last_n", "int", 64, "how far back to look for repetitions; 0 off, -1 = num_ctx"),
        _spec("repeat_penalty", "float", 1.0, "penalty for repeated tokens"),
        _spec("temperature", "float", 0.8, "sampling temperature; higher is more creative"),
        _spec("seed", "int", -1, "random seed; -1 picks a random one"),
        _spec("stop", "string", None, "stop sequence; repeat the line for several", repeatable=True),
        _spec("num_predict", "int", -1, "most tokens to generate; -1 unlimited"),
        _spec("draft_num_predict", "int", 4, "tokens the draft model proposes per step"),
        _spec("top_k", "int", 40, "sample from the k most likely tokens"),
        _spec("top_p", "float", 0.9, "nucleus sampling: smallest token set with this total probability"),
        _spec("min_p", "float", 0.0, "drop tokens less likely than min_p times the most likely one"),
        _spec("num_keep", "int", 4, "tokens of the prompt kept when the context shifts"),
        _spec("typical_p", "float", 1.0, "locally typical sampling; 1.0 off"),
        _spec("presence_penalty", "float", 0.0, "penalty for tokens already present"),
        _spec("frequency_penalty", "float", 0.0, "penalty growing with a token's frequency"),
        _spec("num_batch", "int", 512, "prompt tokens processed per batch"),
        _spec("num_gpu", "int", -1, "layers offloaded to the GPU; -1 auto, 0 CPU only"),
        _spec("main_gpu", "int", None, "GPU that holds small tensors when a model spans GPUs"),
        _spec("use_mmap", "bool", None, "memory-map the model file; unset = auto"),
        _spec("num_thread", "int", 0, "CPU threads; 0 = auto"),
    )
}

# `ollama create` warns "parameter X is deprecated" and drops these.
DEPRECATED_PARAMETERS: frozenset[str] = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)

# Removed from Ollama: now "unknown parameter". Value: the release that removed it.
REMOVED_PARAMETERS: dict[str, str] = {"numa": "0.3.4", "tfs_z": "0.5.2"}

FLASH_ATTENTION_HINT = (
    "not a parameter: flash attention is a server setting, OLLAMA_FLASH_ATTENTION (auto since 0.12.4)"
)
KV_CACHE_HINT = (
    "not a parameter: set the server environment variable OLLAMA_KV_CACHE_TYPE=q8_0 "
    "(f16|q8_0|q4_0; needs flash attention)"
)

# Names people write that are server settings, not per-model parameters.
NOT_PARAMETERS: dict[str, str] = {
    "kv_cache_type": KV_CACHE_HINT,
    "kv_cache": KV_CACHE_HINT,
    "cache_type_k": KV_CACHE_HINT,
    "cache_type_v": KV_CACHE_HINT,
    "flash_attn": FLASH_ATTENTION_HINT,
    "flash_attention": FLASH_ATTENTION_HINT,
    "num_parallel": "not a parameter: set the server environment variable OLLAMA_NUM_PARALLEL",
    "keep_alive": "not a parameter: send keep_alive with each request, or set OLLAMA_KEEP_ALIVE on the server",
}

# Parameters of older Ollama releases (GGML era and the pre-0.5 runner) that no longer exist.
OBSOLETE_PARAMETERS: frozenset[str] = frozenset(
    {"num_gqa", "gqa", "rope_frequency_base", "rope_frequency_scale", "rms_norm_eps", "embedding_only"}
)

# Names from other runtimes (llama.cpp, OpenAI, vLLM, Hugging Face) and their Ollama equivalent.
ALIASES: dict[str, str] = {
    "max_tokens": "num_predict",
    "n_predict": "num_predict",
    "max_new_tokens": "num_predict",
    "context_length": "num_ctx",
    "context_size": "num_ctx",
    "ctx_size": "num_ctx",
    "n_ctx": "num_ctx",
    "num_context": "num_ctx",
    "n_gpu_layers": "num_gpu",
    "gpu_layers": "num_gpu",
    "num_gpu_layers": "num_gpu",
    "ngl": "num_gpu",
    "n_threads": "num_thread",
    "threads": "num_thread",
    "num_threads": "num_thread",
    "n_batch": "num_batch",
    "batch_size": "num_batch",
    "repetition_penalty": "repeat_penalty",
    "stop_sequence": "stop",
    "stop_sequences": "stop",
    "stops": "stop",
    "mmap": "use_mmap",
    "n_keep": "num_keep",
}

QUANTIZE_TYPES: tuple[str, ...] = ("q4_K_M", "q4_K_S", "q8_0")

_GO_BOOL_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_BOOL_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_INT = re.compile(r"[+-]?[0-9]+")
_DIGITS = r"[0-9](?:_?[0-9])*"
_HEX_DIGITS = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
# strconv.ParseFloat's grammar: Go float literals (underscores between digits, hex with a p exponent), inf, nan.
_GO_FLOAT = re.compile(
    rf"[+-]?(?:"
    rf"(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?"
    rf"|0[xX]_?(?:{_HEX_DIGITS}(?:\.(?:{_HEX_DIGITS})?)?|\.{_HEX_DIGITS})[pP][+-]?{_DIGITS}"
    rf"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]"
    rf")"
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def lookup_parameter(name: str, value_text: str | None = None) -> ParamSpec:
    """The spec of a current parameter; ParameterError for a deprecated (warning) or unknown (error) name."""
    spec = PARAMETERS.get(name)
    if spec is not None:
        return spec
    if name in DEPRECATED_PARAMETERS:
        raise ParameterError(
            f"parameter {name} is deprecated",
            suggestion="ollama create drops it; delete the line",
            code="deprecated-parameter",
            severity="warning",
        )
    raise ParameterError(
        f"unknown parameter '{name}'", suggestion=suggest_for_unknown(name, value_text), code="unknown-parameter"
    )


def suggest_for_unknown(name: str, value_text: str | None = None) -> str | None:
    """A helpful hint for a name that is not a parameter, or None when nothing useful comes to mind."""
    if name == "no_mmap":
        return f"use `use_mmap {_inverted_bool_text(value_text)}`"
    if name in NOT_PARAMETERS:
        return NOT_PARAMETERS[name]
    if name in REMOVED_PARAMETERS:
        return f"{name} was removed in Ollama {REMOVED_PARAMETERS[name]}; delete the line"
    if name in OBSOLETE_PARAMETERS:
        return f"{name} was removed from Ollama (the model file carries this setting); delete the line"
    if name in ALIASES:
        return f"did you mean '{ALIASES[name]}'?"
    lowered = name.lower()
    if lowered != name and (lowered in PARAMETERS or lowered in DEPRECATED_PARAMETERS):
        return f"parameter names are case-sensitive: did you mean '{lowered}'?"
    if lowered != name:
        hint = suggest_for_unknown(lowered, value_text)
        if hint is not None:
            return hint
    close = difflib.get_close_matches(lowered, list(PARAMETERS), n=1, cutoff=0.75)
    if close:
        return f"did you mean '{close[0]}'?"
    return None


def _inverted_bool_text(value_text: str | None) -> str:
    if value_text is not None and value_text in _GO_BOOL_FALSE:
        return "true"
    return "false"


def parse_value(name: str, text: str) -> ParamValue:
    """The typed value of `PARAMETER name text`, as `ollama create` computes it.

    Raises ParameterError with Ollama's message: `unknown parameter 'X'`, `parameter X is deprecated`
    (severity warning), `invalid float value [text]`, `invalid int value [text]`, `invalid bool value [text]`.
    """
    spec = lookup_parameter(name, text)
    return parse_typed(spec, text)


def parse_typed(spec: ParamSpec, text: str) -> ParamValue:
    if spec.type == "string":
        return text
    if spec.type == "bool":
        if text in _GO_BOOL_TRUE:
            return True
        if text in _GO_BOOL_FALSE:
            return False
        raise _invalid_value(spec, text)
    if spec.type == "int":
        if _GO_INT.fullmatch(text) and INT64_MIN <= int(text) <= INT64_MAX:
            return int(text)
        raise _invalid_value(spec, text)
    value = _parse_go_float32(text)
    if value is None:
        raise _invalid_value(spec, text)
    return value


def _parse_go_float32(text: str) -> float | None:
    if not _GO_FLOAT.fullmatch(text):
        return None
    plain = text.replace("_", "")
    value = float.fromhex(plain) if "x" in plain.lower() else float(plain)
    # Ollama's CLI accepts inf and nan, then fails to encode them as JSON: reject them here.
    if not math.isfinite(value) or not _fits_float32(value):
        return None
    return value


def _fits_float32(value: float) -> bool:
    try:
        struct.pack("<f", value)
    except OverflowError:
        return False
    return True


def _invalid_value(spec: ParamSpec, text: str) -> ParameterError:
    return ParameterError(
        f"invalid {spec.type} value [{text}]", suggestion=_value_hint(spec, text), code="invalid-value"
    )


def _value_hint(spec: ParamSpec, text: str) -> str:
    if "#" in text:
        return "a `#` starts a comment only at the start of a line: move the comment to a line of its own"
    if spec.type == "bool":
        return f"{spec.name} takes true or false"
    if spec.type == "float" and re.fullmatch(r"[+-]?(?:inf(?:inity)?|nan)", text, re.IGNORECASE):
        return f"{spec.name} must be a finite number"
    example = spec.default if spec.default is not None else 0
    kind = "a whole number" if spec.type == "int" else "a number"
    return f"{spec.name} takes {kind}, e.g. {format_value(spec.name, example)}"


def format_value(name: str, value: Any) -> str:
    """The text of a typed value on a PARAMETER line (before any quoting)."""
    spec = PARAMETERS.get(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if spec is not None and spec.type == "float" and isinstance(value, int | float):
        return format_float(float(value))
    if isinstance(value, float):
        return format_float(value)
    return str(value)


def format_float(value: float) -> str:
    # Shortest text that reads back as the same number; whole numbers without ".0", as Go's %v writes them.
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def coerce_option(name: str, value: Any) -> Any:
    """The value Ollama would use for API option `name` given JSON `value` (Options.FromMap rules).

    Raises ParameterError: wrong types with Ollama's message (`option "temperature" must be of type float32`);
    unknown and deprecated names with severity "warning" (Ollama ignores them).
    """
    spec = PARAMETERS.get(name)
    if spec is None:
        raise _unknown_option(name)
    if value is None:
        return None
    if spec.repeatable:
        return _coerce_string_list(name, value)
    if spec.type == "int":
        return _coerce_int(name, value)
    if spec.type == "float":
        return _coerce_float(name, value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise _option_type_error(name, "boolean")
        return value
    if not isinstance(value, str):
        raise _option_type_error(name, "string")
    return value


def _unknown_option(name: str) -> ParameterError:
    if name in DEPRECATED_PARAMETERS:
        return ParameterError(
            f"option {name} is deprecated", suggestion="remove it", code="deprecated-parameter", severity="warning"
        )
    return ParameterError(
        f"unknown option '{name}' (Ollama ignores it)",
        suggestion=suggest_for_unknown(name),
        code="unknown-parameter",
        severity="warning",
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce_int(name: str, value: object) -> int:
    if not _is_number(value):
        raise _option_type_error(name, "integer")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"option {_go_quote(name)} must be a finite number", code="invalid-value")
        value = int(value)  # Go truncates toward zero, as int() does
    if not INT64_MIN <= value <= INT64_MAX:
        raise ParameterError(f"option {_go_quote(name)} is out of range for an integer", code="invalid-value")
    return value


def _coerce_float(name: str, value: object) -> float:
    if not _is_number(value):
        raise _option_type_error(name, "float32")
    number = float(value)
    if not math.isfinite(number) or not _fits_float32(number):
        raise ParameterError(f"option {_go_quote(name)} must be a finite float32", code="invalid-value")
    return number


def _coerce_string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _option_type_error(name, "array")
    if not all(isinstance(item, str) for item in value):
        raise ParameterError(f"option {_go_quote(name)} must be of an array of strings", code="invalid-type")
    return list(value)


def _option_type_error(name: str, go_type: str) -> ParameterError:
    hint = None
    spec = PARAMETERS[name]
    if spec.repeatable:
        hint = f'send a list, e.g. "{name}": ["\\n\\n"]'
    elif go_type in ("integer", "float32"):
        hint = "send a JSON number, not a string"
    elif go_type == "boolean":
        hint = "send JSON true or false"
    return ParameterError(f"option {_go_quote(name)} must be of type {go_type}", suggestion=hint, code="invalid-type")


def _go_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate_options(options: Any) -> list[Diagnostic]:
    """Problems in an API `options` dict (or `/api/create` `parameters`): type errors, unknown names, truncation."""
    if not isinstance(options, Mapping):
        return [Diagnostic(0, None, "error", "options must be a JSON object", None, "invalid-type")]
    diagnostics: list[Diagnostic] = []
    for name, value in options.items():
        if not isinstance(name, str):
            diagnostics.append(
                Diagnostic(0, None, "error", f"option name {name!r} is not a string", None, "invalid-type")
            )
            continue
        try:
            coerced = coerce_option(name, value)
        except ParameterError as error:
            diagnostics.append(error.to_diagnostic())
            continue
        if isinstance(value, float) and isinstance(coerced, int) and coerced != value:
            diagnostics.append(
                Diagnostic(
                    0,
                    None,
                    "warning",
                    f"option {_go_quote(name)}: {value!r} is truncated to {coerced}",
                    "send a whole number",
                    "truncated-value",
                )
            )
    return diagnostics
