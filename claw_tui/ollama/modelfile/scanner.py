"""Scanning a Modelfile the way Ollama's parser does, rune for rune where it matters, into instructions and
comments; every problem is reported, with a hint where one helps."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from claw_tui.ollama.modelfile.hints import (
    did_you_mean_instruction,
    hint_for_bad_follower,
    hint_for_bad_name,
    hint_for_bad_start,
    hint_for_role,
    usage,
)
from claw_tui.ollama.modelfile.model import (
    BLANKS,
    INSTRUCTIONS,
    INVALID_COMMAND,
    INVALID_ROLE,
    LETTERS,
    LINE_BREAK,
    LINE_BREAKS,
    NAME_CHARS,
    WHITESPACE,
    is_invisible,
)
from claw_tui.ollama.parameters import (
    Diagnostic,
    Severity,
)


def _drop_invisible(text: str) -> str:
    if _strip_blanks_for_check(text).isprintable():
        return text
    return "".join(c for c in text if not is_invisible(c))


def _strip_blanks_for_check(text: str) -> str:
    return text.replace("\t", "").replace("\r", "").replace("\n", "")


class Source:
    """The text with line/column lookup (a line ends at \\n, \\r\\n or a lone \\r, as in Ollama)."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [m.end() for m in LINE_BREAK.finditer(text)]

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
class Value:
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


def _scan_value(source: Source, start: int) -> Value:
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
        elif is_invisible(char):
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
) -> Value:
    if first is None:
        return Value("", end, end, True, "", None, dropped)
    raw = _drop_invisible(text[first : last + 1])
    quote = '"""' if raw.startswith('"""') else '"' if raw.startswith('"') else ""
    if not closed:
        return Value("", first, end, False, quote, ran_on_after, dropped)
    value = raw[len(quote) : len(raw) - len(quote)] if quote else raw
    return Value(value, first, end, True, quote, ran_on_after, dropped)


@dataclass
class Instruction:
    keyword: str  # lower case
    start: int
    argument: str | None  # parameter name or message role
    argument_start: int
    value: Value


@dataclass
class Comment:
    text: str
    start: int
    end: int


class Scanner:
    def __init__(self, source: Source, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = diagnostics
        self.seen_keywords: set[str] = set()  # valid instruction names met, with or without a usable value

    def report(self, pos: int, severity: Severity, message: str, suggestion: str | None, code: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.source.line_of(pos), self.source.column_of(pos), severity, message, suggestion, code)
        )

    def items(self) -> Iterator[Instruction | Comment | int]:
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
                yield Comment(text[start:end], start, end)
                pos = end
            else:
                instruction, pos = self._instruction(start)
                if instruction is not None:
                    yield instruction
                if instruction is not None and not instruction.value.closed:
                    return  # the rest of the file is inside the open quote
            previous_line = source.line_of(max(pos - 1, start))

    def _instruction(self, start: int) -> tuple[Instruction | None, int]:
        source, text = self.source, self.source.text
        name_end = source.run(start, LETTERS)
        name = text[start:name_end]
        follower = text[name_end] if name_end < len(text) else ""
        if not name:
            self.report(start, "error", INVALID_COMMAND, hint_for_bad_start(text[start]), "unknown-instruction")
            return None, source.end_of_line(start)
        if name.lower() in INSTRUCTIONS:
            self.seen_keywords.add(name.lower())
        if follower not in BLANKS or not follower:
            if name.lower() in INSTRUCTIONS and follower in ("", "\r", "\n"):
                self.report(start, "error", INVALID_COMMAND, usage(name.lower()), "missing-value")
            else:
                self.report(
                    start, "error", INVALID_COMMAND, hint_for_bad_follower(name, follower), "unknown-instruction"
                )
            return None, source.end_of_line(start)
        keyword = name.lower()
        after = name_end + 1
        if keyword not in INSTRUCTIONS:
            self.report(start, "error", INVALID_COMMAND, did_you_mean_instruction(name), "unknown-instruction")
            return None, _scan_value(source, after).end
        if keyword == "parameter":
            return self._with_argument(keyword, start, after, NAME_CHARS, "name")
        if keyword == "message":
            return self._with_argument(keyword, start, after, LETTERS, "role")
        value = _scan_value(source, after)
        return Instruction(keyword, start, None, after, value), value.end

    def _with_argument(
        self, keyword: str, start: int, after: int, argument_chars: re.Pattern[str], what: str
    ) -> tuple[Instruction | None, int]:
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
            return Instruction(keyword, start, argument, argument_start, value), value.end
        if follower in ("", "\r", "\n"):
            if not argument:
                message = f"{keyword.upper()} needs a {what} and a value"
            elif keyword == "parameter":
                message = f"parameter {argument} needs a value"
            else:
                message = f"MESSAGE {argument} needs a value"
            self.report(argument_start, "error", message, usage(keyword), "missing-value")
            return None, end
        token_end = source.token_end(argument_start)
        token = text[argument_start:token_end]
        if keyword == "parameter":
            self.report(
                argument_start,
                "error",
                f'invalid parameter name "{token}"',
                hint_for_bad_name(token),
                "invalid-parameter-name",
            )
        else:
            self.report(argument_start, "error", INVALID_ROLE, hint_for_role(token), "invalid-role")
        return None, _scan_value(source, token_end).end
