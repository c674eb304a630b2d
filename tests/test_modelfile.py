"""The Modelfile module: Ollama's grammar and messages, claw's suggestions, writing back, API bodies, the CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from claw_tui import cli
from claw_tui.ollama.modelfile import (
    INVALID_COMMAND,
    INVALID_ROLE,
    Modelfile,
    ModelfileError,
    check_text,
    diff,
    from_show_response,
    is_representable,
    parse,
    quote_value,
    replace_parameters,
    serialize,
    to_create_request,
    validate,
)
from claw_tui.ollama.parameters import (
    DEPRECATED_PARAMETERS,
    KV_CACHE_HINT,
    PARAMETERS,
    REMOVED_PARAMETERS,
    Diagnostic,
    ParameterError,
    coerce_option,
    parse_value,
    suggest_for_unknown,
    validate_options,
)

FIXTURES = Path(__file__).parent / "fixtures" / "modelfiles"
REPO_ROOT = Path(__file__).resolve().parents[1]


def only(diagnostics: list[Diagnostic]) -> Diagnostic:
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def problems(text: str) -> list[tuple[int, str, str]]:
    return [(d.line, d.severity, d.message) for d in check_text(text)]


# ------------------------------------------------------------------------------------------- the parameter table


def test_parameter_table_has_every_current_parameter_with_its_type():
    expected = {
        "num_ctx": "int",
        "repeat_last_n": "int",
        "repeat_penalty": "float",
        "temperature": "float",
        "seed": "int",
        "stop": "string",
        "num_predict": "int",
        "draft_num_predict": "int",
        "top_k": "int",
        "top_p": "float",
        "min_p": "float",
        "num_keep": "int",
        "typical_p": "float",
        "presence_penalty": "float",
        "frequency_penalty": "float",
        "num_batch": "int",
        "num_gpu": "int",
        "main_gpu": "int",
        "use_mmap": "bool",
        "num_thread": "int",
    }
    assert {name: spec.type for name, spec in PARAMETERS.items()} == expected
    assert [name for name, spec in PARAMETERS.items() if spec.repeatable] == ["stop"]
    assert PARAMETERS["temperature"].default == 0.8
    assert PARAMETERS["use_mmap"].default is None
    assert all(spec.description for spec in PARAMETERS.values())


def test_deprecated_and_removed_sets():
    assert {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    } == DEPRECATED_PARAMETERS
    assert REMOVED_PARAMETERS == {"numa": "0.3.4", "tfs_z": "0.5.2"}


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("temperature", "0.7", 0.7),
        ("temperature", "1", 1.0),
        ("temperature", ".5", 0.5),
        ("temperature", "5.", 5.0),
        ("temperature", "+0.5", 0.5),
        ("temperature", "1e-3", 0.001),
        ("temperature", "1_000.5", 1000.5),
        ("temperature", "0x1p-2", 0.25),
        ("num_ctx", "8192", 8192),
        ("num_ctx", "-1", -1),
        ("num_ctx", "+5", 5),
        ("num_ctx", "007", 7),
        ("use_mmap", "false", False),
        ("use_mmap", "False", False),
        ("use_mmap", "F", False),
        ("use_mmap", "0", False),
        ("use_mmap", "TRUE", True),
        ("use_mmap", "t", True),
        ("use_mmap", "1", True),
        ("stop", "<|im_end|>", "<|im_end|>"),
    ],
)
def test_parse_value_accepts_what_go_accepts(name, text, value):
    parsed = parse_value(name, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("temperature", "0.7 # x", "invalid float value [0.7 # x]"),
        ("temperature", "0,7", "invalid float value [0,7]"),
        ("temperature", "0.7.1", "invalid float value [0.7.1]"),
        ("temperature", "", "invalid float value []"),
        ("temperature", "nan", "invalid float value [nan]"),
        ("temperature", "inf", "invalid float value [inf]"),
        ("temperature", "1e39", "invalid float value [1e39]"),
        ("temperature", "1__0", "invalid float value [1__0]"),
        ("num_ctx", "x", "invalid int value [x]"),
        ("num_ctx", "4096.0", "invalid int value [4096.0]"),
        ("num_ctx", "8k", "invalid int value [8k]"),
        ("num_ctx", "1_000", "invalid int value [1_000]"),
        ("num_ctx", "0x10", "invalid int value [0x10]"),
        ("num_ctx", "٣", "invalid int value [٣]"),
        ("num_ctx", "9223372036854775808", "invalid int value [9223372036854775808]"),
        ("use_mmap", "x", "invalid bool value [x]"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
        ("use_mmap", "on", "invalid bool value [on]"),
        ("num_ctx", "", "invalid int value []"),
    ],
)
def test_parse_value_rejects_with_ollamas_message(name, text, message):
    with pytest.raises(ParameterError) as caught:
        parse_value(name, text)
    assert caught.value.message == message
    assert caught.value.severity == "error"
    assert caught.value.code == "invalid-value"


def test_parse_value_unknown_and_deprecated_names():
    with pytest.raises(ParameterError) as unknown:
        parse_value("foo", "1")
    assert unknown.value.message == "unknown parameter 'foo'"
    with pytest.raises(ParameterError) as deprecated:
        parse_value("mirostat", "1")
    assert deprecated.value.message == "parameter mirostat is deprecated"
    assert deprecated.value.severity == "warning"


@pytest.mark.parametrize(
    ("name", "value_text", "hint"),
    [
        ("no_mmap", "true", "use `use_mmap false`"),
        ("no_mmap", "1", "use `use_mmap false`"),
        ("no_mmap", "false", "use `use_mmap true`"),
        ("no_mmap", None, "use `use_mmap false`"),
        ("kv_cache_type", "q8_0", KV_CACHE_HINT),
        ("kv_cache", "q8_0", KV_CACHE_HINT),
        ("cache_type_k", "q8_0", KV_CACHE_HINT),
        ("numa", "true", "numa was removed in Ollama 0.3.4; delete the line"),
        ("tfs_z", "1", "tfs_z was removed in Ollama 0.5.2; delete the line"),
        ("Temperature", "1", "parameter names are case-sensitive: did you mean 'temperature'?"),
        ("TOP_K", "1", "parameter names are case-sensitive: did you mean 'top_k'?"),
        ("temprature", "1", "did you mean 'temperature'?"),
        ("num_ctxx", "1", "did you mean 'num_ctx'?"),
        ("max_tokens", "1", "did you mean 'num_predict'?"),
        ("num_gqa", "8", "num_gqa was removed from Ollama (the model file carries this setting); delete the line"),
        (
            "rope_frequency_base",
            "1e6",
            "rope_frequency_base was removed from Ollama (the model file carries this setting); delete the line",
        ),
        ("KV_CACHE_TYPE", "q8_0", KV_CACHE_HINT),
        ("zzzz", "1", None),
    ],
)
def test_common_mistakes_get_a_suggestion(name, value_text, hint):
    assert suggest_for_unknown(name, value_text) == hint


def test_kv_cache_hint_text():
    assert KV_CACHE_HINT == (
        "not a parameter: set the server environment variable OLLAMA_KV_CACHE_TYPE=q8_0 "
        "(f16|q8_0|q4_0; needs flash attention)"
    )


# ------------------------------------------------------------------------------------------------- API options


@pytest.mark.parametrize(
    ("name", "value", "coerced"),
    [
        ("temperature", 1, 1.0),
        ("temperature", 0.7, 0.7),
        ("num_ctx", 4096, 4096),
        ("num_ctx", 4096.0, 4096),
        ("num_ctx", 4096.9, 4096),
        ("num_ctx", -2.5, -2),
        ("use_mmap", False, False),
        ("stop", ["a", "b"], ["a", "b"]),
        ("stop", ("a",), ["a"]),
        ("num_ctx", None, None),
    ],
)
def test_coerce_option_follows_ollamas_json_rules(name, value, coerced):
    result = coerce_option(name, value)
    assert result == coerced and type(result) is type(coerced)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("temperature", "0.7", 'option "temperature" must be of type float32'),
        ("temperature", True, 'option "temperature" must be of type float32'),
        ("num_ctx", "4096", 'option "num_ctx" must be of type integer'),
        ("num_ctx", True, 'option "num_ctx" must be of type integer'),
        ("use_mmap", "false", 'option "use_mmap" must be of type boolean'),
        ("use_mmap", 0, 'option "use_mmap" must be of type boolean'),
        ("stop", "\n", 'option "stop" must be of type array'),
        ("stop", ["a", 1], 'option "stop" must be of an array of strings'),
        ("temperature", float("nan"), 'option "temperature" must be a finite float32'),
        ("temperature", 1e39, 'option "temperature" must be a finite float32'),
    ],
)
def test_coerce_option_type_errors(name, value, message):
    with pytest.raises(ParameterError) as caught:
        coerce_option(name, value)
    assert caught.value.message == message
    assert caught.value.severity == "error"


def test_validate_options_warns_on_unknown_and_truncation_and_flags_type_errors():
    diagnostics = validate_options(
        {"temperature": "0.7", "kv_cache_type": "q8_0", "num_ctx": 4096.5, "mirostat": 1, "top_k": 40}
    )
    assert [(d.severity, d.message) for d in diagnostics] == [
        ("error", 'option "temperature" must be of type float32'),
        ("warning", "unknown option 'kv_cache_type' (Ollama ignores it)"),
        ("warning", 'option "num_ctx": 4096.5 is truncated to 4096'),
        ("warning", "option mirostat is deprecated"),
    ]
    assert diagnostics[1].suggestion == KV_CACHE_HINT
    assert all(d.line == 0 and d.column is None for d in diagnostics)


def test_validate_options_rejects_a_non_object():
    assert only(validate_options(["temperature"])).message == "options must be a JSON object"
    assert validate_options({}) == []


# ------------------------------------------------------------------------------------------------ the grammar


def test_minimal_modelfile():
    result = parse("FROM llama3.2\n")
    assert result.ok and result.diagnostics == []
    assert result.modelfile == Modelfile(from_="llama3.2")


def test_instructions_are_case_insensitive():
    result = parse("from llama3\nParameter temperature 0.5\nsYsTeM be brief\nmessage user hi\n")
    assert result.diagnostics == []
    assert result.modelfile.parameters == {"temperature": 0.5}
    assert result.modelfile.system == "be brief"
    assert result.modelfile.messages == [("user", "hi")]


def test_empty_text_has_no_from_line():
    diagnostic = only(check_text(""))
    assert (diagnostic.line, diagnostic.severity, diagnostic.message) == (1, "error", "no FROM line")
    assert diagnostic.code == "missing-from"


def test_no_from_line_comes_last():
    assert problems("PARAMETER top_k x\n") == [
        (1, "error", "invalid int value [x]"),
        (1, "error", "no FROM line"),
    ]


def test_unknown_instruction_message_and_line():
    diagnostic = only(check_text("FROM x\n\nPARAMETERS temperature 1\n"))
    assert diagnostic.message == (
        'command must be one of "from", "license", "template", "system", "adapter", "parameter", "message", "requires"'
    )
    assert diagnostic.message == INVALID_COMMAND
    assert (diagnostic.line, diagnostic.column) == (3, 1)
    assert str(diagnostic) == f"(line 3): {INVALID_COMMAND}"
    assert diagnostic.suggestion == "did you mean PARAMETER?"


@pytest.mark.parametrize("text", ["FROM2 x\n", "FR-OM x\n", "FROM:x\n", "1 x\n", '"x"\n'])
def test_instruction_names_are_letters_only(text):
    diagnostic = only([d for d in check_text(text) if d.code != "missing-from"])
    assert diagnostic.message == INVALID_COMMAND and diagnostic.line == 1


def test_instruction_without_a_value():
    diagnostic = only(check_text("FROM x\nTEMPLATE\n"))
    assert (diagnostic.line, diagnostic.message) == (2, INVALID_COMMAND)
    assert diagnostic.suggestion == "write `TEMPLATE <value>` on one line"


def test_comment_only_at_the_start_of_a_line():
    result = parse("# header\n   # indented comment\nFROM x\nSYSTEM you are #1\n")
    assert result.diagnostics == []
    assert result.modelfile.system == "you are #1"


def test_inline_comment_is_part_of_a_typed_value():
    diagnostic = only(check_text("FROM x\nPARAMETER temperature 0.7 # x\n"))
    assert (diagnostic.line, diagnostic.column) == (2, 23)
    assert diagnostic.message == "invalid float value [0.7 # x]"
    assert diagnostic.suggestion.startswith("a `#` starts a comment only at the start of a line")


def test_inline_comment_after_from_is_a_warning():
    result = parse("FROM qwen3:8b # the base\n")
    assert result.modelfile.from_ == "qwen3:8b # the base"
    diagnostic = only(result.diagnostics)
    assert diagnostic.severity == "warning" and diagnostic.code == "inline-comment"


def test_values_are_trimmed():
    result = parse("FROM    x   \nSYSTEM \t  hello   world \t \n")
    assert result.modelfile.from_ == "x"
    assert result.modelfile.system == "hello   world"


def test_quoted_values_keep_inner_spaces_and_span_lines():
    text = 'FROM x\nSYSTEM "  padded  "\nTEMPLATE """line one\n  "quoted" line two\n"""\nLICENSE "a\nb"\n'
    result = parse(text)
    assert result.diagnostics == []
    assert result.modelfile.system == "  padded  "
    assert result.modelfile.template == 'line one\n  "quoted" line two\n'
    assert result.modelfile.license == ["a\nb"]


def test_no_escapes_inside_quotes():
    assert parse('FROM x\nSYSTEM "a\\nb \\" c"\n').modelfile.system == 'a\\nb \\" c'


def test_empty_quoted_value():
    assert parse('FROM x\nSYSTEM ""\n').modelfile.system == ""


def test_multi_line_values_shift_line_numbers():
    text = (
        "FROM x\n"  # 1
        'TEMPLATE """{{ .System }}\n'  # 2
        "{{ .Prompt }}\n"  # 3
        '"""\n'  # 4
        'SYSTEM "one\n'  # 5
        'two"\n'  # 6
        "PARAMETER num_ctx big\n"  # 7
        "BOGUS x\n"  # 8
    )
    assert problems(text) == [(7, "error", "invalid int value [big]"), (8, "error", INVALID_COMMAND)]


