"""Ollama Modelfiles: parse (collecting every problem), validate, write back, and turn into `/api/create` bodies.

The scanner follows Ollama's own parser (parser/parser.go) rune for rune where it matters:
- an instruction is a run of ASCII letters at the start of a line, then a space or tab, then a value;
- `#` starts a comment only where an instruction could start;
- a value runs to the end of the line and is trimmed; a value that starts with `"` or `\"\"\"` goes on, across
  lines, until a line break (or the end of the file) right after the closing quote; there are no escapes;
- characters that are neither printable nor blanks are dropped from values.
Unlike Ollama, which stops at the first problem, `parse` reports all of them.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from claw_tui.ollama.parameters import (
    PARAMETERS,
    QUANTIZE_TYPES,
    Diagnostic,
    ParameterError,
    ParamSpec,
    ParamValue,
    coerce_option,
    format_value,
    lookup_parameter,
    parse_typed,
)

__all__ = [
    "Diagnostic",
    "LayoutLine",
    "Modelfile",
    "ModelfileError",
    "ParseResult",
    "check_text",
    "diff",
    "from_show_response",
    "is_representable",
    "parse",
    "quote_value",
    "replace_parameters",
    "serialize",
    "to_create_request",
    "validate",
]

INSTRUCTIONS = ("from", "license", "template", "system", "adapter", "parameter", "message", "requires")
INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "parameter", "message", "requires"'
)
MESSAGE_ROLES = ("system", "user", "assistant")
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
MISSING_FROM = "no FROM line"
INVALID_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"

BLANKS = " \t"
LINE_BREAKS = "\r\n"
WHITESPACE = BLANKS + LINE_BREAKS
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LETTERS = re.compile(r"[A-Za-z]+")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_]+")
_SEMVER = re.compile(
    r"v(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)

ParameterValue = ParamValue | list[str]
SlotKey = tuple[Any, ...]


@dataclass(frozen=True)
class LayoutLine:
    """One line (or multi-line instruction) of the source, kept so that writing back changes only what changed.

    kind "slot" stands for an instruction: `key` names the value it holds (("from",), ("parameter", "stop", 0),
    ("message", 2), ...), `text` is its source and `snapshot` the value it had; while the value is unchanged
    the source is written back as it was.
    """

    kind: Literal["comment", "blank", "slot"]
    text: str = ""
    key: SlotKey = ()
    snapshot: Any = None


@dataclass
class Modelfile:
    from_: str = ""
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    requires: str | None = None
    layout: list[LayoutLine] = field(default_factory=list, compare=False, repr=False)


@dataclass
class ParseResult:
    modelfile: Modelfile
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class ModelfileError(ValueError):
    """A Modelfile that cannot become an `/api/create` request; `diagnostics` says why."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


# --------------------------------------------------------------------------------------------------- scanning


def _is_invisible(char: str) -> bool:
    """Characters Ollama's parser silently drops: neither printable (Go's strconv.IsPrint) nor blanks."""
    return not char.isprintable() and char not in WHITESPACE


def _drop_invisible(text: str) -> str:
    if _strip_blanks_for_check(text).isprintable():
        return text
    return "".join(c for c in text if not _is_invisible(c))


def _strip_blanks_for_check(text: str) -> str:
    return text.replace("\t", "").replace("\r", "").replace("\n", "")


class _Source:
    """The text with line/column lookup (a line ends at \\n, \\r\\n or a lone \\r, as in Ollama)."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def column_of(self, pos: int) -> int:
        return pos - self.line_starts[self.line_of(pos) - 1] + 1

    def end_of_line(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] not in LINE_BREAKS:
            pos += 1
        return pos

    def run(self, pos: int, pattern: re.Pattern[str]) -> int:
        """End of the run of `pattern` (a character class with +) that starts at pos."""
        match = pattern.match(self.text, pos)
        return match.end() if match else pos

    def skip(self, pos: int, chars: str) -> int:
        while pos < len(self.text) and self.text[pos] in chars:
            pos += 1
        return pos

    def token_end(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] not in WHITESPACE:
            pos += 1
        return pos


@dataclass
class _Value:
    text: str  # unquoted, trimmed, invisible characters dropped
    start: int  # first visible character (the opening quote, if any), or where the value would start
    end: int  # the line break that ends it, or len(text)
    closed: bool  # False when a quote never closes
    quote: str  # "", '"' or '"""'
    ran_on_after: int | None  # where the quote closed but text followed, so the value went on
    dropped: list[int]  # positions of dropped invisible characters


def _quote_closes(text: str, first: int, last: int) -> bool:
    """Ollama's unquote(): does the trimmed buffer text[first:last+1] form a complete value?"""
    if text.startswith('"""', first):
        return last - first + 1 >= 6 and text.startswith('"""', last - 2)
    if text[first] == '"':
        return last > first and text[last] == '"'
    return True


