"""Properties of the Modelfile module: writing back and reading again is lossless; bad input never crashes."""

from __future__ import annotations

import dataclasses
import os

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from claw_tui.ollama.modelfile import (
    Modelfile,
    ParseResult,
    is_representable,
    parse,
    quote_value,
    serialize,
    to_create_request,
)
from claw_tui.ollama.parameters import PARAMETERS, ParameterError, coerce_option, validate_options

# CLAW_PROP_EXAMPLES=5000 for a longer hunt.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("CLAW_PROP_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Characters that stress the quoting rules, plus any printable character (letters, marks, digits, punctuation,
# symbols: what Ollama's parser keeps).
tricky_chars = st.sampled_from(['"', '"', '"', " ", "\t", "\n", "\r", "#", "\\", "'", "`", "{", "}"])
printable_chars = st.characters(categories=["L", "M", "N", "P", "S"])
any_text = st.text(st.one_of(tricky_chars, printable_chars), max_size=40)
text_values = any_text.filter(is_representable)
non_empty_values = text_values.filter(bool)


def typed_value(name: str) -> st.SearchStrategy:
    spec = PARAMETERS[name]
    if spec.repeatable:
        return st.lists(text_values, min_size=1, max_size=4)
    if spec.type == "int":
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if spec.type == "float":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    return st.booleans()


@st.composite
def parameters(draw) -> dict:
    names = draw(st.lists(st.sampled_from(sorted(PARAMETERS)), unique=True, max_size=8))
    return {name: draw(typed_value(name)) for name in names}


semvers = st.builds(
    lambda major, minor, patch, v: f"{v}{major}.{minor}.{patch}",
    st.integers(0, 20),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["", "v"]),
)

modelfiles = st.builds(
    Modelfile,
    from_=non_empty_values,
    parameters=parameters(),
    template=st.none() | text_values,
    system=st.none() | text_values,
    adapters=st.lists(non_empty_values, max_size=1),
    license=st.lists(text_values, max_size=3),
    messages=st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), text_values), max_size=4),
    requires=st.none() | semvers,
)


@PROPERTY_SETTINGS
@given(modelfiles)
def test_serialize_then_parse_gives_the_same_modelfile(modelfile):
    text = serialize(modelfile)
    result = parse(text)
    assert result.errors == [], text
    assert result.modelfile == modelfile


@PROPERTY_SETTINGS
@given(modelfiles)
def test_parsed_modelfile_writes_back_to_the_same_text(modelfile):
    text = serialize(modelfile)
    assert serialize(parse(text).modelfile) == text


@PROPERTY_SETTINGS
@given(modelfiles)
def test_every_valid_modelfile_becomes_a_create_request(modelfile):
    body = to_create_request(modelfile, "new-model", adapter_digests=dict.fromkeys(modelfile.adapters, "sha256:0"))
    assert body["from"] == modelfile.from_
    assert validate_options(body.get("parameters", {})) == []


@PROPERTY_SETTINGS
@given(any_text)
@example('a"""\nb')
@example('a""" b')
@example('"')
@example('"""')
@example(' """ ')
@example('x"""\t')
def test_is_representable_says_exactly_when_a_value_reads_back(value):
    result = parse(f"FROM x\nSYSTEM {quote_value(value)}\n")
    reads_back = result.ok and result.modelfile.system == value
    assert is_representable(value) == reads_back


modelfile_words = st.sampled_from(
    [
        "FROM",
        "from",
        "PARAMETER",
        "TEMPLATE",
        "SYSTEM",
        "MESSAGE",
        "LICENSE",
        "ADAPTER",
        "REQUIRES",
        "user",
        "tool",
        "stop",
        "temperature",
        "num_ctx",
        "no_mmap",
        "0.7",
        "x",
        "#",
        '"',
        '"""',
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "\u200b",
        "\ufeff",
        "\u00a0",
        "é",
        "=",
        "-",
    ]
)
modelfile_like_text = st.lists(modelfile_words, max_size=60).map("".join)


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), modelfile_like_text))
def test_parse_never_raises(text):
    result = parse(text)
    assert isinstance(result, ParseResult)
    for diagnostic in result.diagnostics:
        assert diagnostic.line >= 1
        assert diagnostic.severity in ("error", "warning")
        assert diagnostic.message


value_words = st.sampled_from(
    ["x", "0.7", "1", "true", '"', '"""', " ", "\t", "\n", "#", "\u200b", "é", "{{ .Prompt }}"]
)
instruction_heads = st.sampled_from(
    [
        "FROM",
        "SYSTEM",
        "TEMPLATE",
        "LICENSE",
        "ADAPTER",
        "PARAMETER stop",
        "PARAMETER temperature",
        "PARAMETER num_ctx",
        "PARAMETER use_mmap",
        "PARAMETER mirostat",
        "MESSAGE user",
        "MESSAGE assistant",
        "# note",
    ]
)
instruction_lines = st.builds(
    lambda head, words: f"{head} {''.join(words)}", instruction_heads, st.lists(value_words, max_size=6)
)
line_breaks = st.sampled_from(["\n", "\n\n", "\r\n"])
modelfile_lines = st.builds(
    lambda lines, breaks: "FROM base\n" + "".join(line + br for line, br in zip(lines, breaks)),
    st.lists(instruction_lines, max_size=8),
    st.lists(line_breaks, min_size=8, max_size=8),
)


@PROPERTY_SETTINGS
@given(modelfile_lines)
def test_text_that_parses_cleanly_writes_back_to_an_equal_modelfile(text):
    result = parse(text)
    assume(result.ok)
    again = parse(serialize(result.modelfile))
    assert again.ok
    assert again.modelfile == result.modelfile


@PROPERTY_SETTINGS
@given(modelfile_lines, modelfiles)
def test_edits_on_a_parsed_modelfile_write_back_exactly(text, edited):
    # The values of `edited` on the layout (comments, order, original lines) of the parsed text; lines with
    # problems are not in the layout, so the text need not be clean.
    modelfile = dataclasses.replace(edited, layout=parse(text).modelfile.layout)
    again = parse(serialize(modelfile))
    assert again.errors == []
    assert again.modelfile == edited


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@PROPERTY_SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(PARAMETERS) + ["bogus", "mirostat"]), json_values))
def test_option_checks_never_crash(options):
    validate_options(options)
    for name, value in options.items():
        try:
            coerce_option(name, value)
        except ParameterError:
            pass