def test_crlf_and_lone_cr_count_as_one_line_break():
    assert problems("FROM x\r\n\r\nPARAMETER num_ctx big\r\n") == [(3, "error", "invalid int value [big]")]
    assert problems("FROM x\rPARAMETER num_ctx big\r") == [(2, "error", "invalid int value [big]")]


def test_crlf_inside_a_quoted_value_is_kept():
    assert parse('FROM x\r\nSYSTEM "a\r\nb"\r\n').modelfile.system == "a\r\nb"


def test_stop_accumulates_and_other_parameters_last_one_wins():
    text = "FROM x\nPARAMETER stop a\nPARAMETER temperature 0.1\nPARAMETER stop b\nPARAMETER temperature 0.9\n"
    result = parse(text)
    assert result.modelfile.parameters == {"stop": ["a", "b"], "temperature": 0.9}
    diagnostic = only(result.diagnostics)
    assert (diagnostic.line, diagnostic.severity, diagnostic.code) == (5, "warning", "duplicate")
    assert diagnostic.message == "parameter temperature is already set on line 3; this value wins"


def test_license_accumulates_and_template_last_one_wins():
    result = parse("FROM x\nLICENSE MIT\nTEMPLATE a\nLICENSE Apache\nTEMPLATE b\n")
    assert result.modelfile.license == ["MIT", "Apache"]
    assert result.modelfile.template == "b"
    assert only(result.diagnostics).message == "TEMPLATE is already given on line 3; this one wins"


