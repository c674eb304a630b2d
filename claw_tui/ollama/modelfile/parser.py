"""Parsing: the scanner's instructions turned into a `Modelfile` (with its layout), checked as Ollama checks them."""

from __future__ import annotations

import re

from claw_tui.ollama.modelfile.hints import describe_char, hint_for_role
from claw_tui.ollama.modelfile.model import (
    INVALID_REQUIRES,
    INVALID_ROLE,
    MESSAGE_ROLES,
    MISSING_FROM,
    SEMVER,
    LayoutLine,
    Modelfile,
    ParseResult,
    SlotKey,
)
from claw_tui.ollama.modelfile.scanner import Comment, Instruction, Scanner, Source, Value
from claw_tui.ollama.modelfile.serialize import slot_value
from claw_tui.ollama.parameters import (
    Diagnostic,
    ParameterError,
    Severity,
    lookup_parameter,
    parse_typed,
)


def parse(text: str) -> ParseResult:
    """Parse Modelfile text; never raises on bad input, reports every problem found."""
    text = text.removeprefix("\ufeff")
    source = Source(text)
    diagnostics: list[Diagnostic] = []
    builder = _Builder(source, diagnostics)
    scanner = Scanner(source, diagnostics)
    for item in scanner.items():
        builder.add(item)
    builder.finish(scanner.seen_keywords)
    diagnostics.sort(key=lambda d: (d.code == "missing-from", d.line))  # "no FROM line" last, as in Ollama
    return ParseResult(builder.modelfile, diagnostics)


def check_text(text: str) -> list[Diagnostic]:
    return parse(text).diagnostics


class _Builder:
    """Turns scanned instructions into a Modelfile, with Ollama's accumulate / last-wins rules."""

    def __init__(self, source: Source, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = diagnostics
        self.modelfile = Modelfile()
        self.seen_at: dict[SlotKey, int] = {}
        self.layout: list[LayoutLine | None] = []
        self.layout_index: dict[SlotKey, int] = {}

    def report(self, pos: int, severity: Severity, message: str, suggestion: str | None, code: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.source.line_of(pos), self.source.column_of(pos), severity, message, suggestion, code)
        )

    def add(self, item: Instruction | Comment | int) -> None:
        layout = self.layout
        if isinstance(item, int):
            layout.extend(LayoutLine("blank") for _ in range(item))
        elif isinstance(item, Comment):
            layout.append(LayoutLine("comment", item.text))
        else:
            self.add_instruction(item)

    def add_instruction(self, instruction: Instruction) -> None:
        value = instruction.value
        if not value.closed:
            self.report_unterminated(value)
            return
        self.report_value_quirks(instruction)
        key = getattr(self, f"add_{instruction.keyword}")(instruction)
        if key is not None:
            self.remember(key, instruction)

    def remember(self, key: SlotKey, instruction: Instruction) -> None:
        source_text = self.source.text[instruction.start : instruction.value.end]
        if key in self.layout_index:
            self.layout[self.layout_index[key]] = None  # a repeated single value: only the winner stays
        self.layout_index[key] = len(self.layout)
        self.layout.append(LayoutLine("slot", source_text, key, slot_value(self.modelfile, key)))

    def report_unterminated(self, value: Value) -> None:
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

    def report_value_quirks(self, instruction: Instruction) -> None:
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
                f"Ollama drops the invisible character {describe_char(char)}{more}",
                "delete it, or it silently disappears from the value",
                "dropped-character",
            )

    def note_repeat(self, key: SlotKey, instruction: Instruction, message: str) -> None:
        previous = self.seen_at.get(key)
        line = self.source.line_of(instruction.start)
        if previous is not None:
            self.report(
                instruction.start, "warning", message.format(line=previous), f"remove line {previous}", "duplicate"
            )
        self.seen_at[key] = line

    def warn_inline_comment(self, instruction: Instruction) -> None:
        value = instruction.value
        if not value.quote and re.search(r"\s#", value.text):
            self.report(
                value.start,
                "warning",
                "'#' does not start a comment here: it is part of the value",
                "move the comment to a line of its own",
                "inline-comment",
            )

    def add_from(self, instruction: Instruction) -> SlotKey | None:
        if not instruction.value.text:
            self.report(instruction.start, "error", "FROM needs a model name or a path", None, "missing-value")
            return None
        self.warn_inline_comment(instruction)
        self.note_repeat(("from",), instruction, "FROM is already given on line {line}; this one wins")
        self.modelfile.from_ = instruction.value.text
        return ("from",)

    def add_template(self, instruction: Instruction) -> SlotKey:
        self.note_repeat(("template",), instruction, "TEMPLATE is already given on line {line}; this one wins")
        self.modelfile.template = instruction.value.text
        return ("template",)

    def add_system(self, instruction: Instruction) -> SlotKey:
        self.note_repeat(("system",), instruction, "SYSTEM is already given on line {line}; this one wins")
        self.modelfile.system = instruction.value.text
        return ("system",)

    def add_requires(self, instruction: Instruction) -> SlotKey | None:
        if not is_semver(instruction.value.text):
            self.report(instruction.value.start, "error", INVALID_REQUIRES, None, "invalid-requires")
            return None
        self.note_repeat(("requires",), instruction, "REQUIRES is already given on line {line}; this one wins")
        self.modelfile.requires = instruction.value.text
        return ("requires",)

    def add_adapter(self, instruction: Instruction) -> SlotKey | None:
        if not instruction.value.text:
            self.report(instruction.start, "error", "ADAPTER needs a path", None, "missing-value")
            return None
        self.warn_inline_comment(instruction)
        self.note_repeat(
            ("adapter",), instruction, "ADAPTER is already given on line {line}; ollama create uses only the last one"
        )
        self.modelfile.adapters.append(instruction.value.text)
        return ("adapter", len(self.modelfile.adapters) - 1)

    def add_license(self, instruction: Instruction) -> SlotKey:
        self.modelfile.license.append(instruction.value.text)
        return ("license", len(self.modelfile.license) - 1)

    def add_message(self, instruction: Instruction) -> SlotKey | None:
        role = instruction.argument or ""
        if role not in MESSAGE_ROLES:
            self.report(instruction.argument_start, "error", INVALID_ROLE, hint_for_role(role), "invalid-role")
            return None
        self.modelfile.messages.append((role, instruction.value.text))
        return ("message", len(self.modelfile.messages) - 1)

    def add_parameter(self, instruction: Instruction) -> SlotKey | None:
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
        if spec.repeatable:  # a string parameter (stop): each line adds a value
            held = parameters.get(name)
            values = held if isinstance(held, list) else []
            values.append(str(value))
            parameters[name] = values
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


def is_semver(text: str) -> bool:
    return bool(SEMVER.fullmatch(text if text.startswith("v") else "v" + text))