def _scan_value(source: _Source, start: int) -> _Value:
    # Ollama re-checks the buffer at every blank and line break: at a line break a complete value ends the
    # instruction, at a blank the value goes on. Invisible characters never reach its buffer.
    text = source.text
    first: int | None = None
    last = start
    closed_at: int | None = None  # a blank right after a closing quote
    ran_on_after: int | None = None  # ... that visible text followed
    dropped: list[int] = []
    for pos in range(start, len(text)):
        char = text[pos]
        if char in WHITESPACE:
            complete = first is None or _quote_closes(text, first, last)
            if complete and char in LINE_BREAKS:
                return _make_value(text, first, last, pos, True, ran_on_after, dropped)
            if complete and first is not None and text[first] == '"' and closed_at is None:
                closed_at = pos
        elif _is_invisible(char):
            dropped.append(pos)
        else:
            if first is None:
                first = pos
            if closed_at is not None and ran_on_after is None:
                ran_on_after = closed_at
            last = pos
    closed = first is None or _quote_closes(text, first, last)
    return _make_value(text, first, last, len(text), closed, ran_on_after, dropped)


def _make_value(
    text: str, first: int | None, last: int, end: int, closed: bool, ran_on_after: int | None, dropped: list[int]
) -> _Value:
    if first is None:
        return _Value("", end, end, True, "", None, dropped)
    raw = _drop_invisible(text[first : last + 1])
    quote = '"""' if raw.startswith('"""') else '"' if raw.startswith('"') else ""
    if not closed:
        return _Value("", first, end, False, quote, ran_on_after, dropped)
    value = raw[len(quote) : len(raw) - len(quote)] if quote else raw
    return _Value(value, first, end, True, quote, ran_on_after, dropped)


@dataclass
class _Instruction:
    keyword: str  # lower case
    start: int
    argument: str | None  # parameter name or message role
    argument_start: int
    value: _Value


@dataclass
class _Comment:
    text: str
    start: int
    end: int


class _Scanner:
    def __init__(self, source: _Source, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = diagnostics
        self.seen_keywords: set[str] = set()  # valid instruction names met, with or without a usable value

    def report(self, pos: int, severity: str, message: str, suggestion: str | None, code: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.source.line_of(pos), self.source.column_of(pos), severity, message, suggestion, code)
        )

    def items(self) -> Iterator[_Instruction | _Comment | int]:
        """Instructions and comments in order; an int n stands for n blank lines."""
        source, text = self.source, self.source.text
        pos, previous_line = 0, 0
        while True:
            start = source.skip(pos, WHITESPACE)
            if start >= len(text):
                return
            blank_lines = source.line_of(start) - previous_line - 1
            if blank_lines > 0:
                yield blank_lines
            if text[start] == "#":
                end = source.end_of_line(start)
                yield _Comment(text[start:end], start, end)
                pos = end
            else:
                instruction, pos = self._instruction(start)
                if instruction is not None:
                    yield instruction
                if instruction is not None and not instruction.value.closed:
                    return  # the rest of the file is inside the open quote
            previous_line = source.line_of(max(pos - 1, start))

    def _instruction(self, start: int) -> tuple[_Instruction | None, int]:
        source, text = self.source, self.source.text
        name_end = source.run(start, _LETTERS)
        name = text[start:name_end]
        follower = text[name_end] if name_end < len(text) else ""
        if not name:
            self.report(start, "error", INVALID_COMMAND, _hint_for_bad_start(text[start]), "unknown-instruction")
            return None, source.end_of_line(start)
        if name.lower() in INSTRUCTIONS:
            self.seen_keywords.add(name.lower())
        if follower not in BLANKS or not follower:
            if name.lower() in INSTRUCTIONS and follower in ("", "\r", "\n"):
                self.report(start, "error", INVALID_COMMAND, _usage(name.lower()), "missing-value")
            else:
                self.report(
                    start, "error", INVALID_COMMAND, _hint_for_bad_follower(name, follower), "unknown-instruction"
                )
            return None, source.end_of_line(start)
        keyword = name.lower()
        after = name_end + 1
        if keyword not in INSTRUCTIONS:
            self.report(start, "error", INVALID_COMMAND, _did_you_mean_instruction(name), "unknown-instruction")
            return None, _scan_value(source, after).end
        if keyword == "parameter":
            return self._with_argument(keyword, start, after, _NAME_CHARS, "name")
        if keyword == "message":
            return self._with_argument(keyword, start, after, _LETTERS, "role")
        value = _scan_value(source, after)
        return _Instruction(keyword, start, None, after, value), value.end

    def _with_argument(
        self, keyword: str, start: int, after: int, argument_chars: re.Pattern[str], what: str
    ) -> tuple[_Instruction | None, int]:
        """PARAMETER <name> <value> and MESSAGE <role> <value>."""
        source, text = self.source, self.source.text
        argument_start = source.skip(after, BLANKS)
        if argument_start > after:
            self.report(
                after,
                "warning",
                f"more than one space after {keyword.upper()}: ollama create reads an empty {what} here",
                "use a single space",
                "extra-space",
            )
        end = source.run(argument_start, argument_chars)
        argument = text[argument_start:end]
        follower = text[end] if end < len(text) else ""
        if follower in BLANKS and follower and argument:
            value = _scan_value(source, end + 1)
            return _Instruction(keyword, start, argument, argument_start, value), value.end
        if follower in ("", "\r", "\n"):
            if not argument:
                message = f"{keyword.upper()} needs a {what} and a value"
            elif keyword == "parameter":
                message = f"parameter {argument} needs a value"
            else:
                message = f"MESSAGE {argument} needs a value"
            self.report(argument_start, "error", message, _usage(keyword), "missing-value")
            return None, end
        token_end = source.token_end(argument_start)
        token = text[argument_start:token_end]
        if keyword == "parameter":
            self.report(
                argument_start,
                "error",
                f'invalid parameter name "{token}"',
                _hint_for_bad_name(token),
                "invalid-parameter-name",
            )
        else:
            self.report(argument_start, "error", INVALID_ROLE, _hint_for_role(token), "invalid-role")
        return None, _scan_value(source, token_end).end