def test_parameter_names_are_case_sensitive():
    diagnostic = only(check_text("FROM x\nPARAMETER Temperature 0.5\n"))
    assert (diagnostic.line, diagnostic.column) == (2, 11)
    assert diagnostic.message == "unknown parameter 'Temperature'"
    assert diagnostic.suggestion == "parameter names are case-sensitive: did you mean 'temperature'?"


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        ("PARAMETER no_mmap true", "unknown parameter 'no_mmap'", "use `use_mmap false`"),
        ("PARAMETER no_mmap false", "unknown parameter 'no_mmap'", "use `use_mmap true`"),
        ("PARAMETER kv_cache_type q8_0", "unknown parameter 'kv_cache_type'", KV_CACHE_HINT),
        ("PARAMETER kv_cache q8_0", "unknown parameter 'kv_cache'", KV_CACHE_HINT),
        ("PARAMETER cache_type_k q8_0", "unknown parameter 'cache_type_k'", KV_CACHE_HINT),
        ("PARAMETER numa true", "unknown parameter 'numa'", "numa was removed in Ollama 0.3.4; delete the line"),
        ("PARAMETER tfs_z 1.0", "unknown parameter 'tfs_z'", "tfs_z was removed in Ollama 0.5.2; delete the line"),
        (
            "PARAMETER TOP_K 20",
            "unknown parameter 'TOP_K'",
            "parameter names are case-sensitive: did you mean 'top_k'?",
        ),
        ("PARAMETER temprature 0.5", "unknown parameter 'temprature'", "did you mean 'temperature'?"),
        (
            "PARAMETER num_gqa 8",
            "unknown parameter 'num_gqa'",
            "num_gqa was removed from Ollama (the model file carries this setting); delete the line",
        ),
        (
            "PARAMETER rope_frequency_base 1000000",
            "unknown parameter 'rope_frequency_base'",
            "rope_frequency_base was removed from Ollama (the model file carries this setting); delete the line",
        ),
        ("PARAMETER n_gpu_layers 99", "unknown parameter 'n_gpu_layers'", "did you mean 'num_gpu'?"),
    ],
)
def test_common_mistakes_in_a_modelfile(line, message, hint):
    diagnostic = only(check_text(f"FROM x\n{line}\n"))
    assert (diagnostic.line, diagnostic.severity, diagnostic.message, diagnostic.suggestion) == (
        2,
        "error",
        message,
        hint,
    )
    assert diagnostic.code == "unknown-parameter"


@pytest.mark.parametrize("name", sorted(DEPRECATED_PARAMETERS))
def test_deprecated_parameters_warn_and_are_dropped(name):
    result = parse(f"FROM x\nPARAMETER {name} 1\n")
    diagnostic = only(result.diagnostics)
    assert (diagnostic.line, diagnostic.severity, diagnostic.message) == (
        2,
        "warning",
        f"parameter {name} is deprecated",
    )
    assert result.ok and result.modelfile.parameters == {}


def test_invalid_values_of_each_type():
    text = "FROM x\nPARAMETER top_p x\nPARAMETER seed x\nPARAMETER use_mmap x\n"
    assert problems(text) == [
        (2, "error", "invalid float value [x]"),
        (3, "error", "invalid int value [x]"),
        (4, "error", "invalid bool value [x]"),
    ]


def test_invalid_parameter_names():
    text = "FROM x\nPARAMETER num-ctx 4096\nPARAMETER temperature=0.7\n"
    result = parse(text)
    assert [(d.line, d.message, d.suggestion) for d in result.diagnostics] == [
        (2, 'invalid parameter name "num-ctx"', "did you mean 'num_ctx'?"),
        (
            3,
            'invalid parameter name "temperature=0.7"',
            "write `PARAMETER temperature <value>`, with a space between the name and the value",
        ),
    ]


def test_parameter_without_value():
    diagnostic = only(check_text("FROM x\nPARAMETER top_k\n"))
    assert (diagnostic.line, diagnostic.message) == (2, "parameter top_k needs a value")