_USAGE = {"parameter": "PARAMETER <name> <value>", "message": "MESSAGE <role> <text>", "from": "FROM <model>"}


def _usage(keyword: str) -> str:
    return f"write `{_USAGE.get(keyword, keyword.upper() + ' <value>')}` on one line"


def _describe_char(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed character')})"


def _hint_for_bad_start(char: str) -> str | None:
    if _is_invisible(char) or not char.isascii():
        return f"the line starts with {_describe_char(char)}; delete it"
    if char == '"':
        return "a quoted value must follow an instruction on its line (did a value end early?)"
    return None


def _hint_for_bad_follower(name: str, follower: str) -> str | None:
    if follower and (_is_invisible(follower) or not follower.isascii()):
        return f"{_describe_char(follower)} after {name} is not a space; use a plain space"
    return _did_you_mean_instruction(name)


def _did_you_mean_instruction(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower(), INSTRUCTIONS, n=1, cutoff=0.6)
    return f"did you mean {close[0].upper()}?" if close else None


def _hint_for_bad_name(token: str) -> str | None:
    if "=" in token or ":" in token:
        name = re.split(r"[=:]", token, maxsplit=1)[0]
        return f"write `PARAMETER {name} <value>`, with a space between the name and the value"
    repaired = token.replace("-", "_")
    if repaired in PARAMETERS:
        return f"did you mean '{repaired}'?"
    return "parameter names contain only letters, digits and _"


def _hint_for_role(role: str) -> str | None:
    if role.lower() in MESSAGE_ROLES:
        return f"roles are lower case: did you mean '{role.lower()}'?"
    if role.rstrip(":").lower() in MESSAGE_ROLES:
        return f"write `MESSAGE {role.rstrip(':').lower()} <text>` (no colon)"
    close = difflib.get_close_matches(role.lower(), MESSAGE_ROLES, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "MESSAGE takes only system, user or assistant"


# ---------------------------------------------------------------------------------------------------- parsing


def parse(text: str) -> ParseResult:
    """Parse Modelfile text; never raises on bad input, reports every problem found."""
    text = text.removeprefix("\ufeff")
    source = _Source(text)
    diagnostics: list[Diagnostic] = []
    builder = _Builder(source, diagnostics)
    scanner = _Scanner(source, diagnostics)
    for item in scanner.items():
        builder.add(item)
    builder.finish(scanner.seen_keywords)
    diagnostics.sort(key=lambda d: (d.code == "missing-from", d.line))  # "no FROM line" last, as in Ollama
    return ParseResult(builder.modelfile, diagnostics)


def check_text(text: str) -> list[Diagnostic]:
    return parse(text).diagnostics


class _Builder:
    """Turns scanned instructions into a Modelfile, with Ollama's accumulate / last-wins rules."""

    def __init__(self, source: _Source, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = diagnostics
        self.modelfile = Modelfile()
        self.seen_at: dict[SlotKey, int] = {}
        self.layout: list[LayoutLine | None] = []
        self.layout_index: dict[SlotKey, int] = {}

    def report(self, pos: int, severity: str, message: str, suggestion: str | None, code: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.source.line_of(pos), self.source.column_of(pos), severity, message, suggestion, code)
        )

    def add(self, item: _Instruction | _Comment | int) -> None:
        layout = self.layout
        if isinstance(item, int):
            layout.extend(LayoutLine("blank") for _ in range(item))
        elif isinstance(item, _Comment):
            layout.append(LayoutLine("comment", item.text))
        else:
            self.add_instruction(item)

    def add_instruction(self, instruction: _Instruction) -> None:
        value = instruction.value
        if not value.closed:
            self.report_unterminated(value)
            return
        self.report_value_quirks(instruction)
        key = getattr(self, f"add_{instruction.keyword}")(instruction)
        if key is not None:
            self.remember(key, instruction)

    def remember(self, key: SlotKey, instruction: _Instruction) -> None:
        source_text = self.source.text[instruction.start : instruction.value.end]
        if key in self.layout_index:
            self.layout[self.layout_index[key]] = None  # a repeated single value: only the winner stays
        self.layout_index[key] = len(self.layout)
        self.layout.append(LayoutLine("slot", source_text, key, _slot_value(self.modelfile, key)))

    def report_unterminated(self, value: _Value) -> None:
        hint = f"close it with {value.quote}"
        if value.ran_on_after is not None:
            line = self.source.line_of(value.ran_on_after)
            hint = (
                f"text follows the closing quote on line {line}, so the value runs on; "
                "put comments and other text on lines of their own"
            )
        self.report(
            value.start,
            "error",
            f"unexpected EOF: the {value.quote} opened here is never closed",
            hint,
            "unterminated-quote",
        )

    def report_value_quirks(self, instruction: _Instruction) -> None:
        value = instruction.value
        if value.ran_on_after is not None:
            closing_line = self.source.line_of(value.ran_on_after)
            end_line = self.source.line_of(value.end - 1) if value.end > value.start else closing_line
            where = f"runs on to line {end_line}" if end_line > closing_line else "includes it"
            self.report(
                value.ran_on_after,
                "warning",
                f"text follows the closing quote, so the value {where}",
                "put comments and other text on lines of their own",
                "text-after-quote",
            )
        if value.dropped:
            char = self.source.text[value.dropped[0]]
            more = f" and {len(value.dropped) - 1} more" if len(value.dropped) > 1 else ""
            self.report(
                value.dropped[0],
                "warning",
                f"Ollama drops the invisible character {_describe_char(char)}{more}",
                "delete it, or it silently disappears from the value",
                "dropped-character",
            )

    def note_repeat(self, key: SlotKey, instruction: _Instruction, message: str) -> None:
        previous = self.seen_at.get(key)
        line = self.source.line_of(instruction.start)
        if previous is not None:
            self.report(
                instruction.start, "warning", message.format(line=previous), f"remove line {previous}", "duplicate"
            )
        self.seen_at[key] = line

    def warn_inline_comment(self, instruction: _Instruction) -> None:
        value = instruction.value
        if not value.quote and re.search(r"\s#", value.text):
            self.report(
                value.start,
                "warning",
                "'#' does not start a comment here: it is part of the value",
                "move the comment to a line of its own",
                "inline-comment",
            )

    def add_from(self, instruction: _Instruction) -> SlotKey | None:
        if not instruction.value.text:
            self.report(instruction.start, "error", "FROM needs a model name or a path", None, "missing-value")
            return None
        self.warn_inline_comment(instruction)
        self.note_repeat(("from",), instruction, "FROM is already given on line {line}; this one wins")
        self.modelfile.from_ = instruction.value.text
        return ("from",)

    def add_template(self, instruction: _Instruction) -> SlotKey:
        self.note_repeat(("template",), instruction, "TEMPLATE is already given on line {line}; this one wins")
        self.modelfile.template = instruction.value.text
        return ("template",)

    def add_system(self, instruction: _Instruction) -> SlotKey:
        self.note_repeat(("system",), instruction, "SYSTEM is already given on line {line}; this one wins")
        self.modelfile.system = instruction.value.text
        return ("system",)

    def add_requires(self, instruction: _Instruction) -> SlotKey | None:
        if not _is_semver(instruction.value.text):
            self.report(instruction.value.start, "error", INVALID_REQUIRES, None, "invalid-requires")
            return None
        self.note_repeat(("requires",), instruction, "REQUIRES is already given on line {line}; this one wins")
        self.modelfile.requires = instruction.value.text
        return ("requires",)

    def add_adapter(self, instruction: _Instruction) -> SlotKey | None:
        if not instruction.value.text:
            self.report(instruction.start, "error", "ADAPTER needs a path", None, "missing-value")
            return None
        self.warn_inline_comment(instruction)
        self.note_repeat(
            ("adapter",), instruction, "ADAPTER is already given on line {line}; ollama create uses only the last one"
        )
        self.modelfile.adapters.append(instruction.value.text)
        return ("adapter", len(self.modelfile.adapters) - 1)

    def add_license(self, instruction: _Instruction) -> SlotKey:
        self.modelfile.license.append(instruction.value.text)
        return ("license", len(self.modelfile.license) - 1)

    def add_message(self, instruction: _Instruction) -> SlotKey | None:
        role = instruction.argument or ""
        if role not in MESSAGE_ROLES:
            self.report(instruction.argument_start, "error", INVALID_ROLE, _hint_for_role(role), "invalid-role")
            return None
        self.modelfile.messages.append((role, instruction.value.text))
        return ("message", len(self.modelfile.messages) - 1)

    def add_parameter(self, instruction: _Instruction) -> SlotKey | None:
        name, text = instruction.argument or "", instruction.value.text
        try:
            spec = lookup_parameter(name, text)
        except ParameterError as error:
            self.diagnostics.append(
                error.to_diagnostic(
                    self.source.line_of(instruction.start), self.source.column_of(instruction.argument_start)
                )
            )
            return None
        try:
            value = parse_typed(spec, text)
        except ParameterError as error:
            self.diagnostics.append(
                error.to_diagnostic(
                    self.source.line_of(instruction.start), self.source.column_of(instruction.value.start)
                )
            )
            return None
        parameters = self.modelfile.parameters
        if spec.repeatable:
            values = parameters.setdefault(name, [])
            values.append(value)
            return ("parameter", name, len(values) - 1)
        self.note_repeat(
            ("parameter", name), instruction, f"parameter {name} is already set on line {{line}}; this value wins"
        )
        parameters[name] = value
        return ("parameter", name)

    def finish(self, seen_keywords: set[str]) -> None:
        self.modelfile.layout = [line for line in self.layout if line is not None]
        # A FROM line with a problem of its own has been reported already.
        if not self.modelfile.from_ and "from" not in seen_keywords:
            self.diagnostics.append(
                Diagnostic(
                    1,
                    None,
                    "error",
                    MISSING_FROM,
                    "start the file with `FROM <model>`, e.g. FROM qwen3:8b",
                    "missing-from",
                )
            )


def _is_semver(text: str) -> bool:
    return bool(_SEMVER.fullmatch(text if text.startswith("v") else "v" + text))


# ------------------------------------------------------------------------------------------------ validation


def validate(modelfile: Modelfile) -> list[Diagnostic]:
    """Problems in a Modelfile built in code (a form, a show response): what parse would have caught."""
    diagnostics: list[Diagnostic] = []

    def error(message: str, code: str, suggestion: str | None = None) -> None:
        diagnostics.append(Diagnostic(0, None, "error", message, suggestion, code))

    if not modelfile.from_:
        error(MISSING_FROM, "missing-from")
    elif _looks_like_local_file(modelfile.from_):
        diagnostics.append(
            Diagnostic(
                0,
                None,
                "warning",
                f"FROM {modelfile.from_} looks like a local file: the server reads `from` as a model name",
                "create models from local files with `ollama create`; here, FROM an installed model",
                "local-from",
            )
        )
    for name, value in modelfile.parameters.items():
        diagnostics.extend(_validate_parameter(name, value))
    for role, _ in modelfile.messages:
        if role not in MESSAGE_ROLES:
            error(INVALID_ROLE, "invalid-role", _hint_for_role(role))
    if any(not adapter for adapter in modelfile.adapters):
        error("ADAPTER needs a path", "missing-value")
    if isinstance(modelfile.requires, str) and not _is_semver(modelfile.requires):
        error(INVALID_REQUIRES, "invalid-requires")
    for label, text in _text_values(modelfile):
        if not isinstance(text, str):
            error(f"{label} must be text, not {type(text).__name__}", "invalid-type")
        elif not is_representable(text):
            error(f"{label} cannot be written in a Modelfile", "unrepresentable-value", _why_unrepresentable(text))
    return diagnostics


def _looks_like_local_file(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or name.lower().endswith((".gguf", ".safetensors", ".bin"))


def _validate_parameter(name: str, value: Any) -> list[Diagnostic]:
    try:
        spec = lookup_parameter(name)
        coerced = coerce_option(name, value)
    except ParameterError as error:
        return [error.to_diagnostic()]
    if spec.type == "int" and coerced != value:
        return [
            Diagnostic(
                0,
                None,
                "error",
                f"invalid int value [{format_value(name, value)}]",
                f"{name} takes a whole number",
                "invalid-value",
            )
        ]
    return []


def _text_values(modelfile: Modelfile) -> Iterator[tuple[str, Any]]:
    yield "FROM", modelfile.from_
    for label, value in (
        ("TEMPLATE", modelfile.template),
        ("SYSTEM", modelfile.system),
        ("REQUIRES", modelfile.requires),
    ):
        if value is not None:
            yield label, value
    yield from (("ADAPTER", adapter) for adapter in modelfile.adapters)
    yield from (("LICENSE", text) for text in modelfile.license)
    yield from ((f"MESSAGE {role}", content) for role, content in modelfile.messages)
    stops = modelfile.parameters.get("stop")
    if isinstance(stops, list):
        yield from (("PARAMETER stop", stop) for stop in stops)


# ----------------------------------------------------------------------------------------------- writing back


def quote_value(value: str) -> str:
    """A value as written on an instruction line, quoted the way `ollama show --modelfile` does.

    Beyond Ollama's rule (quote when there is a line break or a leading/trailing space; `\"\"\"` when the value
    also contains `"`), an empty value, a value starting with `"` and one with a leading/trailing tab are
    quoted too, or they would read back differently.
    """
    needs_quotes = (
        value == ""
        or any(c in value for c in LINE_BREAKS)
        or value[0] in WHITESPACE
        or value[-1] in WHITESPACE
        or value.startswith('"')
    )
    if not needs_quotes:
        return value
    if '"' in value:
        return f'"""{value}"""'
    return f'"{value}"'


def is_representable(value: str) -> bool:
    """Whether `value` reads back unchanged once written with quote_value (see _why_unrepresentable)."""
    return _why_unrepresentable(value) is None


def _why_unrepresentable(value: str) -> str | None:
    invisible = next((c for c in value if _is_invisible(c)), None)
    if invisible is not None:
        return f"Ollama drops {_describe_char(invisible)} from Modelfile values"
    if not quote_value(value).startswith('"""'):
        return None
    # Inside \"\"\"...\"\"\" the value ends at the first line break that follows \"\"\" (blanks between allowed).
    last_visible = -1
    for pos, char in enumerate(value):
        if char in LINE_BREAKS:
            if last_visible >= 2 and value.startswith('"""', last_visible - 2):
                return 'a Modelfile value cannot contain """ at the end of a line'
        elif char not in BLANKS:
            last_visible = pos
    return None


def serialize(modelfile: Modelfile, *, keep_layout: bool = True) -> str:
    """Modelfile text in the style of `ollama show --modelfile`.

    With keep_layout (the default) a Modelfile that came from `parse` keeps its comments, blank lines, order and
    the original text of every unchanged instruction; new values go after the last line of their kind.
    Raises ValueError for a value that cannot be written (see is_representable).
    """
    keys = _slot_keys(modelfile)
    if keep_layout and modelfile.layout:
        lines = _lines_following_layout(modelfile, keys)
    else:
        lines = [_instruction_line(modelfile, key) for key in keys]
    return "\n".join(lines) + "\n"


_KIND_ORDER = ("from", "requires", "adapter", "template", "system", "parameter", "license", "message")


def _slot_keys(modelfile: Modelfile) -> list[SlotKey]:
    """Every value of the Modelfile, one key per instruction line, in `ollama show` order."""
    keys: list[SlotKey] = [("from",)]
    if modelfile.requires is not None:
        keys.append(("requires",))
    keys.extend(("adapter", index) for index in range(len(modelfile.adapters)))
    if modelfile.template is not None:
        keys.append(("template",))
    if modelfile.system is not None:
        keys.append(("system",))
    for name, value in modelfile.parameters.items():
        if isinstance(value, list):
            keys.extend(("parameter", name, index) for index in range(len(value)))
        else:
            keys.append(("parameter", name))
    keys.extend(("license", index) for index in range(len(modelfile.license)))
    keys.extend(("message", index) for index in range(len(modelfile.messages)))
    return keys


def _instruction_line(modelfile: Modelfile, key: SlotKey) -> str:
    value = _slot_value(modelfile, key)
    kind = key[0]
    if kind == "parameter":
        label = f"PARAMETER {key[1]}"
        return f"{label} {_quoted(format_value(key[1], value), label)}"
    if kind == "message":
        role, content = value
        return f"MESSAGE {role} {_quoted(content, 'MESSAGE')}"
    label = kind.upper()
    return f"{label} {_quoted(value, label)}"


def _quoted(value: str, label: str) -> str:
    reason = _why_unrepresentable(value)
    if reason is not None:
        raise ValueError(f"{label}: {reason}")
    return quote_value(value)


_MISSING = object()


def _slot_value(modelfile: Modelfile, key: SlotKey) -> Any:
    """The current value a slot key points at, or _MISSING."""
    kind = key[0]
    if kind in ("from", "template", "system", "requires"):
        value = modelfile.from_ if kind == "from" else getattr(modelfile, kind)
        return _MISSING if value is None else value
    if kind in ("adapter", "license", "message"):
        values = {"adapter": modelfile.adapters, "license": modelfile.license, "message": modelfile.messages}[kind]
        return values[key[1]] if key[1] < len(values) else _MISSING
    value = modelfile.parameters.get(key[1], _MISSING)
    if len(key) == 3:
        return value[key[2]] if isinstance(value, list) and key[2] < len(value) else _MISSING
    return value


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _lines_following_layout(modelfile: Modelfile, keys: list[SlotKey]) -> list[str]:
    wanted = set(keys)
    placed: list[tuple[SlotKey | None, str]] = []
    for line in modelfile.layout:
        if line.kind != "slot":
            placed.append((None, line.text if line.kind == "comment" else ""))
        elif line.key in wanted:
            unchanged = _same_value(_slot_value(modelfile, line.key), line.snapshot)
            placed.append((line.key, line.text if unchanged else _instruction_line(modelfile, line.key)))
    placed_keys = {key for key, _ in placed}
    for key in keys:
        if key not in placed_keys:
            placed.insert(_insertion_index(placed, key), (key, _instruction_line(modelfile, key)))
    return [text for _, text in placed]


def _insertion_index(placed: list[tuple[SlotKey | None, str]], key: SlotKey) -> int:
    """After the last line of the same kind, else after the last of an earlier kind, else before the first."""
    rank = _KIND_ORDER.index(key[0])
    ranks = [None if k is None else _KIND_ORDER.index(k[0]) for k, _ in placed]
    for matches in (lambda r: r == rank, lambda r: r < rank):
        for index in range(len(placed) - 1, -1, -1):
            if ranks[index] is not None and matches(ranks[index]):
                return index + 1
    return next((index for index, r in enumerate(ranks) if r is not None), len(placed))


def _split_lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def diff(a_text: str, b_text: str, *, a_label: str = "current", b_label: str = "edited", context: int = 3) -> list[str]:
    """Unified diff lines (without line ends) from a_text to b_text."""
    return list(
        difflib.unified_diff(
            _split_lines(a_text), _split_lines(b_text), fromfile=a_label, tofile=b_label, n=context, lineterm=""
        )
    )


# ------------------------------------------------------------------------------------------------ API bodies


def to_create_request(
    modelfile: Modelfile,
    new_name: str,
    *,
    quantize: str | None = None,
    stream: bool = True,
    adapter_digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `/api/create` JSON body (new format) that builds `new_name` from this Modelfile.

    Raises ModelfileError when the Modelfile would be rejected (or stored broken) by Ollama. ADAPTER files must
    be uploaded as blobs first; adapter_digests maps each ADAPTER path to its "sha256:..." digest.
    """
    problems = [d for d in validate(modelfile) if d.is_error]
    problems.extend(_request_problems(modelfile, new_name, quantize, adapter_digests))
    if problems:
        raise ModelfileError(problems)
    body: dict[str, Any] = {"model": new_name, "from": modelfile.from_}
    if modelfile.parameters:
        # Deprecated names pass validate with a warning; ollama create drops them, and so does claw.
        body["parameters"] = {
            name: coerce_option(name, value) for name, value in modelfile.parameters.items() if name in PARAMETERS
        }
    if modelfile.template is not None:
        body["template"] = modelfile.template
    if modelfile.system is not None:
        body["system"] = modelfile.system
    if modelfile.license:
        body["license"] = list(modelfile.license)
    if modelfile.messages:
        body["messages"] = [{"role": role, "content": content} for role, content in modelfile.messages]
    if modelfile.adapters:
        digests = adapter_digests or {}
        body["adapters"] = {os.path.basename(path): digests[path] for path in modelfile.adapters}
    if modelfile.requires is not None:
        body["requires"] = modelfile.requires.removeprefix("v")
    if quantize is not None:
        body["quantize"] = quantize
    body["stream"] = stream
    return body


def _request_problems(
    modelfile: Modelfile, new_name: str, quantize: str | None, adapter_digests: Mapping[str, str] | None
) -> list[Diagnostic]:
    problems = []
    if not new_name or any(c in WHITESPACE for c in new_name):
        problems.append(Diagnostic(0, None, "error", f"invalid model name {new_name!r}", None, "invalid-name"))
    if quantize is not None and quantize not in QUANTIZE_TYPES:
        problems.append(
            Diagnostic(
                0,
                None,
                "error",
                f"unsupported quantization type {quantize!r}",
                "use one of " + ", ".join(QUANTIZE_TYPES),
                "invalid-quantize",
            )
        )
    missing = [path for path in modelfile.adapters if path not in (adapter_digests or {})]
    if missing:
        problems.append(
            Diagnostic(
                0,
                None,
                "error",
                f"no blob digest for ADAPTER {missing[0]}",
                "upload the adapter files as blobs and pass their digests",
                "missing-digest",
            )
        )
    return problems


def from_show_response(show: Mapping[str, Any], *, model_name: str | None = None) -> Modelfile:
    """A Modelfile from an `/api/show` response: its `modelfile` text, else its separate fields.

    Ollama writes FROM as the path of a blob; it is replaced by model_name, else by the model named in the
    "replace FROM with" comment that `ollama show` writes.
    """
    text = show.get("modelfile")
    if isinstance(text, str) and text.strip():
        result = parse(text)
        if result.ok:
            modelfile = result.modelfile
            name = model_name or _suggested_from(modelfile.layout)
            if _is_blob_path(modelfile.from_) and name:
                modelfile.from_ = name
                modelfile.layout = _without_show_header(modelfile.layout)
            return modelfile
    return _from_show_fields(show, model_name)


def _is_blob_path(value: str) -> bool:
    return bool(re.search(r"sha256[-:][0-9a-f]{64}", value))


_SHOW_HEADER = re.compile(
    r'# Modelfile generated by "ollama show"'
    r"|# To build a new Modelfile based on this, replace FROM with:"
    r"|# FROM (\S+)"
)


def _suggested_from(layout: list[LayoutLine]) -> str | None:
    for line in layout:
        match = _SHOW_HEADER.fullmatch(line.text.strip()) if line.kind == "comment" else None
        if match and match.group(1):
            return match.group(1)
    return None


def _without_show_header(layout: list[LayoutLine]) -> list[LayoutLine]:
    """The layout less the header `ollama show` writes (its advice to replace FROM has been followed)."""
    start = 0
    while (
        start < len(layout) and layout[start].kind == "comment" and _SHOW_HEADER.fullmatch(layout[start].text.strip())
    ):
        start += 1
    while start and start < len(layout) and layout[start].kind == "blank":
        start += 1
    return layout[start:]


def _from_show_fields(show: Mapping[str, Any], model_name: str | None) -> Modelfile:
    details = show.get("details") if isinstance(show.get("details"), Mapping) else {}
    modelfile = Modelfile(from_=model_name or str(details.get("parent_model") or ""))
    parameters = show.get("parameters")
    if isinstance(parameters, str):
        modelfile.parameters = _parameters_from_show_text(parameters)
    for name in ("template", "system"):
        value = show.get(name)
        if isinstance(value, str) and value:
            setattr(modelfile, name, value)
    license_value = show.get("license")
    if isinstance(license_value, str) and license_value:
        modelfile.license = [license_value]
    elif isinstance(license_value, list):
        modelfile.license = [item for item in license_value if isinstance(item, str)]
    for message in show.get("messages") or []:
        if isinstance(message, Mapping) and isinstance(message.get("content"), str):
            modelfile.messages.append((str(message.get("role", "")), message["content"]))
    return modelfile


def _parameters_from_show_text(text: str) -> dict[str, ParameterValue]:
    """`/api/show` parameters: one `name<padding>value` line per value, strings Go-quoted (%#v)."""
    parameters: dict[str, ParameterValue] = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\w+)\s+(.*?)\s*$", line)
        if not match or match.group(1) not in PARAMETERS:
            continue
        name, raw = match.groups()
        spec = PARAMETERS[name]
        value = _show_value(spec, _go_unquote(raw) if raw[:1] in ('"', "`") else raw)
        if value is None:
            continue
        if spec.repeatable:
            parameters.setdefault(name, []).append(value)  # type: ignore[union-attr]
        else:
            parameters[name] = value
    return parameters


def _show_value(spec: ParamSpec, text: str) -> ParamValue | None:
    try:
        return parse_typed(spec, text)
    except ParameterError:
        pass
    if spec.type == "int":
        # Ollama keeps parameters as JSON numbers (float64): a large int prints as 1e+06.
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


_GO_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}
_GO_ESCAPE = re.compile(r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")


def _go_unquote(quoted: str) -> str:
    """The string a Go quoted literal (strconv.Quote) stands for; invalid escapes are kept as written."""
    if len(quoted) >= 2 and quoted[0] == quoted[-1] == "`":
        return quoted[1:-1]
    body = quoted[1:-1] if len(quoted) >= 2 and quoted.endswith('"') else quoted[1:]
    out = bytearray()
    pos = 0
    for match in _GO_ESCAPE.finditer(body):
        out += body[pos : match.start()].encode()
        simple, hex_byte, octal_byte, u4, u8 = match.groups()
        if simple:
            out += _GO_ESCAPES[simple].encode()
        elif hex_byte or octal_byte:
            out.append(int(hex_byte, 16) if hex_byte else int(octal_byte, 8) & 0xFF)
        else:
            out += _safe_chr(int(u4 or u8, 16)).encode()
        pos = match.end()
    out += body[pos:].encode()
    return out.decode("utf-8", errors="replace")


def _safe_chr(code: int) -> str:
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return chr(code)


def replace_parameters(modelfile: Modelfile, **changes: ParameterValue | list[str] | None) -> Modelfile:
    """A copy with parameters set (None removes one); the layout is kept, so serialize shows a minimal diff."""
    parameters = dict(modelfile.parameters)
    for name, value in changes.items():
        if value is None:
            parameters.pop(name, None)
        else:
            parameters[name] = value
    return dataclasses.replace(modelfile, parameters=parameters)