def test_more_than_one_space_after_parameter_is_read_but_warned():
    result = parse("FROM x\nPARAMETER  top_k 20\n")
    assert result.modelfile.parameters == {"top_k": 20}
    assert only(result.diagnostics).code == "extra-space"


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_message_roles(role):
    result = parse(f"FROM x\nMESSAGE {role} some text\n")
    assert result.diagnostics == []
    assert result.modelfile.messages == [(role, "some text")]


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("MESSAGE User hi", "roles are lower case: did you mean 'user'?"),
        ("MESSAGE tool hi", "MESSAGE takes only system, user or assistant"),
        ("MESSAGE user: hi", "write `MESSAGE user <text>` (no colon)"),
        ("MESSAGE asistant hi", "did you mean 'assistant'?"),
    ],
)
def test_invalid_message_roles(line, hint):
    diagnostic = only(check_text(f"FROM x\n{line}\n"))
    assert (diagnostic.line, diagnostic.column, diagnostic.message, diagnostic.suggestion) == (2, 9, INVALID_ROLE, hint)
    assert INVALID_ROLE == 'message role must be one of "system", "user", or "assistant"'


def test_multi_line_message():
    result = parse('FROM x\nMESSAGE assistant """Sure:\n1. "this"\n2. that"""\n')
    assert result.modelfile.messages == [("assistant", 'Sure:\n1. "this"\n2. that')]


def test_unterminated_quote_is_reported_where_it_opens():
    diagnostic = only(check_text('FROM x\nSYSTEM hi\nTEMPLATE """{{ .Prompt }}\nPARAMETER top_k 1\n'))
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (3, 10, "unterminated-quote")
    assert diagnostic.message == 'unexpected EOF: the """ opened here is never closed'


def test_text_after_a_closing_quote_runs_on_like_in_ollama():
    text = 'FROM x\nPARAMETER stop "<|im_end|>" # end marker\nPARAMETER stop "<|im_start|>"\n'
    result = parse(text)
    # Ollama reads one stop value that runs to the next line ending in a quote.
    assert result.modelfile.parameters == {"stop": ['<|im_end|>" # end marker\nPARAMETER stop "<|im_start|>']}
    diagnostic = only(result.diagnostics)
    assert (diagnostic.line, diagnostic.code) == (2, "text-after-quote")
    assert diagnostic.message == "text follows the closing quote, so the value runs on to line 3"


def test_text_after_a_closing_quote_that_never_closes_again():
    diagnostic = only(check_text('FROM x\nPARAMETER stop "<|im_end|>" # end\nPARAMETER top_k 1\n'))
    assert (diagnostic.line, diagnostic.code) == (2, "unterminated-quote")
    assert "text follows the closing quote on line 2" in diagnostic.suggestion


def test_blanks_after_a_closing_quote_are_fine():
    result = parse('FROM x\nSYSTEM "hello"  \t\nTEMPLATE """{{ .Prompt }}""" \n')
    assert result.diagnostics == []
    assert (result.modelfile.system, result.modelfile.template) == ("hello", "{{ .Prompt }}")


def test_invisible_characters_are_dropped_from_values_with_a_warning():
    result = parse("\ufeffFROM x\nSYSTEM a\u200bb\n")
    assert result.modelfile.system == "ab"
    diagnostic = only(result.diagnostics)
    assert (diagnostic.line, diagnostic.code) == (2, "dropped-character")
    assert "U+200B (ZERO WIDTH SPACE)" in diagnostic.message


def test_non_breaking_space_after_an_instruction():
    diagnostic = only(check_text("FROM\u00a0qwen3\n"))
    assert diagnostic.message == INVALID_COMMAND
    assert diagnostic.suggestion == "U+00A0 (NO-BREAK SPACE) after FROM is not a space; use a plain space"


def test_requires():
    assert parse("FROM x\nREQUIRES 0.14.0\n").modelfile.requires == "0.14.0"
    assert parse("FROM x\nREQUIRES v0.14.0-rc1\n").ok
    diagnostic = only(check_text("FROM x\nREQUIRES latest\n"))
    assert (diagnostic.line, diagnostic.message) == (2, "requires must be a valid semver (e.g. 0.14.0)")


def test_empty_from_and_adapter():
    assert problems('FROM ""\nADAPTER ""\n') == [
        (1, "error", "FROM needs a model name or a path"),
        (2, "error", "ADAPTER needs a path"),
    ]


def test_broken_fixture_reports_every_problem():
    text = (FIXTURES / "broken.Modelfile").read_text()
    assert [(d.line, d.severity, d.code) for d in check_text(text)] == [
        (2, "error", "unknown-instruction"),
        (3, "error", "invalid-value"),
        (4, "error", "invalid-value"),
        (5, "error", "unknown-parameter"),
        (6, "error", "unknown-parameter"),
        (7, "error", "unknown-parameter"),
        (8, "error", "unknown-parameter"),
        (9, "error", "unknown-parameter"),
        (10, "warning", "deprecated-parameter"),
        (11, "error", "invalid-value"),
        (14, "error", "invalid-role"),
        (1, "error", "missing-from"),
    ]


def test_realistic_fixture_parses_cleanly():
    result = parse((FIXTURES / "qwen3.Modelfile").read_text())
    assert result.diagnostics == []
    modelfile = result.modelfile
    assert modelfile.from_ == "qwen3:8b"
    assert modelfile.parameters == {
        "num_ctx": 8192,
        "num_gpu": -1,
        "use_mmap": False,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "repeat_penalty": 1.0,
        "stop": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
    }
    assert modelfile.template.startswith("{{- if .Messages }}\n")
    assert modelfile.template.endswith("{{ if .Response }}<|im_end|>{{ end }}")
    assert '{"name": <function-name>, "arguments": <args-json-object>}' in modelfile.template
    assert (
        modelfile.system == "You are Qwen, a helpful assistant running on a shared GPU box.\n"
        "Answer briefly; say so when you are unsure."
    )
    assert modelfile.messages[0] == ("user", "Is the box busy right now?")
    assert modelfile.license == ["Apache License\nVersion 2.0, January 2004"]


# ---------------------------------------------------------------------------------------------- writing back


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain value", "plain value"),
        ('say "hi" now', 'say "hi" now'),
        (" leading", '" leading"'),
        ("trailing ", '"trailing "'),
        ("two\nlines", '"two\nlines"'),
        ('two\n"quoted" lines', '"""two\n"quoted" lines"""'),
        ('"starts quoted"', '""""starts quoted""""'),
        ("", '""'),
        ("\ttab", '"\ttab"'),
    ],
)
def test_quote_value(value, written):
    assert quote_value(value) == written
    assert parse(f"FROM x\nSYSTEM {written}\n").modelfile.system == value


def test_unrepresentable_values():
    assert not is_representable('a"""\nb')
    assert not is_representable("zero\u200bwidth")
    assert is_representable('a""" b')  # no line break or edge space: written as is
    with pytest.raises(ValueError, match="at the end of a line"):
        serialize(Modelfile(from_="x", system='a"""\nb'))


def test_serialize_in_ollama_show_order():
    modelfile = Modelfile(
        from_="qwen3:8b",
        parameters={
            "temperature": 0.6,
            "stop": ["<|im_end|>", " "],
            "use_mmap": False,
            "num_ctx": 8192,
            "repeat_penalty": 1.0,
        },
        template="{{ .Prompt }}",
        system="Be brief.\nBe kind.",
        license=['Say "please"\n'],
        messages=[("user", "hi"), ("assistant", " hello")],
        adapters=["./lora.gguf"],
        requires="0.14.0",
    )
    assert serialize(modelfile) == (
        "FROM qwen3:8b\n"
        "REQUIRES 0.14.0\n"
        "ADAPTER ./lora.gguf\n"
        "TEMPLATE {{ .Prompt }}\n"
        'SYSTEM "Be brief.\nBe kind."\n'
        "PARAMETER temperature 0.6\n"
        "PARAMETER stop <|im_end|>\n"
        'PARAMETER stop " "\n'
        "PARAMETER use_mmap false\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER repeat_penalty 1\n"
        'LICENSE """Say "please"\n"""\n'
        "MESSAGE user hi\n"
        'MESSAGE assistant " hello"\n'
    )
    assert parse(serialize(modelfile)).modelfile == modelfile


def test_serialize_keeps_comments_and_unchanged_lines():
    text = (FIXTURES / "qwen3.Modelfile").read_text()
    modelfile = parse(text).modelfile
    assert serialize(modelfile) == text
    assert serialize(modelfile, keep_layout=False) != text


def test_editing_one_parameter_changes_one_line():
    text = (FIXTURES / "qwen3.Modelfile").read_text()
    edited = serialize(replace_parameters(parse(text).modelfile, num_ctx=16384))
    changed = [line for line in diff(text, edited) if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-PARAMETER num_ctx 8192", "+PARAMETER num_ctx 16384"]


def test_new_parameter_goes_after_the_last_parameter_and_removed_ones_disappear():
    text = "# base\nFROM x\nPARAMETER top_k 20\nPARAMETER stop a\nPARAMETER stop b\n\nMESSAGE user hi\n"
    modelfile = replace_parameters(parse(text).modelfile, top_k=None, num_gpu=0)
    modelfile.parameters["stop"] = ["a"]
    assert serialize(modelfile) == "# base\nFROM x\nPARAMETER stop a\nPARAMETER num_gpu 0\n\nMESSAGE user hi\n"


def test_new_system_goes_before_parameters():
    modelfile = parse("FROM x\nPARAMETER top_k 20\n").modelfile
    modelfile.system = "hello"
    assert serialize(modelfile) == "FROM x\nSYSTEM hello\nPARAMETER top_k 20\n"


def test_repeated_single_values_are_written_once():
    modelfile = parse("FROM x\nPARAMETER top_k 1\nSYSTEM a\nPARAMETER top_k 2\n").modelfile
    assert serialize(modelfile) == "FROM x\nSYSTEM a\nPARAMETER top_k 2\n"


def test_float_and_bool_formatting():
    modelfile = Modelfile(
        from_="x", parameters={"temperature": 1.0, "top_p": 1e-05, "min_p": 0.05, "use_mmap": True, "seed": 42}
    )
    assert serialize(modelfile) == (
        "FROM x\nPARAMETER temperature 1\nPARAMETER top_p 1e-05\nPARAMETER min_p 0.05\nPARAMETER use_mmap true\n"
        "PARAMETER seed 42\n"
    )


def test_diff_lines():
    lines = diff("FROM x\nPARAMETER top_k 1\n", "FROM x\nPARAMETER top_k 2\n")
    assert lines == [
        "--- current",
        "+++ edited",
        "@@ -1,2 +1,2 @@",
        " FROM x",
        "-PARAMETER top_k 1",
        "+PARAMETER top_k 2",
    ]
    assert diff("FROM x\n", "FROM x\n") == []


# --------------------------------------------------------------------------------------------- validate / API


def test_validate_a_modelfile_built_in_code():
    modelfile = Modelfile(
        from_="",
        parameters={"temperature": "0.7", "num_ctx": 4096.5, "stop": "x", "bogus": 1, "mirostat": 1},
        messages=[("tool", "x")],
        requires="latest",
        system="a\u200bb",
    )
    assert [(d.severity, d.message) for d in validate(modelfile)] == [
        ("error", "no FROM line"),
        ("error", 'option "temperature" must be of type float32'),
        ("error", "invalid int value [4096.5]"),
        ("error", 'option "stop" must be of type array'),
        ("error", "unknown parameter 'bogus'"),
        ("warning", "parameter mirostat is deprecated"),
        ("error", 'message role must be one of "system", "user", or "assistant"'),
        ("error", "requires must be a valid semver (e.g. 0.14.0)"),
        ("error", "SYSTEM cannot be written in a Modelfile"),
    ]


def test_validate_warns_about_a_local_file_in_from():
    diagnostic = only(validate(Modelfile(from_="./qwen3-8b-q4_K_M.gguf")))
    assert (diagnostic.severity, diagnostic.code) == ("warning", "local-from")
    assert validate(Modelfile(from_="hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M")) == []


def test_create_request_from_the_realistic_fixture():
    modelfile = parse((FIXTURES / "qwen3.Modelfile").read_text()).modelfile
    body = to_create_request(modelfile, "qwen3-green")
    assert list(body) == ["model", "from", "parameters", "template", "system", "license", "messages", "stream"]
    assert body["model"] == "qwen3-green" and body["from"] == "qwen3:8b" and body["stream"] is True
    assert body["parameters"] == {
        "num_ctx": 8192,
        "num_gpu": -1,
        "use_mmap": False,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "repeat_penalty": 1.0,
        "stop": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
    }
    assert isinstance(body["parameters"]["repeat_penalty"], float)
    assert body["license"] == ["Apache License\nVersion 2.0, January 2004"]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "I can't see the GPU from here, but claw's Power pane can.",
    }
    json.dumps(body)  # the body is plain JSON


def test_create_request_options():
    modelfile = Modelfile(from_="x", parameters={"stop": ["a"], "mirostat": 1}, requires="v0.14.0")
    body = to_create_request(modelfile, "y", quantize="q4_K_M", stream=False)
    assert body == {
        "model": "y",
        "from": "x",
        "parameters": {"stop": ["a"]},
        "requires": "0.14.0",
        "quantize": "q4_K_M",
        "stream": False,
    }


def test_create_request_refuses_what_ollama_would_store_broken():
    with pytest.raises(ModelfileError) as caught:
        to_create_request(Modelfile(from_="x", parameters={"temperature": "hot"}), "y", quantize="q5")
    assert [d.message for d in caught.value.diagnostics] == [
        'option "temperature" must be of type float32',
        "unsupported quantization type 'q5'",
    ]
    with pytest.raises(ModelfileError):
        to_create_request(Modelfile(from_="x"), "")


def test_create_request_adapters_need_uploaded_digests():
    modelfile = Modelfile(from_="x", adapters=["/srv/lora/adapter.gguf"])
    with pytest.raises(ModelfileError, match=re.escape("no blob digest for ADAPTER /srv/lora/adapter.gguf")):
        to_create_request(modelfile, "y")
    body = to_create_request(modelfile, "y", adapter_digests={"/srv/lora/adapter.gguf": "sha256:" + "a" * 64})
    assert body["adapters"] == {"adapter.gguf": "sha256:" + "a" * 64}


SHOW_MODELFILE = '''# Modelfile generated by "ollama show"
# To build a new Modelfile based on this, replace FROM with:
# FROM qwen3:8b

FROM /usr/share/ollama/.ollama/models/blobs/sha256-a3de86cd1c132c822487ededd47a324c50491393e6565cd14bafa40d0b8e686f
TEMPLATE """{{ .System }} {{ .Prompt }}"""
PARAMETER stop <|im_start|>
PARAMETER stop <|im_end|>
PARAMETER temperature 0.6
LICENSE """Apache License"""
'''


def test_from_show_response_uses_the_modelfile_text_and_the_suggested_from():
    modelfile = from_show_response({"modelfile": SHOW_MODELFILE, "model_info": {}})
    assert modelfile.from_ == "qwen3:8b"
    assert modelfile.parameters == {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.6}
    assert modelfile.template == "{{ .System }} {{ .Prompt }}"
    assert from_show_response({"modelfile": SHOW_MODELFILE}, model_name="qwen3:latest").from_ == "qwen3:latest"
    # The header's advice has been followed, so it is not written back.
    assert serialize(modelfile) == (
        "FROM qwen3:8b\n"
        'TEMPLATE """{{ .System }} {{ .Prompt }}"""\n'
        "PARAMETER stop <|im_start|>\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER temperature 0.6\n"
        'LICENSE """Apache License"""\n'
    )


def test_from_show_response_keeps_a_blob_from_when_there_is_no_name():
    text = "\n".join(line for line in SHOW_MODELFILE.splitlines() if not line.startswith("# FROM"))
    modelfile = from_show_response({"modelfile": text})
    assert modelfile.from_.startswith("/usr/share/ollama/.ollama/models/blobs/sha256-")
    assert serialize(modelfile).startswith('# Modelfile generated by "ollama show"\n')


def test_from_show_response_without_modelfile_text_reads_the_fields():
    show = {
        "parameters": (
            'stop                           "<|eot_id|>"\n'
            'stop                           "line\\nbreak \\"q\\" \\u00e9"\n'
            "num_ctx                        1e+06\n"
            "temperature                    0.7\n"
            "use_mmap                       false\n"
            "mirostat                       0\n"
        ),
        "template": "{{ .Prompt }}",
        "system": "",
        "license": "MIT",
        "messages": [{"role": "user", "content": "hi"}],
        "details": {"parent_model": ""},
        "model_info": {},
    }
    modelfile = from_show_response(show, model_name="llama3.2")
    assert modelfile == Modelfile(
        from_="llama3.2",
        parameters={
            "stop": ["<|eot_id|>", 'line\nbreak "q" é'],
            "num_ctx": 1000000,
            "temperature": 0.7,
            "use_mmap": False,
        },
        template="{{ .Prompt }}",
        license=["MIT"],
        messages=[("user", "hi")],
    )


def test_from_show_response_falls_back_when_the_modelfile_text_is_broken():
    show = {"modelfile": 'FROM x\nTEMPLATE """never closed\n', "template": "T", "parameters": ""}
    assert from_show_response(show, model_name="m") == Modelfile(from_="m", template="T")


# ------------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def claw_main():
    return cli.main


def test_cli_check_clean_file(claw_main, capsys):
    path = str(FIXTURES / "qwen3.Modelfile")
    assert claw_main(["modelfile", "check", path]) == 0
    assert capsys.readouterr().out == f"{path}: ok, no problems found\n"


def test_cli_check_broken_file(claw_main, capsys):
    path = str(FIXTURES / "broken.Modelfile")
    assert claw_main(["modelfile", "check", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}:2: error: {INVALID_COMMAND}"
    assert lines[1] == "    hint: did you mean FROM?"
    assert lines[2] == f"{path}:3: error: invalid float value [0.7 # a little creative]"
    assert f"{path}:5: error: unknown parameter 'no_mmap'" in lines
    assert "    hint: use `use_mmap false`" in lines
    assert f"{path}:10: warning: parameter mirostat is deprecated" in lines
    assert lines[-1] == f"{path}: 11 errors, 1 warning"


def test_cli_warnings_only_exit_zero(claw_main, capsys, tmp_path):
    path = tmp_path / "Modelfile"
    path.write_text("FROM x\nPARAMETER mirostat 1\n")
    assert claw_main(["modelfile", "check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{path}: 0 errors, 1 warning"


def test_cli_unreadable_file(claw_main, capsys, tmp_path):
    missing = tmp_path / "missing"
    assert claw_main(["modelfile", "check", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"claw modelfile check: cannot read {missing}: No such file or directory\n"
    assert claw_main(["modelfile", "check", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_reads_stdin(claw_main, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"FROM x\nPARAMETER top_k many\n")))
    assert claw_main(["modelfile", "check", "-"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "<stdin>:2: error: invalid int value [many]",
        "    hint: top_k takes a whole number, e.g. 40",
        "<stdin>: 1 error, 0 warnings",
    ]


def test_cli_json(claw_main, capsys):
    path = str(FIXTURES / "broken.Modelfile")
    assert claw_main(["modelfile", "check", "--json", path]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["file"] == path and report["ok"] is False
    assert (report["errors"], report["warnings"]) == (11, 1)
    assert report["diagnostics"][0] == {
        "line": 2,
        "column": 1,
        "severity": "error",
        "message": INVALID_COMMAND,
        "suggestion": "did you mean FROM?",
        "code": "unknown-instruction",
    }


def test_cli_in_a_real_process(tmp_path):
    path = tmp_path / "Modelfile"
    path.write_text("FROM x\nPARAMETER temperature 0.7 # x\n")
    command = [sys.executable, "-m", "claw_tui", "modelfile", "check", str(path)]
    completed = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert completed.returncode == 1
    assert completed.stdout.splitlines()[0] == f"{path}:2: error: invalid float value [0.7 # x]"
    assert completed.stderr == ""
